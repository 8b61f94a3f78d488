"""The intake's rules, decided without a database: threading, filing, bounces, reach."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from workflow.intake import (
    FiledContact,
    FiledMachine,
    acknowledgement_refusal,
    bounce_mark,
    company_of,
    customer_of,
    sms_thread,
)
from workflow.reach import fallback_email, sms_or_email
from workflow.tickets import Notification

NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)


def contact(customer_id: int | None) -> FiledContact:
    return FiledContact(1, customer_id, "赵敏", None, "zm@huadong.example.cn", None)


def test_a_text_joins_the_open_ticket_moved_within_the_window() -> None:
    assert sms_thread((7, NOW - timedelta(days=13, hours=23)), NOW, 14) == 7
    assert sms_thread((7, NOW - timedelta(days=14)), NOW, 14) == 7  # the window's edge


def test_a_text_after_the_window_or_without_an_open_ticket_opens_a_new_one() -> None:
    assert sms_thread((7, NOW - timedelta(days=14, seconds=1)), NOW, 14) is None
    assert sms_thread(None, NOW, 14) is None
    assert sms_thread((7, NOW - timedelta(days=2)), NOW, 1) is None  # a shorter window


def test_the_senders_own_customer_wins_over_the_machines_owner() -> None:
    machine = FiledMachine(3, "TS-300", 12)
    assert customer_of(contact(5), machine) == 5
    assert customer_of(contact(None), machine) == 12
    assert customer_of(None, machine) == 12
    assert customer_of(contact(None), None) is None


def test_the_company_as_written_wins_over_the_customer_file() -> None:
    assert company_of("东方电子", "华东机械厂") == "东方电子"
    assert company_of(None, "华东机械厂") == "华东机械厂"
    assert company_of("", None) is None


def test_a_permanent_bounce_marks_the_message_bounced_and_names_the_recipients() -> None:
    mark = bounce_mark("550 5.1.1 user unknown", True, ("a@x.cn", "b@x.cn"))
    assert (mark.status, mark.delivery_status) == ("bounced", "bounced")
    assert mark.error == "bounce: 550 5.1.1 user unknown (a@x.cn, b@x.cn)"


def test_a_delay_notice_leaves_the_status_and_says_delayed() -> None:
    mark = bounce_mark("mailbox full, still trying", False, ())
    assert mark.status is None and mark.delivery_status == "delayed"
    assert mark.error == "bounce: mailbox full, still trying"


def test_acknowledgements_stop_at_the_channels_hourly_limit() -> None:
    assert acknowledgement_refusal("+8613911112222", (), 4, 5) is None
    refusal = acknowledgement_refusal("+8613911112222", (), 5, 5)
    assert refusal == "5 automatic replies to +8613911112222 in the last hour"
    assert acknowledgement_refusal("me@Support.example.com", ("support.example.com",), 0, 5)


def test_an_opted_out_sms_goes_to_the_staff_address_before_the_contacts() -> None:
    assert fallback_email("wq@support.example.com", "wq@gmail.com") == "wq@support.example.com"
    assert fallback_email(None, "wq@gmail.com") == "wq@gmail.com"
    assert fallback_email(None, None) is None
    note = Notification("k", "checkin_relay", "sms", "+8613800000001", "zh-CN")
    rerouted = sms_or_email(note, True, fallback_email(None, "wq@gmail.com"))
    assert rerouted is not None
    assert (rerouted.channel, rerouted.recipient) == ("email", "wq@gmail.com")
    assert sms_or_email(note, True, None) is None  # nowhere to send it
    assert sms_or_email(note, False, "wq@gmail.com") == note  # not opted out: unchanged
