"""The SMTP gateway as an MTA meets it: a real aiosmtpd server driven by smtplib."""

from __future__ import annotations

import asyncio
import logging
import smtplib
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select

from gateway.bootstrap import Services
from gateway.channels.smtp import SmtpHandler, start_smtp_server
from gateway.intake.runner import process_pending
from gateway.intake.service import build_intake
from gateway.serving.group_commit import InboundWriter
from gateway.serving.worker import IntakeWorker
from storage.models import InboundMessage, OutboxMessage, Ticket
from storage.uow import unit_of_work
from tests.conftest import free_port, make_services
from tests.mailbuild import customer_mail

SUPPORT = "support@support.example.com"


@dataclass
class RunningServer:
    services: Services
    port: int
    worker: IntakeWorker | None

    def client(self) -> smtplib.SMTP:
        return smtplib.SMTP("127.0.0.1", self.port, timeout=10)

    def settle(self) -> None:
        """Waits until the intake worker has processed what was queued."""
        assert self.worker is not None and self.worker.wait_idle(timeout=30)

    def count(self, model) -> int:
        with unit_of_work(self.services.sessions) as session:
            return session.scalar(select(func.count()).select_from(model)) or 0


def run_server(
    services: Services, on_stored: Callable[[int], None] | None = None
) -> Iterator[RunningServer]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    worker = None
    if on_stored is None:  # the real path: the intake worker is woken after each store
        worker = IntakeWorker(services.sessions, lambda: build_intake(services))
        on_stored = worker.wake
    port = free_port()
    writer = InboundWriter(services.engine, on_stored)
    handler = SmtpHandler(services.settings.smtp.domains, services.clock, writer.store)
    max_bytes = services.settings.smtp.max_message_bytes
    server = asyncio.run_coroutine_threadsafe(
        start_smtp_server(handler, "127.0.0.1", port, max_bytes), loop
    ).result(10)
    try:
        yield RunningServer(services, port, worker)
    finally:
        loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        writer.close()
        if worker is not None:
            worker.close()
        services.close()


@pytest.fixture
def smtp(db_url: str) -> Iterator[RunningServer]:
    yield from run_server(make_services(db_url, smtp={"max_message_bytes": 200_000}))


def test_customer_mail_becomes_a_ticket_after_250(smtp: RunningServer) -> None:
    with smtp.client() as client:
        client.sendmail("zw@huadong.example.cn", [SUPPORT], customer_mail())
    smtp.settle()
    assert smtp.count(Ticket) == 1
    assert smtp.count(OutboxMessage) == 1


def test_chinese_gb2312_mail_is_stored_byte_for_byte(smtp: RunningServer) -> None:
    raw = customer_mail("打印机不开机，型号：XP-3000", subject="故障", charset="gb2312")
    with smtp.client() as client:
        client.sendmail("zw@huadong.example.cn", [SUPPORT], raw)
    smtp.settle()
    with unit_of_work(smtp.services.sessions) as session:
        row = session.scalars(select(InboundMessage)).one()
        ticket = session.scalars(select(Ticket)).one()
        assert row.raw == raw
        assert ticket.machine_model == "XP-3000" and "不开机" in ticket.problem


def test_foreign_recipient_is_refused_with_550(smtp: RunningServer, caplog) -> None:
    caplog.set_level(logging.INFO)
    with smtp.client() as client, pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        client.sendmail("spammer@example.net", ["victim@elsewhere.example"], customer_mail())
    code, _ = refused.value.recipients["victim@elsewhere.example"]
    assert code == 550
    assert smtp.count(InboundMessage) == 0
    assert "refused relay to victim@elsewhere.example from spammer@example.net" in caplog.text


def test_accepted_mail_is_not_logged_command_by_command(smtp: RunningServer, caplog) -> None:
    caplog.set_level(logging.INFO)
    with smtp.client() as client:
        client.sendmail("customer@example.com", [SUPPORT], customer_mail())
    # The inbound table holds what was accepted; a line per SMTP command is noise.
    assert smtp.count(InboundMessage) == 1
    assert [r.getMessage() for r in caplog.records if r.name == "mail.log"] == []


def test_size_is_advertised_and_enforced_with_552(smtp: RunningServer) -> None:
    big = customer_mail("x" * 300_000)
    with smtp.client() as client:
        client.ehlo()
        assert client.has_extn("size") and int(client.esmtp_features["size"]) == 200_000
        with pytest.raises((smtplib.SMTPSenderRefused, smtplib.SMTPDataError)) as refused:
            client.sendmail("zw@huadong.example.cn", [SUPPORT], big)
    assert refused.value.smtp_code == 552
    assert smtp.count(InboundMessage) == 0


def test_unavailable_database_answers_451_never_5xx(tmp_path) -> None:
    services = make_services(f"sqlite:///{tmp_path}/db.sqlite")
    services.engine.dispose()
    (tmp_path / "db.sqlite").unlink()
    (tmp_path / "db.sqlite").mkdir()  # the database file is gone and cannot be created
    for server in run_server(services):
        with server.client() as client, pytest.raises(smtplib.SMTPDataError) as failed:
            client.sendmail("zw@huadong.example.cn", [SUPPORT], customer_mail())
        assert failed.value.smtp_code == 451
        assert b"4.3.0" in failed.value.smtp_error
        assert b"Error" not in failed.value.smtp_error  # no exception text on the wire


def test_the_same_message_sent_twice_is_one_ticket(smtp: RunningServer) -> None:
    raw = customer_mail()
    with smtp.client() as client:
        client.sendmail("zw@huadong.example.cn", [SUPPORT], raw)
        client.sendmail("zw@huadong.example.cn", [SUPPORT], raw)  # a retry after a lost 250
    smtp.settle()
    assert smtp.count(InboundMessage) == 1 and smtp.count(Ticket) == 1


def _raw_session(port: int, data: bytes) -> list[bytes]:
    """Speaks SMTP on a socket so the DATA bytes go out exactly as given."""
    replies = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        reader = sock.makefile("rb")

        def reply() -> bytes:
            lines = [reader.readline()]
            while lines[-1][3:4] == b"-":
                lines.append(reader.readline())
            return b"".join(lines)

        reply()  # greeting
        for command in (b"EHLO client.example", b"MAIL FROM:<zw@huadong.example.cn>",
                        f"RCPT TO:<{SUPPORT}>".encode(), b"DATA"):  # fmt: skip
            sock.sendall(command + b"\r\n")
            replies.append(reply())
        sock.sendall(data)
        replies.append(reply())
        sock.sendall(b"QUIT\r\n")
        replies.append(reply())
    return replies


@pytest.mark.parametrize("bare_ending", [b"\n.\r\n", b"\r\n.\n"], ids=["LF.CRLF", "CRLF.LF"])
def test_smtp_smuggling_yields_exactly_one_message(smtp: RunningServer, bare_ending) -> None:
    smuggled = (
        b"MAIL FROM:<ceo@support.example.com>\r\nRCPT TO:<" + SUPPORT.encode() + b">\r\n"
        b"DATA\r\nFrom: ceo@support.example.com\r\nSubject: smuggled\r\n\r\nwire money\r\n"
    )
    data = (
        b"From: zw@huadong.example.cn\r\nTo: " + SUPPORT.encode() + b"\r\n"
        b"Subject: legit\r\nMessage-ID: <legit@huadong.example.cn>\r\n\r\nhello"
        + bare_ending
        + smuggled
        + b".\r\n"
    )
    replies = _raw_session(smtp.port, data)
    assert replies[4].startswith(b"250")
    assert replies[5].startswith(b"221")  # the smuggled commands were never commands
    smtp.settle()
    with unit_of_work(smtp.services.sessions) as session:
        rows = session.scalars(select(InboundMessage)).all()
        assert len(rows) == 1
        assert b"Subject: smuggled" in rows[0].raw  # kept as body text of the one message
        assert session.scalars(select(Ticket.subject)).all() == ["legit"]


def test_stored_mail_survives_a_processing_crash(db_url: str) -> None:
    """250 means stored: if processing dies, the row waits and is caught up later."""

    def crashing_worker(inbound_id: int) -> None:
        raise RuntimeError("the intake worker is gone")

    for server in run_server(make_services(db_url), on_stored=crashing_worker):
        with server.client() as client:
            client.sendmail("zw@huadong.example.cn", [SUPPORT], customer_mail())
        assert server.count(InboundMessage) == 1 and server.count(Ticket) == 0
        outcomes = process_pending(build_intake(server.services))
        assert [o.result for o in outcomes] == ["ticket SL-000001 opened"]
