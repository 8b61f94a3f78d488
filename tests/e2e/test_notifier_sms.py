"""SMS through the real ``twilio`` client against a local stand-in of Twilio's Messages API."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import uvicorn
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from gateway.bootstrap import Services
from gateway.channels.http import build_http_app
from storage.models import Contact, OutboxMessage, PhoneFlag, SmsConsent, Staff
from storage.outbox import enqueue
from storage.uow import unit_of_work
from tests.conftest import FIXED_NOW, SUPPORTLINE, MutableClock, free_port, make_services
from tests.e2e.twilio_standin import RunningStandIn, StandIn

SID, TOKEN = "AC" + "0" * 32, "test-auth-token"
PUBLIC = "https://support.example.com"


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # email twins and alerts land in ./var/outbox (a maildir)


@pytest.fixture
def twilio() -> Iterator[StandIn]:
    with RunningStandIn(StandIn(SID, TOKEN)) as standin:
        yield standin


def sms_settings(twilio: StandIn, **extra: Any) -> dict[str, Any]:
    return {
        "transport": "twilio",
        "twilio_account_sid": SID,
        "twilio_auth_token": TOKEN,
        "twilio_from": "+15005550006",
        "twilio_api_url": twilio.url,
        "twilio_timeout": 0.5,
        **extra,
    }


def sms_services(url: str, twilio: StandIn, clock: MutableClock | None = None) -> Services:
    services = make_services(
        url,
        sms=sms_settings(twilio),
        http={"public_url": PUBLIC},
        notifier={"operations_email": "ops@support.example.com", "backoff_base_seconds": 60},
    )
    if clock is not None:
        services.clock = clock
    return services


def queue_sms(
    services: Services, to: str, key: str | None = None, template: str = "ticket_ack", **ctx: Any
) -> int:
    context = {"ref": "SL-000042", "subject": "", "requester_name": "", "problem": "", **ctx}
    with unit_of_work(services.sessions) as session:
        row_id, _ = enqueue(
            session.connection(), key=key or f"sms:{to}", channel="sms", to=to, template=template,
            language="zh-CN", context=context, now=services.clock(),
        )  # fmt: skip
        session.commit()
    return row_id


def row(services: Services, row_id: int) -> OutboxMessage:
    with unit_of_work(services.sessions) as session:
        return session.get_one(OutboxMessage, row_id)


def test_success_records_the_sid_and_sends_no_url(sqlite_url: str, twilio: StandIn) -> None:
    services = sms_services(sqlite_url, twilio)
    row_id = queue_sms(services, "+8613800000001")
    assert services.dispatcher().run_pass().sent == 1
    (created,) = twilio.created
    (form,) = twilio.posts_to("+8613800000001")
    sent = row(services, row_id)
    services.close()
    assert sent.status == "sent" and sent.provider_id == created["sid"]
    assert created["body"].startswith("您的技术支持请求已受理，受理编号 SL-000042")
    assert form["From"] == "+15005550006"
    assert form["StatusCallback"] == f"{PUBLIC}/twilio/status?outbox={row_id}"
    assert "ValidityPeriod" not in form  # an acknowledgement does not expire


def test_reminders_expire_and_long_chinese_bodies_are_shortened_without_urls(
    sqlite_url: str, twilio: StandIn, tmp_path: Path
) -> None:
    reminder = tmp_path / "templates" / "reminder_demo" / "zh-CN"
    reminder.mkdir(parents=True)
    (reminder / "sms.txt").write_text(
        "请处理 {{ ref }}，详情 https://support.example.com/t/42 。{{ filler }}", encoding="utf-8"
    )
    services = make_services(
        sqlite_url,
        sms={**sms_settings(twilio), "max_segments": 2, "reminder_validity_seconds": 900},
        notifier={"templates_dir": str(tmp_path / "templates")},
    )
    queue_sms(services, "+8613800000002", template="reminder_demo", filler="故障" * 100)
    assert services.dispatcher().run_pass().sent == 1
    services.close()
    (form,) = twilio.posts_to("+8613800000002")
    assert form["ValidityPeriod"] == "900"
    body = form["Body"]
    assert "http" not in body and "support.example.com" not in body
    assert body.endswith("…（内容过长，详见邮件）")
    assert len(body) <= 2 * 67  # two UCS-2 parts


def test_429_is_retried_later_with_backoff(sqlite_url: str, twilio: StandIn) -> None:
    clock = MutableClock(FIXED_NOW)
    services = sms_services(sqlite_url, twilio, clock)
    twilio.script("+8613800000003", "429", "ok")
    row_id = queue_sms(services, "+8613800000003")
    dispatcher = services.dispatcher()
    assert dispatcher.run_pass().retried == 1
    waiting = row(services, row_id)
    assert waiting.status == "queued" and "20429" in (waiting.last_error or "")
    assert waiting.next_attempt_at > FIXED_NOW and not waiting.in_doubt
    clock.advance(minutes=2)
    assert dispatcher.run_pass().sent == 1
    services.close()
    assert len(twilio.created) == 1


@pytest.mark.parametrize("step", ["500", "500-after-create", "hang"])
def test_unknown_outcome_is_reconciled_before_any_resend(
    sqlite_url: str, twilio: StandIn, step: str
) -> None:
    """A 500 or a timeout after the request left: did Twilio make the message? Ask first."""
    clock = MutableClock(FIXED_NOW)
    services = sms_services(sqlite_url, twilio, clock)
    twilio.hang_seconds = 1.5
    to = "+8613800000004"
    twilio.script(to, step, "ok")
    row_id = queue_sms(services, to)
    dispatcher = services.dispatcher()
    started = time.monotonic()
    assert dispatcher.run_pass().retried == 1
    assert time.monotonic() - started < 1.4  # the client's timeout, not the hang, decided
    doubtful = row(services, row_id)
    assert doubtful.status == "queued" and doubtful.in_doubt
    clock.advance(minutes=2)
    report = dispatcher.run_pass()
    services.close()
    assert report.sent == 1
    done = row(make_services(sqlite_url), row_id)
    assert len(twilio.created) == 1  # exactly one message at Twilio, whatever happened
    assert done.status == "sent" and done.provider_id == twilio.created[0]["sid"]
    assert report.reconciled == (0 if step == "500" else 1)
    assert len(twilio.posts_to(to)) == (2 if step == "500" else 1)


def test_invalid_number_fails_at_once_and_is_flagged(sqlite_url: str, twilio: StandIn) -> None:
    services = sms_services(sqlite_url, twilio)
    twilio.script("+8613800000005", "21211")
    first = queue_sms(services, "+8613800000005", key="a")
    assert services.dispatcher().run_pass().failed == 1
    second = queue_sms(services, "+8613800000005", key="b")
    assert services.dispatcher().run_pass().failed == 1
    with unit_of_work(services.sessions) as session:
        flag = session.get_one(PhoneFlag, "+8613800000005")
        assert flag.code == 21211
    refused = row(services, first)
    assert refused.status == "failed" and "21211" in (refused.last_error or "")
    assert "flagged" in (row(services, second).last_error or "")
    services.close()
    assert len(twilio.posts_to("+8613800000005")) == 1  # the second never reached Twilio


def test_unsubscribed_recipient_gets_the_message_by_email(sqlite_url: str, twilio: StandIn):
    services = sms_services(sqlite_url, twilio)
    with unit_of_work(services.sessions) as session:
        session.add(
            Contact(name="张伟", email="zw@huadong.example.cn", phone="+8613800000006",
                    created_at=FIXED_NOW)
        )  # fmt: skip
        session.commit()
    twilio.script("+8613800000006", "21610")
    row_id = queue_sms(services, "+8613800000006")
    report = services.dispatcher().run_pass()
    assert report.failed == 1 and report.sent == 1  # the email twin went out in the same pass
    with unit_of_work(services.sessions) as session:
        twin = session.scalars(select(OutboxMessage).where(OutboxMessage.channel == "email")).one()
        consent = session.get_one(SmsConsent, "+8613800000006")
    assert twin.to_address == "zw@huadong.example.cn" and twin.status == "sent"
    assert twin.idempotency_key == "sms:+8613800000006:email"
    assert consent.opted_out
    assert "by email" in (row(services, row_id).last_error or "")
    # until they text START, later SMS go by email without asking Twilio
    queue_sms(services, "+8613800000006", key="later")
    services.dispatcher().run_pass()
    services.close()
    assert len(twilio.posts_to("+8613800000006")) == 1


def test_an_opted_out_number_of_staff_and_a_contact_falls_back_to_the_staff_address(
    sqlite_url: str, twilio: StandIn
) -> None:
    """One rule with the intake (``workflow.reach.fallback_email``): the staff member first."""
    phone = "+8613800000016"
    services = sms_services(sqlite_url, twilio)
    with unit_of_work(services.sessions) as session:
        session.add_all([
            Contact(name="王强", email="wq@huadong.example.cn", phone=phone, created_at=FIXED_NOW),
            Staff(name="王强", role="engineer", email="wq@support.example.com", phone=phone,
                  language="zh-CN", timezone="Asia/Shanghai", created_at=FIXED_NOW,
                  updated_at=FIXED_NOW),
        ])  # fmt: skip
        session.commit()
    twilio.script(phone, "21610")
    row_id = queue_sms(services, phone)
    services.dispatcher().run_pass()
    with unit_of_work(services.sessions) as session:
        twin = session.scalars(select(OutboxMessage).where(OutboxMessage.channel == "email")).one()
    refused = row(services, row_id)
    services.close()
    assert twin.to_address == "wq@support.example.com"
    assert twin.idempotency_key == f"sms:{phone}:email"
    assert refused.status == "failed"
    assert "by email to wq@support.example.com" in (refused.last_error or "")


def test_configuration_error_alerts_and_stops_sms(sqlite_url: str, twilio: StandIn) -> None:
    services = sms_services(sqlite_url, twilio)
    twilio.script("+8613800000007", "20003")
    first = queue_sms(services, "+8613800000007", key="a")
    second = queue_sms(services, "+8613800000008", key="b")
    report = services.dispatcher().run_pass()
    assert report.alerts == 1 and report.sent == 1  # the alert email
    kept = row(services, first)
    assert kept.status == "queued" and kept.attempts == 0 and "20003" in (kept.last_error or "")
    assert row(services, second).status == "queued"  # the channel stopped: not even tried
    services.close()
    assert twilio.posts_to("+8613800000008") == []


def test_killed_after_the_request_left_is_reconciled_not_resent(
    tmp_path: Path, twilio: StandIn
) -> None:
    url = f"sqlite:///{tmp_path / 'sl.db'}"
    services = sms_services(url, twilio)
    row_id = queue_sms(services, "+8613800000009")
    services.close()
    config = tmp_path / "supportline.toml"
    lines = [f'[database]\nurl = "{url}"\n[sms]']
    lines += [f"{k} = {v!r}".replace("'", '"') for k, v in sms_settings(twilio).items()]
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    processes: list[subprocess.Popen[bytes]] = []
    twilio.on_kill = lambda: os.kill(processes[0].pid, signal.SIGKILL)
    twilio.script("+8613800000009", "kill", "ok")
    base = [SUPPORTLINE, "--config", str(config)]
    processes.append(
        subprocess.Popen([*base, "--now", FIXED_NOW.isoformat(), "outbox", "send"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    )  # fmt: skip
    assert processes[0].wait(timeout=30) == -signal.SIGKILL
    assert row(make_services(url), row_id).status == "sending"

    later = (FIXED_NOW + timedelta(minutes=5)).isoformat()
    result = subprocess.run(
        [*base, "--now", later, "outbox", "send"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 sent" in result.stdout and "1 reconciled" in result.stdout
    done = row(make_services(url), row_id)
    assert done.status == "sent" and done.provider_id == twilio.created[0]["sid"]
    assert len(twilio.posts_to("+8613800000009")) == 1


# --- status callbacks ---------------------------------------------------------------------


@contextmanager
def http_service(services: Services) -> Iterator[str]:
    """The service's real HTTP app on uvicorn, on a free port."""
    port = free_port()
    config = uvicorn.Config(
        build_http_app(services.settings, services.engine, services.sessions, services.clock),
        host="127.0.0.1", port=port, log_level="warning", lifespan="off",
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def _callback(base: str, outbox_id: int, form: dict[str, str], token: str = TOKEN) -> int:
    """POSTs a status report signed the way Twilio signs it (for the public URL)."""
    url = f"{PUBLIC}/twilio/status?outbox={outbox_id}"
    signature = RequestValidator(token).compute_signature(url, form)
    request = urllib.request.Request(
        f"{base}/twilio/status?outbox={outbox_id}",
        data=urlencode(form).encode(),
        headers={"X-Twilio-Signature": signature},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as refused:
        return refused.code


def test_status_callbacks_move_delivery_forward_only(db_url: str, twilio: StandIn) -> None:
    services = sms_services(db_url, twilio)
    row_id = queue_sms(services, "+8613800000010")
    services.dispatcher().run_pass()
    sid = row(services, row_id).provider_id
    assert sid
    with http_service(services) as base:
        for status in ("sent", "delivered", "sent"):  # a late "sent" after "delivered"
            form = {"MessageSid": sid, "MessageStatus": status, "AccountSid": SID}
            assert _callback(base, row_id, form) == 204
        assert row(services, row_id).delivery_status == "delivered"

        forged = {"MessageSid": sid, "MessageStatus": "failed", "AccountSid": SID}
        assert _callback(base, row_id, forged, token="wrong") == 403
        assert row(services, row_id).delivery_status == "delivered"
    services.close()


def test_a_callback_completes_a_row_whose_worker_died(sqlite_url: str, twilio: StandIn) -> None:
    """The sid never reached our database, but Twilio's report names our outbox row."""
    services = sms_services(sqlite_url, twilio)
    row_id = queue_sms(services, "+8613800000011")
    claimed = services.dispatcher().claim(10)  # and then the worker died
    assert [c.id for c in claimed] == [row_id]
    form = {"MessageSid": "SM" + "f" * 32, "MessageStatus": "delivered", "AccountSid": SID}
    with http_service(services) as base:
        assert _callback(base, row_id, form) == 204
    done = row(services, row_id)
    services.close()
    assert (done.status, done.provider_id, done.delivery_status) == (
        "sent", "SM" + "f" * 32, "delivered",
    )  # fmt: skip
