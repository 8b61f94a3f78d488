"""Inbound SMS through the intake pipeline: customers' texts, staff commands, consent."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import select

from gateway.bootstrap import Services
from gateway.channels.store import store_sms
from gateway.intake.runner import process_inbound
from gateway.intake.service import build_intake
from storage.models import DailyCheckIn, Deadline, OutboxMessage, SmsConsent, Staff, Ticket, Trip
from storage.uow import unit_of_work
from tests.conftest import FIXED_NOW, make_services

CUSTOMER = "+8613911112222"
ENGINEER = "+8613800001111"
SUPERVISOR = "+8613800002222"
_sid = iter(range(1, 10_000))


def text(services: Services, sender: str, body: str, sid: str | None = None) -> str:
    form = {
        "From": sender,
        "To": "+8610690000",
        "Body": body,
        "MessageSid": sid or f"SM{next(_sid):032d}",
    }
    stored = store_sms(services.engine, form, source="test", received_at=services.clock())
    return process_inbound(build_intake(services), stored.inbound_id).result


@pytest.fixture
def staffed(services: Services) -> Services:
    with unit_of_work(services.sessions) as session:
        boss = Staff(
            name="李主管",
            role="supervisor",
            email="li@support.example.com",
            phone=SUPERVISOR,
            language="zh-CN",
            timezone="Asia/Shanghai",
            created_at=FIXED_NOW,
            updated_at=FIXED_NOW,
        )
        session.add(boss)
        session.flush()
        session.add(
            Staff(
                name="王强",
                role="engineer",
                email="wq@support.example.com",
                phone=ENGINEER,
                supervisor_id=boss.id,
                language="zh-CN",
                timezone="Asia/Shanghai",
                created_at=FIXED_NOW,
                updated_at=FIXED_NOW,
            )
        )
        session.commit()
    return services


def rows(services: Services, model, *where):
    with unit_of_work(services.sessions) as session:
        order = model.__table__.primary_key.columns
        return list(session.scalars(select(model).where(*where).order_by(*order)))


def test_customer_text_opens_a_ticket_and_is_acknowledged_by_sms(staffed: Services) -> None:
    result = text(staffed, "13911112222", "型号：XP-3000 打印机不开机，请尽快处理")
    assert result == "ticket SL-000001 opened"
    (ticket,) = rows(staffed, Ticket)
    assert (ticket.channel, ticket.contact_phone, ticket.machine_model) == (
        "sms",
        CUSTOMER,
        "XP-3000",
    )
    assert ticket.language == "zh-CN"
    (ack,) = rows(staffed, OutboxMessage)
    assert (ack.channel, ack.to_address, ack.template) == ("sms", CUSTOMER, "ticket_ack")
    assert [d.kind for d in rows(staffed, Deadline)] == ["triage"]


def test_a_second_text_joins_the_open_ticket(staffed: Services) -> None:
    text(staffed, CUSTOMER, "No power on the XP-3000")
    assert text(staffed, CUSTOMER, "OK") == f"reply on SL-000001 (open ticket of {CUSTOMER})"
    assert len(rows(staffed, Ticket)) == 1  # a customer's OK is a message, not a command


def test_same_message_sid_twice_is_one_effect(staffed: Services) -> None:
    form = {"From": CUSTOMER, "Body": "help", "MessageSid": "SM" + "9" * 32}
    first = store_sms(staffed.engine, form, source="t", received_at=FIXED_NOW)
    again = store_sms(staffed.engine, form, source="t", received_at=FIXED_NOW)
    assert first.created and not again.created and first.inbound_id == again.inbound_id


def _assigned_ticket(services: Services, trip_days: int = 0) -> None:
    text(services, CUSTOMER, "打印机卡纸")
    with unit_of_work(services.sessions) as session:
        ticket = session.get_one(Ticket, 1)
        engineer = session.scalars(select(Staff).where(Staff.phone == ENGINEER)).one()
        ticket.state, ticket.engineer_id = "assigned", engineer.id
        ticket.supervisor_id = engineer.supervisor_id
        if trip_days:
            first_day = date(2026, 11, 27)
            session.add(
                Trip(
                    ticket_id=1,
                    engineer_id=engineer.id,
                    supervisor_id=engineer.supervisor_id,
                    starts_on=first_day,
                    ends_on=first_day + timedelta(days=trip_days),
                    state="onsite",
                    created_at=FIXED_NOW,
                )
            )
        session.commit()


def test_engineer_accepts_by_sms_in_chinese(staffed: Services) -> None:
    _assigned_ticket(staffed)
    result = text(staffed, ENGINEER, "接单 SL-000001")
    assert result == "staff accept by 王强 on SL-000001: applied"
    assert rows(staffed, Ticket)[0].state == "accepted"
    kinds = {(d.kind, d.state) for d in rows(staffed, Deadline)}
    assert kinds == {("triage", "met"), ("handling", "open")}
    reply = rows(staffed, OutboxMessage, OutboxMessage.to_address == ENGINEER)
    assert [r.template for r in reply] == ["sms_reply_accepted"]


def test_check_in_is_relayed_and_the_supervisors_ok_acknowledges_it(staffed: Services) -> None:
    _assigned_ticket(staffed, trip_days=2)
    assert "applied" in text(staffed, ENGINEER, "今天更换了定影器，明天调试")
    (checkin,) = rows(staffed, DailyCheckIn)
    assert checkin.local_date == date(2026, 11, 27) and checkin.relayed_at is not None
    relay = rows(staffed, OutboxMessage, OutboxMessage.to_address == SUPERVISOR)
    assert [r.template for r in relay] == ["checkin_relay"]
    assert [d.kind for d in rows(staffed, Deadline, Deadline.state == "open")][
        -1
    ] == "supervisor_reply"

    assert "applied" in text(staffed, SUPERVISOR, "收到")
    (checkin,) = rows(staffed, DailyCheckIn)
    assert checkin.acknowledged_at == FIXED_NOW
    told = rows(staffed, OutboxMessage, OutboxMessage.template == "checkin_acknowledged")
    assert [t.to_address for t in told] == [ENGINEER]
    assert not rows(
        staffed, Deadline, Deadline.kind == "supervisor_reply", Deadline.state == "open"
    )


def test_a_customer_cannot_run_staff_commands(staffed: Services) -> None:
    _assigned_ticket(staffed)
    assert text(staffed, CUSTOMER, "ACCEPT SL-000001").startswith("reply on SL-000001")
    assert rows(staffed, Ticket)[0].state == "assigned"


def test_staff_gibberish_gets_usage_in_their_language(staffed: Services) -> None:
    result = text(staffed, SUPERVISOR, "what is this")
    assert result.startswith("staff unknown by 李主管")
    (usage,) = rows(staffed, OutboxMessage)
    assert (usage.to_address, usage.template, usage.language) == (SUPERVISOR, "sms_usage", "zh-CN")


def test_stop_is_recorded_and_later_acknowledgements_go_by_email(staffed: Services) -> None:
    assert text(staffed, CUSTOMER, "退订") == "consent: opt_out (退订)"
    assert rows(staffed, SmsConsent)[0].opted_out is True
    assert rows(staffed, Ticket) == [] and rows(staffed, OutboxMessage) == []
    text(staffed, CUSTOMER, "printer is broken")
    assert rows(staffed, OutboxMessage) == []  # no SMS to an opted-out number, no address
    assert text(staffed, CUSTOMER, "START") == "consent: opt_in (START)"
    assert rows(staffed, SmsConsent)[0].opted_out is False


def test_sms_acknowledgements_follow_the_sms_limit_not_the_email_one(db_url: str) -> None:
    """Texts have their own hourly limit (sms.auto_replies_per_number_per_hour)."""
    services = make_services(
        db_url,
        sms={"auto_replies_per_number_per_hour": 1},
        email={"auto_replies_per_sender_per_hour": 100},
    )
    try:
        assert text(services, CUSTOMER, "打印机不开机") == "ticket SL-000001 opened"
        with unit_of_work(services.sessions) as session:
            session.get_one(Ticket, 1).state = "closed"  # the next text opens a new ticket
            session.commit()
        second = text(services, CUSTOMER, "又坏了，还是不开机")
        assert second == (
            f"ticket SL-000002 opened; no acknowledgement: "
            f"1 automatic replies to {CUSTOMER} in the last hour"
        )
        acks = rows(services, OutboxMessage, OutboxMessage.template == "ticket_ack")
        assert [ack.ticket_id for ack in acks] == [1]
    finally:
        services.close()
