"""The intake pipeline on stored mail: tickets, threading, acknowledgements, no-ops."""

from __future__ import annotations

import threading
from datetime import timedelta
from email.message import EmailMessage
from functools import partial

import pytest
from sqlalchemy import func, select

import gateway.intake.reading
from gateway.bootstrap import Services
from gateway.channels.store import store_email
from gateway.intake.runner import (
    IntakeResult,
    NotProcessable,
    process_batch,
    process_inbound,
    process_pending,
)
from gateway.intake.service import build_intake
from gateway.serving.parse_ahead import ParseAhead
from gateway.serving.worker import MIN_BATCH, batch_gives_way
from parsers.refs import format_ref
from storage.models import (
    Contact,
    Customer,
    Deadline,
    Event,
    InboundMessage,
    Machine,
    OutboxMessage,
    Ticket,
)
from storage.uow import unit_of_work
from tests.conftest import FIXED_NOW, make_services
from tests.mailbuild import customer_mail
from workflow.fault_types import DEFAULT_FAULT_TYPES


def ingest(services: Services, raw: bytes, to: tuple[str, ...] = ()) -> IntakeResult:
    stored = store_email(
        services.engine, raw, source="test", received_at=services.clock(), envelope_to=to
    )
    return process_inbound(build_intake(services), stored.inbound_id)


def one(services: Services, model, *where):
    with unit_of_work(services.sessions) as session:
        return session.scalars(select(model).where(*where)).one()


def count(services: Services, model, *where) -> int:
    with unit_of_work(services.sessions) as session:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def test_new_request_opens_a_ticket_with_clock_and_acknowledgement(services: Services) -> None:
    raw = customer_mail(
        "型号：XP-3000\n序列号：SN1001\n联系电话：13800138000\n打印机开机后报错 E23，卡纸。",
        subject="打印机报错",
        sender="张伟 <zw@huadong.example.cn>",
    )
    outcome = ingest(services, raw)
    assert outcome.result == "ticket SL-000001 opened"
    ticket = one(services, Ticket)
    assert (ticket.state, ticket.channel, ticket.language) == ("new", "email", "zh-CN")
    assert ticket.requester_name == "张伟"
    assert ticket.contact_email == "zw@huadong.example.cn"
    assert ticket.contact_phone == "+8613800138000"
    assert (ticket.machine_model, ticket.serial) == ("XP-3000", "SN1001")
    assert ticket.fault_type == "error_code"  # 报错 and E23 outweigh 卡纸
    deadline = one(services, Deadline)
    # Friday 10:00 Shanghai + 1 business hour; warned at 75 %.
    assert deadline.kind == "triage"
    assert deadline.due_at == FIXED_NOW + timedelta(hours=1)
    assert deadline.next_stage_at == FIXED_NOW + timedelta(minutes=45)
    ack = one(services, OutboxMessage)
    assert ack.template == "ticket_ack" and ack.language == "zh-CN"
    assert ack.to_address == "zw@huadong.example.cn"
    assert ack.idempotency_key == f"ticket:{ticket.id}:ack"
    assert ack.context["ref"] == "SL-000001"
    assert "[SL-000001]" in ack.context["subject"]
    assert ack.context["reply_to"].startswith("support+")
    assert ack.reply_to_message_id is not None and ack.message_id is not None
    assert one(services, Event).kind == "ticket_opened"


def test_reply_threads_by_in_reply_to_our_acknowledgement(services: Services) -> None:
    ingest(services, customer_mail())
    ack = one(services, OutboxMessage)
    reply = customer_mail(
        "Still broken.\n\nOn Fri, Support wrote:\n> old", in_reply_to=ack.message_id
    )
    outcome = ingest(services, reply)
    assert outcome.result == "reply on SL-000001 (In-Reply-To/References)"
    assert count(services, Ticket) == 1
    with unit_of_work(services.sessions) as session:
        messages = session.get_one(Ticket, 1).messages
        assert [m.body for m in messages][-1] == "Still broken."


def test_reply_threads_by_signed_reply_address(services: Services) -> None:
    ingest(services, customer_mail())
    token_address = one(services, OutboxMessage).context["reply_to"]
    reply = customer_mail("Any news?", subject="no reference here", to=token_address)
    assert "signed reply address" in ingest(services, reply, to=(token_address,)).result


def test_signed_address_from_another_sender_does_not_thread(services: Services) -> None:
    ingest(services, customer_mail())
    token_address = one(services, OutboxMessage).context["reply_to"]
    forged = customer_mail("me too", sender="mallory@evil.example", to=token_address)
    assert ingest(services, forged, to=(token_address,)).result.startswith("ticket SL-000002")


def test_subject_reference_from_the_same_sender_is_a_reply(services: Services) -> None:
    ingest(services, customer_mail())
    outcome = ingest(services, customer_mail("more details", subject="Re: [SL-000001] Printer"))
    assert outcome.result == "reply on SL-000001 (subject reference)"


def test_subject_reference_from_a_stranger_opens_a_linked_ticket(services: Services) -> None:
    ingest(services, customer_mail())
    stranger = customer_mail("hello", subject="[SL-000001]", sender="x@other.example")
    outcome = ingest(services, stranger)
    assert outcome.result == "ticket SL-000002 opened, linked to SL-000001"
    assert one(services, Ticket, Ticket.id == 2).related_ticket_id == 1


def test_auto_reply_opens_nothing(services: Services) -> None:
    raw = customer_mail("I am out of office", subject="Automatic reply: Printer error",
                        headers={"Auto-Submitted": "auto-replied"})  # fmt: skip
    assert ingest(services, raw).result.startswith("auto-reply, no ticket")
    assert count(services, Ticket) == 0 and count(services, OutboxMessage) == 0


def _bounce_of(message_id: str) -> bytes:
    return (
        "From: MAILER-DAEMON@mx.huadong.example.cn\r\n"
        "To: support@support.example.com\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <bounce-{abs(hash(message_id))}@mx>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nThe mail could not be delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx\r\n\r\nFinal-Recipient: rfc822; zw@huadong.example.cn\r\n"
        "Action: failed\r\nStatus: 5.1.1\r\n\r\n"
        f"--B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {message_id}\r\n"
        "Subject: ack\r\n\r\n--B--\r\n"
    ).encode()


def test_bounce_of_our_sent_acknowledgement_marks_it(services: Services) -> None:
    ingest(services, customer_mail())
    ack = one(services, OutboxMessage)
    with unit_of_work(services.sessions) as session:
        session.get_one(OutboxMessage, ack.id).status = "sent"
        session.commit()
    outcome = ingest(services, _bounce_of(ack.message_id))
    assert outcome.result.startswith(f"bounce of outbox #{ack.id}")
    assert one(services, OutboxMessage).status == "bounced"
    assert count(services, Ticket) == 1


def test_regression_bounce_naming_a_queued_message_cancelled_it(services: Services) -> None:
    """Fixed in 81ab0e1: a (forgeable) bounce naming a queued ack marked it bounced, unsent."""
    ingest(services, customer_mail())
    ack = one(services, OutboxMessage)
    outcome = ingest(services, _bounce_of(ack.message_id))
    assert outcome.result.startswith("bounce, not of a message of ours")
    assert one(services, OutboxMessage).status == "queued"


def test_acknowledgements_are_rate_limited_per_sender(db_url: str) -> None:
    services = make_services(db_url, email={"auto_replies_per_sender_per_hour": 2})
    results = [ingest(services, customer_mail(f"problem {i}")).result for i in range(3)]
    assert count(services, Ticket) == 3
    assert count(services, OutboxMessage) == 2
    assert "no acknowledgement: 2 automatic replies to zw@huadong.example.cn" in results[2]
    services.close()


def test_mail_from_our_own_domain_gets_no_acknowledgement(services: Services) -> None:
    outcome = ingest(services, customer_mail(sender="support@support.example.com"))
    assert "no acknowledgement: sender is one of our own addresses" in outcome.result


def test_the_same_bytes_twice_are_one_row_and_one_ticket(services: Services) -> None:
    raw = customer_mail()
    first = store_email(services.engine, raw, source="smtp", received_at=FIXED_NOW)
    again = store_email(services.engine, raw, source="imap", received_at=FIXED_NOW)
    assert first.created and not again.created and first.inbound_id == again.inbound_id
    process_inbound(build_intake(services), first.inbound_id)
    with pytest.raises(NotProcessable):
        process_inbound(build_intake(services), first.inbound_id)
    assert count(services, Ticket) == 1 and count(services, InboundMessage) == 1


def test_same_message_id_other_bytes_is_kept_and_recognised(services: Services) -> None:
    raw = customer_mail(message_id="<m1@huadong.example.cn>")
    relayed = b"Received: from relay by mx; Fri, 27 Nov 2026 10:00:01 +0800\r\n" + raw
    ingest(services, raw)
    outcome = ingest(services, relayed)
    assert outcome.result == "duplicate of a message on SL-000001"
    assert count(services, InboundMessage) == 2 and count(services, Ticket) == 1


def test_same_message_id_with_other_text_is_not_dropped(services: Services) -> None:
    ingest(services, customer_mail("first", message_id="<reused@broken-client>"))
    outcome = ingest(services, customer_mail("second", message_id="<reused@broken-client>"))
    assert outcome.result == "ticket SL-000002 opened"


def test_message_without_message_id_dedupes_by_content(services: Services) -> None:
    raw = b"From: a@b.example\r\nTo: support@support.example.com\r\nSubject: x\r\n\r\nhi\r\n"
    assert store_email(services.engine, raw, source="t", received_at=FIXED_NOW).created
    assert not store_email(services.engine, raw, source="t", received_at=FIXED_NOW).created


def test_failure_is_quarantined_and_replayable(services: Services, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("intake field extraction exploded")

    monkeypatch.setattr(gateway.intake.reading, "extract_record_fields", broken)
    outcome = ingest(services, customer_mail())
    assert outcome.result.startswith("failed: RuntimeError")
    row = one(services, InboundMessage)
    assert row.state == "failed" and "intake field extraction exploded" in row.error
    assert row.attempts == 1
    assert count(services, Ticket) == 0 and count(services, OutboxMessage) == 0
    monkeypatch.undo()
    replayed = process_inbound(build_intake(services), row.id)
    assert replayed.result == f"ticket {format_ref(1)} opened"
    row = one(services, InboundMessage)
    assert (row.state, row.attempts) == ("processed", 2)


def test_a_failing_message_in_a_batch_is_quarantined_alone(services: Services, monkeypatch) -> None:
    real = gateway.intake.reading.extract_record_fields

    def fails_on_poison(subject: str, *args, **kwargs):
        if "poison" in subject:
            raise RuntimeError("intake field extraction exploded")
        return real(subject, *args, **kwargs)

    monkeypatch.setattr(gateway.intake.reading, "extract_record_fields", fails_on_poison)
    ids = [
        store_email(
            services.engine,
            customer_mail(subject=subject, sender=f"c{i} <c{i}@example.cn>"),
            source="test",
            received_at=FIXED_NOW,
        ).inbound_id
        for i, subject in enumerate(["first", "poison", "third"])
    ]
    outcomes = {o.inbound_id: o.result for o in process_pending(build_intake(services))}
    assert outcomes[ids[1]].startswith("failed: RuntimeError")
    assert outcomes[ids[0]].endswith("opened") and outcomes[ids[2]].endswith("opened")
    assert count(services, InboundMessage, InboundMessage.state == "processed") == 2
    assert one(services, InboundMessage, InboundMessage.state == "failed").id == ids[1]
    # Nothing of the failing message is kept: two tickets, two acknowledgements.
    assert count(services, Ticket) == count(services, OutboxMessage) == 2
    assert count(services, Contact) == 2


@pytest.mark.postgres
def test_regression_two_workers_racing_on_one_message_id_opened_two_tickets(
    postgres_url: str,
) -> None:
    """Fixed in 1ad67e7: two workers on PostgreSQL took two copies and opened two tickets."""
    services = make_services(postgres_url)
    raw = customer_mail(message_id="<twice@huadong.example.cn>")
    relayed = b"Received: from relay by mx; Fri, 27 Nov 2026 10:00:01 +0800\r\n" + raw
    ids = [
        store_email(services.engine, r, source="t", received_at=FIXED_NOW).inbound_id
        for r in (raw, relayed)
    ]
    start = threading.Barrier(2)
    results: list[str] = []

    def work(inbound_id: int) -> None:
        start.wait()
        results.append(process_inbound(build_intake(services), inbound_id).result)

    threads = [threading.Thread(target=work, args=(i,)) for i in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert count(services, Ticket) == 1
    assert sorted(r.split(" ")[0] for r in results) == ["duplicate", "ticket"]
    services.close()


def test_parse_ahead_hands_over_what_its_thread_read_and_parses_the_rest_here() -> None:
    ahead = ParseAhead(DEFAULT_FAULT_TYPES)
    try:
        ahead.submit([(1, customer_mail(subject="parsed ahead"))], models=("XP-3000",))
        ahead.futures[1].result(timeout=10)  # done in the helper thread
        # The worker passes the row's bytes; the helper's reading of row 1 is what it gets,
        # intake fields included.
        first = ahead.reading(1, customer_mail(subject="other bytes"))
        assert first.parsed.subject == "parsed ahead"
        assert first.fields is not None and first.fields.machine_model == "XP-3000"
        second = ahead.reading(2, customer_mail(subject="never submitted"))
        assert (second.parsed.subject, second.fields) == ("never submitted", None)
        ahead.submit([(3, customer_mail()), (4, customer_mail())], models=())
        ahead.forget_through(3)
        assert list(ahead.futures) == [4]
    finally:
        ahead.close()


def test_parse_ahead_counts_raw_bytes_until_read_then_what_the_reading_holds() -> None:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "c@example.cn", "support@x.cn", "log attached"
    mail.set_content("See the attached log.")
    log = bytes(range(256)) * 120  # 30 KB, base64 in the raw mail: a third more
    mail.add_attachment(log, maintype="application", subtype="octet-stream", filename="e.log")
    raw = mail.as_bytes()
    ahead = ParseAhead(DEFAULT_FAULT_TYPES)
    try:
        gate = threading.Event()
        ahead.pool.submit(gate.wait, 10)  # keeps the helper busy: row 1 waits, unread
        ahead.submit([(1, raw)], models=())
        assert ahead.held_bytes == len(raw)
        gate.set()
        ahead.futures[1].result(timeout=10)
        assert len(log) < ahead.held_bytes < len(raw)  # the decoded log and the texts
        ahead.reading(1, raw)
        assert ahead.held_bytes == 0  # handed over: no longer held
    finally:
        ahead.close()


def test_while_held_back_the_worker_parses_ahead_within_its_byte_budget(
    services: Services,
) -> None:
    def mail(i: int, padding: int = 0) -> bytes:
        body = f"Printer {i} shows E{i:02d}\n" + "x" * padding
        return customer_mail(body, subject=f"fault {i}", sender=f"c{i} <c{i}@example.cn>")

    size = len(mail(0))
    rows = [mail(0), mail(1, padding=10 * size), mail(2), mail(3), mail(4)]
    for raw in rows:
        store_email(services.engine, raw, source="test", received_at=FIXED_NOW)
    # Room for three ordinary messages; message 2 is larger than the whole budget.
    ahead = ParseAhead(DEFAULT_FAULT_TYPES, budget_bytes=3 * size + 10)
    taken_while_held: list[list[int]] = []

    def hold(meanwhile) -> None:
        if not taken_while_held:  # the first hold: what is stored is parsed meanwhile
            meanwhile()
            taken_while_held.append(sorted(ahead.futures))

    try:
        outcomes = process_pending(build_intake(services), batch_size=8, hold=hold, reader=ahead)
    finally:
        ahead.close()
    # The big message is left for the worker to parse itself; the rest go ahead in
    # arrival order until the budget is spent.
    assert taken_while_held == [[1, 3, 4]]
    assert [o.result for o in outcomes] == [f"ticket {format_ref(i)} opened" for i in range(1, 6)]
    with unit_of_work(services.sessions) as session:
        subjects = session.scalars(select(Ticket.subject).order_by(Ticket.id)).all()
    assert subjects == [f"fault {i}" for i in range(5)]


def test_a_model_added_to_the_customer_file_after_reading_ahead_is_still_recognised(
    services: Services,
) -> None:
    raw = customer_mail("Our ZX-900 jams on every page.", subject="jam", sender="c@example.cn")
    store_email(services.engine, raw, source="test", received_at=FIXED_NOW)
    ahead = ParseAhead(DEFAULT_FAULT_TYPES)
    read_ahead = []

    def hold(meanwhile) -> None:
        if read_ahead:
            return
        meanwhile()  # read while the customer file knows no ZX-900
        read_ahead.append(ahead.futures[1].result(timeout=10))
        with unit_of_work(services.sessions) as session:
            customer = Customer(name="Huadong", created_at=FIXED_NOW)
            session.add(Machine(customer=customer, model="ZX-900", serial="Z1"))
            session.commit()

    try:
        process_pending(build_intake(services), hold=hold, reader=ahead)
    finally:
        ahead.close()
    fields = read_ahead[0].fields
    assert fields is not None and fields.machine_model is None  # read against no models
    assert one(services, Ticket).machine_model == "ZX-900"


def test_a_backlog_processed_with_parse_ahead_opens_the_same_tickets(services: Services) -> None:
    for i in range(40):
        store_email(
            services.engine,
            customer_mail(f"Printer {i} shows E{i:02d}", subject=f"fault {i}",
                          sender=f"c{i} <c{i}@example.cn>"),
            source="test",
            received_at=FIXED_NOW,
        )  # fmt: skip
    ahead = ParseAhead(DEFAULT_FAULT_TYPES)
    try:
        outcomes = process_pending(build_intake(services), batch_size=8, reader=ahead)
    finally:
        ahead.close()
    assert [o.result for o in outcomes] == [f"ticket {format_ref(i)} opened" for i in range(1, 41)]
    with unit_of_work(services.sessions) as session:
        subjects = session.scalars(select(Ticket.subject).order_by(Ticket.id)).all()
    assert subjects == [f"fault {i}" for i in range(40)]
    assert not ahead.futures


def test_a_batch_gives_way_to_arrivals_after_its_minimum(services: Services) -> None:
    ids = [
        store_email(
            services.engine,
            customer_mail(subject=f"fault {i}", sender=f"c{i} <c{i}@example.cn>"),
            source="test",
            received_at=FIXED_NOW,
        ).inbound_id
        for i in range(MIN_BATCH + 4)
    ]
    intake = build_intake(services)
    arrivals = partial(batch_gives_way, arriving=True, writer_waiting=False)
    outcomes, done_through = process_batch(intake, ids, give_way=arrivals)
    assert len(outcomes) == MIN_BATCH and done_through == ids[MIN_BATCH - 1]
    assert count(services, InboundMessage, InboundMessage.state == "pending") == 4
    outcomes, done_through = process_batch(intake, ids[MIN_BATCH:])  # nobody arriving
    assert len(outcomes) == 4 and done_through == ids[-1]
