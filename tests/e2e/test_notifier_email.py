"""Outbound email as a relay sees it: a real aiosmtpd sink receives what the dispatcher sends."""

from __future__ import annotations

import email
import email.policy
import os
import signal
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy import select

from gateway.bootstrap import Services
from gateway.channels.store import store_email
from gateway.intake.runner import process_inbound
from gateway.intake.service import build_intake
from notifier.email_transport import SmtpRelay
from storage.models import OutboxMessage
from storage.outbox import enqueue, outbound_message_id
from storage.uow import unit_of_work
from tests.conftest import FIXED_NOW, SUPPORTLINE, MutableClock, free_port, make_services
from tests.mailbuild import customer_mail


@dataclass
class Sink:
    """What an SMTP relay received, and how it answers recipients."""

    messages: list[tuple[str, list[str], bytes, tuple[Any, ...]]] = field(default_factory=list)
    answers: dict[str, str] = field(default_factory=dict)  # recipient → RCPT reply
    on_data: Any = None
    port: int = 0

    async def handle_RCPT(self, server, session, envelope, address, options) -> str:  # noqa: N802
        answer = self.answers.get(address)
        if answer:
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802
        self.messages.append(
            (envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content, session.peer)
        )
        if self.on_data:
            self.on_data()
        return f"250 2.0.0 Ok: queued as Q{len(self.messages):04d}"

    def parsed(self, index: int = -1) -> EmailMessage:
        raw = self.messages[index][2]
        return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


@pytest.fixture
def sink() -> Iterator[Sink]:
    handler = Sink()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    handler.port = port
    try:
        yield handler
    finally:
        controller.stop()


def smtp_services(url: str, port: int, clock: MutableClock | None = None, **extra: Any) -> Services:
    services = make_services(
        url,
        email={"transport": "smtp", "smtp_host": "127.0.0.1", "smtp_port": port},
        notifier={"operations_email": "ops@support.example.com", **extra},
    )
    if clock is not None:
        services.clock = clock
    return services


def queue_mail(
    services: Services, key: str, to: str = "zw@huadong.example.cn", **context: Any
) -> int:
    values = {
        "ref": "SL-000001",
        "subject": "Re: Printer error [SL-000001]",
        "requester_name": "张伟",
        "problem": "The XP-3000 shows E23.",
        "reply_to": "support+abc@support.example.com",
        **context,
    }
    with unit_of_work(services.sessions) as session:
        row_id, _ = enqueue(
            session.connection(),
            key=key,
            channel="email",
            to=to,
            template="ticket_ack",
            language="en",
            context=values,
            now=services.clock(),
            message_id=outbound_message_id(key, "support.example.com"),
        )
        session.commit()
    return row_id


def row(services: Services, row_id: int) -> OutboxMessage:
    with unit_of_work(services.sessions) as session:
        return session.get_one(OutboxMessage, row_id)


def test_acknowledgement_reaches_the_relay_threaded_and_multipart(db_url: str, sink: Sink):
    """A customer's mail through intake; the dispatcher's ack as the customer receives it."""
    services = smtp_services(db_url, sink.port)
    original_id = "<orig-1@huadong.example.cn>"
    raw = customer_mail(
        "打印机不开机 <b>急</b>", subject="打印机故障", message_id=original_id,
        headers={"References": "<older@huadong.example.cn>"},
    )  # fmt: skip
    stored = store_email(services.engine, raw, source="test", received_at=FIXED_NOW)
    process_inbound(build_intake(services), stored.inbound_id)

    report = services.dispatcher().run_pass()
    services.close()

    assert report.sent == 1
    mail_from, rcpt_tos, _, _ = sink.messages[0]
    assert (mail_from, rcpt_tos) == ("support@support.example.com", ["zw@huadong.example.cn"])
    message = sink.parsed()
    assert message["Subject"] == "Re: [SL-000001] 打印机故障"
    assert message["In-Reply-To"] == original_id
    assert message["References"].split() == ["<older@huadong.example.cn>", original_id]
    assert message["Message-ID"] == outbound_message_id("ticket:1:ack", "support.example.com")
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["Reply-To"].startswith("support+")
    assert message["Content-Language"] == "zh-CN"
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "您的技术支持请求已受理，受理编号 SL-000001" in text and "<b>急</b>" in text
    assert "&lt;b&gt;急&lt;/b&gt;" in html and "<b>急</b>" not in html  # autoescaped
    sent = row(make_services(db_url), 1)
    assert sent.status == "sent" and sent.provider_id == "smtp:Q0001"
    assert sent.subject == "Re: [SL-000001] 打印机故障" and "SL-000001" in (sent.body or "")


def test_crlf_in_customer_subject_never_adds_a_header(sqlite_url: str, sink: Sink) -> None:
    services = smtp_services(sqlite_url, sink.port)
    queue_mail(
        services,
        "inject",
        subject="Printer\r\nBcc: victim@elsewhere.example\r\nX-Evil: 1",
        requester_name="Eve\r\nCc: other@elsewhere.example",
    )
    assert services.dispatcher().run_pass().sent == 1
    services.close()

    _, rcpt_tos, raw, _ = sink.messages[0]
    assert rcpt_tos == ["zw@huadong.example.cn"]
    message = sink.parsed()
    assert message["Bcc"] is None and message["Cc"] is None and message["X-Evil"] is None
    assert message["Subject"] == "Printer Bcc: victim@elsewhere.example X-Evil: 1"
    assert b"\r\nBcc:" not in raw and b"\nX-Evil" not in raw


def test_one_connection_carries_many_messages(sqlite_url: str, sink: Sink) -> None:
    services = smtp_services(sqlite_url, sink.port)
    for i in range(5):
        queue_mail(services, f"many:{i}", to=f"c{i}@example.com")
    assert services.dispatcher().run_pass().sent == 5
    services.close()
    assert len({peer for *_, peer in sink.messages}) == 1


def test_4xx_is_retried_with_backoff_and_5xx_fails_at_once(sqlite_url: str, sink: Sink):
    clock = MutableClock(FIXED_NOW)
    services = smtp_services(sqlite_url, sink.port, clock, backoff_base_seconds=60)
    sink.answers["busy@example.com"] = "451 4.3.0 try again later"
    sink.answers["gone@example.com"] = "550 5.1.1 no such user"
    busy = queue_mail(services, "busy", to="busy@example.com")
    gone = queue_mail(services, "gone", to="gone@example.com")

    report = services.dispatcher().run_pass()
    assert (report.retried, report.failed, report.sent) == (1, 1, 0)
    waiting, failed = row(services, busy), row(services, gone)
    assert waiting.status == "queued" and waiting.attempts == 1
    assert "451" in (waiting.last_error or "")
    # 60 s for the first retry, jittered between half and all of it
    assert FIXED_NOW + timedelta(seconds=30) <= waiting.next_attempt_at
    assert waiting.next_attempt_at <= FIXED_NOW + timedelta(seconds=60)
    assert failed.status == "failed" and "550 5.1.1" in (failed.last_error or "")

    del sink.answers["busy@example.com"]
    assert services.dispatcher().run_pass().sent == 0  # not due yet
    clock.advance(seconds=61)
    assert services.dispatcher().run_pass().sent == 1
    services.close()
    assert row(make_services(sqlite_url), busy).status == "sent"


def test_dead_row_alerts_operations_once_and_a_dead_alert_is_quiet(sqlite_url: str, sink: Sink):
    clock = MutableClock(FIXED_NOW)
    services = smtp_services(sqlite_url, sink.port, clock, max_attempts=2)
    sink.answers["busy@example.com"] = "451 4.3.0 try again later"
    dying = queue_mail(services, "dying", to="busy@example.com")
    dispatcher = services.dispatcher()
    dispatcher.run_pass()
    clock.advance(hours=2)
    report = dispatcher.run_pass()  # second attempt: dead, and the alert goes out at once
    assert report.dead == 1 and report.alerts == 1 and report.sent == 1
    assert row(services, dying).status == "dead"
    alert = sink.parsed()
    assert sink.messages[-1][1] == ["ops@support.example.com"]
    assert f"#{dying}" in alert["Subject"]
    assert "supportline outbox retry" in alert.get_body(("plain",)).get_content()
    assert alert["Auto-Submitted"] == "auto-generated"

    # Now the operations address itself fails: its alert dies without alerting again.
    sink.answers["ops@support.example.com"] = "451 4.3.0 mailbox busy"
    second = queue_mail(services, "dying-2", to="busy@example.com")
    for _ in range(3):
        clock.advance(hours=2)
        dispatcher.run_pass()
    with unit_of_work(services.sessions) as session:
        alerts = session.scalars(
            select(OutboxMessage).where(OutboxMessage.template == "ops_alert")
        ).all()
    services.close()
    assert [a.idempotency_key for a in alerts] == [f"alert:dead:{dying}", f"alert:dead:{second}"]
    assert alerts[1].status == "dead"


def test_a_template_that_fails_keeps_the_row_queued(sqlite_url: str, sink: Sink, tmp_path):
    override = tmp_path / "templates" / "ticket_ack" / "en"
    override.mkdir(parents=True)
    (override / "subject.txt").write_text("{{ no_such_key }}", encoding="utf-8")
    services = smtp_services(sqlite_url, sink.port, templates_dir=str(tmp_path / "templates"))
    row_id = queue_mail(services, "broken")
    report = services.dispatcher().run_pass()
    services.close()
    assert report.deferred == 1 and sink.messages == []
    stuck = row(make_services(sqlite_url), row_id)
    assert stuck.status == "queued" and stuck.attempts == 0
    assert "ticket_ack/en/subject.txt" in (stuck.last_error or "")
    assert "no_such_key" in (stuck.last_error or "")


def test_maildir_is_the_default_transport(sqlite_url: str, tmp_path: Path) -> None:
    maildir = tmp_path / "outbox"
    services = make_services(sqlite_url, email={"maildir": str(maildir)})
    queue_mail(services, "demo")
    assert services.dispatcher().run_pass().sent == 1
    services.close()
    (path,) = (maildir / "new").iterdir()
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert message["To"] == "zw@huadong.example.cn"
    assert message["Message-ID"] == outbound_message_id("demo", "support.example.com")


# --- STARTTLS and AUTH -------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_starttls_and_auth_before_anything_is_sent(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    logins: list[bytes] = []

    def authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        logins.append(auth_data.login)
        return AuthResult(success=auth_data.password == b"s3cret")

    handler = Sink()
    port = free_port()
    controller = Controller(
        handler, hostname="127.0.0.1", port=port, tls_context=server_context,
        require_starttls=True, auth_required=True, authenticator=authenticator,
    )  # fmt: skip
    controller.start()
    try:
        client_context = ssl.create_default_context(cafile=str(cert))
        relay = SmtpRelay(
            "127.0.0.1", port, username="notifier", password="s3cret", starttls=True,
            tls_context=client_context, timeout=5,
        )  # fmt: skip
        for i in range(2):
            relay.send(
                b"Subject: hi\r\n\r\nbody\r\n", "a@example.com", ["b@example.com"], f"<{i}@x>"
            )
        relay.close()
    finally:
        controller.stop()
    assert len(handler.messages) == 2 and logins == [b"notifier"]
    assert relay.connections_opened == 1


# --- a dispatcher killed between the send and the mark ----------------------------------


def test_killed_after_send_resends_with_the_same_message_id(tmp_path: Path, sink: Sink) -> None:
    url = f"sqlite:///{tmp_path / 'sl.db'}"
    services = smtp_services(url, sink.port)
    row_id = queue_mail(services, "crash")
    services.close()
    config = tmp_path / "supportline.toml"
    config.write_text(
        f'[database]\nurl = "{url}"\n'
        f'[email]\ntransport = "smtp"\nsmtp_host = "127.0.0.1"\nsmtp_port = {sink.port}\n',
        encoding="utf-8",
    )
    started: dict[str, subprocess.Popen[bytes]] = {}
    killed = threading.Event()

    def kill_sender() -> None:  # the relay has the message; the sender never hears back
        if not killed.is_set():
            os.kill(started["process"].pid, signal.SIGKILL)
            killed.set()

    sink.on_data = kill_sender
    base = [SUPPORTLINE, "--config", str(config)]
    started["process"] = subprocess.Popen(
        [*base, "--now", FIXED_NOW.isoformat(), "outbox", "send"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    assert started["process"].wait(timeout=30) == -signal.SIGKILL
    in_flight = row(make_services(url), row_id)
    assert in_flight.status == "sending" and in_flight.attempts == 1

    later = (FIXED_NOW + timedelta(minutes=5)).isoformat()
    result = subprocess.run(
        [*base, "--now", later, "outbox", "send"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert "1 sent" in result.stdout
    first, second = sink.parsed(0), sink.parsed(1)
    assert first["Message-ID"] == second["Message-ID"]
    assert first["Message-ID"] == outbound_message_id("crash", "support.example.com")
    done = row(make_services(url), row_id)
    assert done.status == "sent" and done.attempts == 2
