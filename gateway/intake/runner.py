"""The intake pipeline: a stored inbound email becomes a ticket, a reply, or a recorded no-op.

Runs after the raw bytes are committed. A message's inbound row state, ticket, message,
deadlines and outbox rows land together, in one transaction with the rest of its batch
(``process_pending``) or on their own (``process_inbound``). A message that
fails is quarantined (state ``failed`` with the error) and waits for
``supportline inbound replay``; it is never dropped and never retried in a loop.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from email.utils import parseaddr
from functools import cache
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select, text, update
from sqlalchemy.orm import Session

from gateway.bootstrap import Services
from gateway.channels.store import InboundRow, claim_inbound
from gateway.serving.parse_ahead import ParseAhead, Reading
from gateway.intake.sms import SmsIntake
from parsers.mail import parse_email
from parsers.refs import find_subject_ref, format_ref, tag_subject
from parsers.reply_tokens import read_token, reply_address, split_plus_address
from storage.apply import record_decision
from storage.db import writers_waiting
from storage.inserts import insert_many_or_get
from storage.models import (
    Attachment,
    Contact,
    Customer,
    InboundMessage,
    Machine,
    Message,
    OutboxMessage,
    Ticket,
)
from storage.outbox import automatic_replies_last_hour, outbound_message_id
from storage.uow import unit_of_work
from workflow.intake import (
    Route,
    ThreadClues,
    acknowledgement_refusal,
    customer_language,
    route_email,
)
from workflow.tickets import (
    Decision,
    Notification,
    TicketState,
    customer_replied,
    open_ticket,
)

log = logging.getLogger(__name__)

# How a stored email's bytes are read: here, or ahead by a ParseAhead helper.
Read = Callable[[int, bytes], Reading]


def read_here(_inbound_id: int, raw: bytes) -> Reading:
    return Reading(parse_email(raw))


# The machine models of the customer file, as the intake transaction sees them.
KnownModels = Callable[[], tuple[str, ...]]


ACK_TEMPLATE = "ticket_ack"
MAX_ERROR_CHARS = 4000
MIN_BATCH = 8
READ_AHEAD_ROWS = 256  # looked at per call; the parse-ahead's byte budget bounds the rest

# The statements of every message, built once: building one from ORM attributes costs
# three times what executing it does (SQLAlchemy caches the compiled form, not the
# expression). Values come as bound parameters.
_PENDING_IDS = (
    select(InboundMessage.id)
    .where(InboundMessage.state == "pending", InboundMessage.id > bindparam("after"))
    .order_by(InboundMessage.id)
    .limit(bindparam("batch_size"))
)
_PENDING_EMAIL_SIZES = (
    select(InboundMessage.id, func.length(InboundMessage.raw).label("size"))
    .where(
        InboundMessage.state == "pending",
        InboundMessage.id > bindparam("after"),
        InboundMessage.channel == "email",
    )
    .order_by(InboundMessage.id)
    .limit(READ_AHEAD_ROWS)
)
_RAW_OF = (
    select(InboundMessage.id, InboundMessage.raw)
    .where(InboundMessage.id.in_(bindparam("ids", expanding=True)))
    .order_by(InboundMessage.id)
)
_MARK_PROCESSED = (
    update(InboundMessage)
    .where(InboundMessage.id == bindparam("inbound_id"))
    .values(
        state="processed",
        result=bindparam("outcome"),
        error=None,
        processed_at=bindparam("now"),
        attempts=InboundMessage.attempts + 1,
    )
)
_SAME_MESSAGE = (
    select(Message.ticket_id, Message.full_text)
    .where(Message.message_id == bindparam("message_id"), Message.direction == "in")
    .limit(1)
)
_TICKET_EXISTS = select(Ticket.id).where(Ticket.id == bindparam("ticket_id"))
_TICKET_OF_MESSAGE = (
    select(Message.ticket_id).where(Message.message_id == bindparam("message_id")).limit(1)
)
_TICKET_OF_OUTBOX = (
    select(OutboxMessage.ticket_id)
    .where(
        OutboxMessage.message_id == bindparam("message_id"), OutboxMessage.ticket_id.is_not(None)
    )
    .limit(1)
)
_TICKET_CONTACT = select(Ticket.contact_email).where(Ticket.id == bindparam("ticket_id"))
_WROTE_ON_TICKET = (
    select(Message.id)
    .where(Message.ticket_id == bindparam("ticket_id"), Message.sender == bindparam("sender"))
    .limit(1)
)
_TICKET_STATE = select(Ticket.state, Ticket.owner_id).where(Ticket.id == bindparam("ticket_id"))
_SET_TICKET_STATE = (
    update(Ticket)
    .where(Ticket.id == bindparam("ticket_id"))
    .values(state=bindparam("new_state"), updated_at=bindparam("now"))
)
_KNOWN_MODELS = select(Machine.model).distinct().order_by(Machine.model)
_MACHINE_BY_SERIAL = (
    select(Machine.id, Machine.model, Machine.customer_id)
    .where(func.lower(Machine.serial) == bindparam("serial"))
    .limit(1)
)
_CUSTOMER_NAME = select(Customer.name).where(Customer.id == bindparam("customer_id"))
_CONTACT_BY_EMAIL = select(
    Contact.id, Contact.customer_id, Contact.name, Contact.phone, Contact.language
).where(Contact.email == bindparam("email"))
_INSERT_TICKET = insert(Ticket).returning(Ticket.id)
_INSERT_MESSAGE = insert(Message).returning(Message.id)
_INSERT_ATTACHMENT = insert(Attachment)


class NotProcessable(Exception):
    """The inbound row is missing or already processed."""


@dataclass(frozen=True)
class Outcome:
    inbound_id: int
    result: str
    ticket_id: int | None = None


def process_inbound(services: Services, inbound_id: int) -> Outcome:
    """Processes one stored row; quarantines it on failure. Safe to call twice."""
    # Made (or read) before the intake transaction: on SQLite a second transaction
    # inside it would wait for the lock the first one holds.
    services.reply_key()
    try:
        with unit_of_work(services.sessions) as session:
            outcome = _process_in_transaction(services, session, inbound_id)
            session.commit()
            return outcome
    except NotProcessable:
        raise
    except Exception as exc:
        log.exception("inbound %d quarantined", inbound_id)
        with unit_of_work(services.sessions) as session:
            failed = _mark_failed(session, inbound_id, exc, services.clock())
            session.commit()
        return failed


def process_batch(
    services: Services,
    inbound_ids: Sequence[int],
    read: Read = read_here,
    give_way: Callable[[], bool] = lambda: False,
) -> tuple[list[Outcome], int]:
    """Processes rows in one transaction, in order: one commit (one fsync on SQLite) for
    the batch instead of one per message.

    Optimistic: should one message fail, the whole batch rolls back and is processed
    again one message per transaction, where the failing one is quarantined alone.
    (A savepoint per message would do the same in one pass, at two statements and a
    flush more for every message; failures are rare.) Rows another worker already took
    are skipped. The batch ends early, after the message in hand, when ``give_way()``
    says so (messages arriving: the listeners need the processor; not before
    ``MIN_BATCH`` messages, so intake keeps pace with a steady stream) or, on SQLite, when
    another writer waits for the database (a listener storing what a sender waits
    for). Returns the outcomes and the last id it went through.
    """
    services.reply_key()
    try:
        with unit_of_work(services.sessions) as session:
            # Read once for the batch: intake never files machines, and on PostgreSQL
            # a batch may as well see the customer file as it stood when it began.
            models = cache(lambda: known_models(session.connection()))
            outcomes, done_through = [], 0
            for inbound_id in inbound_ids:
                with suppress(NotProcessable):  # nothing was written for it
                    outcome = _process_in_transaction(services, session, inbound_id, read, models)
                    outcomes.append(outcome)
                done_through = inbound_id
                taken = len(outcomes) >= MIN_BATCH
                if (taken and give_way()) or writers_waiting(services.engine):
                    break
            session.commit()
            return outcomes, done_through
    except Exception:  # a message failed, or the batch did (say the connection dropped)
        log.warning(
            "intake batch of %d messages rolled back; processing them one by one",
            len(inbound_ids),
            exc_info=True,
        )
        outcomes = []
        for inbound_id in inbound_ids:
            try:
                outcomes.append(process_inbound(services, inbound_id))
            except NotProcessable:
                continue
        return outcomes, inbound_ids[-1]


def process_pending(
    services: Services,
    batch_size: int = 32,
    stopping: Callable[[], bool] = lambda: False,
    hold: Callable[[Callable[[], None]], None] = lambda _meanwhile: None,
    ahead: ParseAhead | None = None,
    give_way: Callable[[], bool] = lambda: False,
) -> list[Outcome]:
    """Processes every row stored but not yet processed, batch by batch, until none is
    left or ``stopping()`` says so. ``hold(meanwhile)`` may hold a batch back, calling
    ``meanwhile()`` while it waits; ``give_way()`` may end one early. ``ahead`` parses
    the coming mail while this worker waits or writes."""
    outcomes: list[Outcome] = []
    after = 0

    def parse_coming() -> None:
        if ahead is not None:
            with unit_of_work(services.sessions) as session:
                _read_ahead(session, ahead, after)

    while not stopping():
        hold(parse_coming)
        with unit_of_work(services.sessions) as session:
            ids = session.scalars(_PENDING_IDS, {"after": after, "batch_size": batch_size}).all()
            if ahead is not None and ids:
                _read_ahead(session, ahead, after)
        if not ids:
            return outcomes
        read = ahead.reading if ahead else read_here
        done, after = process_batch(services, ids, read, give_way)
        if ahead is not None:
            ahead.forget_through(after)
        outcomes.extend(done)
    return outcomes


def known_models(db: Connection) -> tuple[str, ...]:
    """The machine models of the customer file, which intake recognises in mail."""
    return tuple(db.scalars(_KNOWN_MODELS))


def _read_ahead(session: Session, ahead: ParseAhead, after: int) -> None:
    """Hands ``ahead`` the pending email rows past ``after`` it does not have yet, in
    order, as far as its byte budget goes: each row's bytes are read for it once."""
    room = ahead.room()
    if room <= 0:
        return  # holding all it may: no query
    taken = []
    window = {"after": max(after, ahead.last_taken())}
    for row in session.execute(_PENDING_EMAIL_SIZES, window):
        if row.size > ahead.budget_bytes:
            continue  # too big to hold ahead: the worker parses it when it gets there
        if row.size > room:
            break
        taken.append(row.id)
        room -= row.size
    if taken:
        ahead.submit(session.execute(_RAW_OF, {"ids": taken}), known_models(session.connection()))


def _mark_failed(session: Session, inbound_id: int, exc: BaseException, now: datetime) -> Outcome:
    """Quarantines the row: state ``failed`` with the error, for ``inbound replay``."""
    error = "".join(traceback.format_exception_only(exc)).strip()
    trace = "".join(traceback.format_exception(exc))[-MAX_ERROR_CHARS:]
    session.execute(
        update(InboundMessage)
        .where(InboundMessage.id == inbound_id)
        .values(
            state="failed",
            error=f"{error}\n\n{trace}",
            result="quarantined",
            attempts=InboundMessage.attempts + 1,
            processed_at=now,
        )
    )
    return Outcome(inbound_id, f"failed: {type(exc).__name__}: {exc}")


def _process_in_transaction(
    services: Services,
    session: Session,
    inbound_id: int,
    read: Read = read_here,
    models: KnownModels | None = None,
) -> Outcome:
    db = session.connection()
    row = claim_inbound(db, inbound_id)
    if isinstance(row, str):
        raise NotProcessable(f"inbound {inbound_id} is {row}; nothing to process")
    now = services.clock()
    if row.channel == "sms":
        ticket_id, result = SmsIntake(services, session, row, now).run()
        session.flush()  # the next message of the batch reads with Core statements
    else:
        reading = read(row.id, row.raw)
        models = models or (lambda: known_models(db))
        ticket_id, result = EmailIntake(services, db, row, reading, now, models).run()
    db.execute(_MARK_PROCESSED, {"inbound_id": inbound_id, "outcome": result, "now": now})
    return Outcome(inbound_id, result, ticket_id)


@dataclass(frozen=True)
class _Contact:
    id: int
    customer_id: int | None
    name: str | None
    phone: str | None
    language: str | None


class EmailIntake:
    """One parsed email applied to the database, inside the caller's transaction.

    Core statements on the transaction's connection and no ORM objects: this runs for
    every message of a burst of mail, and the ORM's unit of work cost three times the
    SQL it issued (measured: 6.8 ms a message with it, of which 0.8 ms parsing).
    """

    def __init__(
        self,
        services: Services,
        db: Connection,
        row: InboundRow,
        reading: Reading,
        now: datetime,
        models: KnownModels,
    ) -> None:
        self.services = services
        self.db = db
        self.row = row
        self.reading = reading
        self.parsed = reading.parsed
        self.now = now
        self.models = models
        self.settings = services.settings
        self.sender = reading.parsed.from_address

    def run(self) -> tuple[int | None, str]:
        parsed = self.parsed
        routing = route_email(
            bounce=parsed.bounce is not None,
            auto_reply=parsed.auto_reply,
            duplicate_of=self._duplicate_of(),
            clues=self._thread_clues(),
        )
        if routing.route is Route.BOUNCE:
            return None, self._record_bounce()
        if routing.route is Route.AUTO_REPLY:
            return None, f"auto-reply, no ticket ({routing.reason})"
        if routing.route is Route.DUPLICATE:
            assert routing.ticket_id is not None
            return routing.ticket_id, f"duplicate of a message on {format_ref(routing.ticket_id)}"
        if routing.route is Route.REPLY:
            assert routing.ticket_id is not None
            return self._reply(routing.ticket_id, routing.reason)
        return self._open(routing.related_ticket_id)

    # -- what the message is ---------------------------------------------------------

    def _duplicate_of(self) -> int | None:
        """The ticket already holding this Message-ID with the same text, if any."""
        if not self.parsed.message_id:
            return None
        if self.db.dialect.name == "postgresql":
            # Two copies of one message (other routes, other bytes) processed at once by
            # two serve processes would each miss the other's uncommitted Message: the
            # second waits here until the first commits. (SQLite has one writer anyway.)
            self.db.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:message_id))"),
                {"message_id": self.parsed.message_id},
            )
        earlier = self.db.execute(_SAME_MESSAGE, {"message_id": self.parsed.message_id}).first()
        if earlier is not None and earlier.full_text == self.parsed.text:
            return int(earlier.ticket_id)
        return None

    def _ticket_exists(self, ticket_id: int) -> bool:
        return self.db.scalar(_TICKET_EXISTS, {"ticket_id": ticket_id}) is not None

    def _thread_clues(self) -> ThreadClues:
        subject_ticket = find_subject_ref(self.parsed.subject)
        if subject_ticket is not None and not self._ticket_exists(subject_ticket):
            subject_ticket = None
        return ThreadClues(
            token_ticket=self._token_ticket(),
            header_ticket=self._header_ticket(),
            subject_ticket=subject_ticket,
            sender_on_subject_ticket=(
                subject_ticket is not None and self._sender_on_ticket(subject_ticket)
            ),
        )

    def _token_ticket(self) -> int | None:
        if not self.sender:
            return None
        domains = {d.lower() for d in self.settings.smtp.domains}
        recipients = [*self.row.envelope_to, *self.parsed.to, *self.parsed.cc]
        for address in recipients:
            base, token = split_plus_address(str(address))
            if token is None or base.rpartition("@")[2].lower() not in domains:
                continue
            claim = read_token(self.services.reply_key(), token, self.sender)
            if claim is not None and self._ticket_exists(claim.ticket_id):
                return claim.ticket_id
        return None

    def _header_ticket(self) -> int | None:
        for message_id in [*self.parsed.in_reply_to, *reversed(self.parsed.references)]:
            known = self.db.scalar(_TICKET_OF_MESSAGE, {"message_id": message_id})
            if known is None:
                known = self.db.scalar(_TICKET_OF_OUTBOX, {"message_id": message_id})
            if known is not None:
                return int(known)
        return None

    def _sender_on_ticket(self, ticket_id: int) -> bool:
        if not self.sender:
            return False
        contact_email = self.db.scalar(_TICKET_CONTACT, {"ticket_id": ticket_id})
        if (contact_email or "").lower() == self.sender:
            return True
        wrote_before = self.db.scalar(
            _WROTE_ON_TICKET, {"ticket_id": ticket_id, "sender": self.sender}
        )
        return wrote_before is not None

    # -- what we do with it ----------------------------------------------------------

    def _record_bounce(self) -> str:
        bounce = self.parsed.bounce
        assert bounce is not None
        ours: list[int] = []
        if bounce.original_message_ids:
            # Only what already left can bounce; a report naming a row still queued or
            # being sent (a forgery, or a mix-up) must not stop it from going out.
            ours = list(
                self.db.scalars(
                    select(OutboxMessage.id)
                    .where(
                        OutboxMessage.message_id.in_(bounce.original_message_ids),
                        OutboxMessage.status.in_(("sent", "bounced")),
                    )
                    .order_by(OutboxMessage.id)
                )
            )
        if not ours:
            return f"bounce, not of a message of ours ({bounce.reason})"
        recipients = ", ".join(bounce.failed_recipients)
        error = f"bounce: {bounce.reason}" + (f" ({recipients})" if recipients else "")
        if bounce.permanent:
            marks = {"status": "bounced", "delivery_status": "bounced"}
        else:  # delayed: still in transit somewhere, nothing to undo
            marks = {"delivery_status": "delayed"}
        self.db.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(ours))
            .values(last_error=error, **marks)
        )
        marked = ", ".join(f"#{outbox_id}" for outbox_id in ours)
        return f"bounce of outbox {marked} ({bounce.reason})"

    def _reply(self, ticket_id: int, reason: str) -> tuple[int, str]:
        state, owner_id = self.db.execute(_TICKET_STATE, {"ticket_id": ticket_id}).one()
        self._add_message(ticket_id)
        decision = customer_replied(TicketState(state))
        self.db.execute(
            _SET_TICKET_STATE,
            {"ticket_id": ticket_id, "new_state": decision.state.value, "now": self.now},
        )
        self._apply(ticket_id, owner_id, decision, threaded_by=reason)
        return ticket_id, f"reply on {format_ref(ticket_id)} ({reason})"

    def _open(self, related_ticket_id: int | None) -> tuple[int, str]:
        parsed, settings, db = self.parsed, self.settings, self.db
        contact = self._contact()
        fields = self.reading.fields_for(self.models(), settings.policy.fault_types)
        machine = None
        if fields.serial:
            machine = db.execute(_MACHINE_BY_SERIAL, {"serial": fields.serial.lower()}).first()
        customer_id = contact.customer_id if contact else None
        if customer_id is None and machine is not None:
            customer_id = machine.customer_id
        company = fields.company
        if not company and customer_id is not None:
            company = db.scalar(_CUSTOMER_NAME, {"customer_id": customer_id})
        ticket = {
            "state": TicketState.NEW.value,
            "channel": "email",
            "subject": parsed.subject[:500],
            "requester_name": fields.requester_name or (contact.name if contact else None),
            "identity": fields.department,
            "company": company,
            "contact_email": self.sender,
            "contact_phone": fields.phone or (contact.phone if contact else None),
            "problem": fields.problem,
            "request": fields.request,
            "machine_model": (machine.model if machine else None) or fields.machine_model,
            "serial": fields.serial,
            "fault_type": fields.fault_type,
            "language": customer_language(
                contact.language if contact else None,
                f"{parsed.subject}\n{parsed.visible_text}",
                settings.language,
            ),
            "customer_id": customer_id,
            "contact_id": contact.id if contact else None,
            "machine_id": machine.id if machine else None,
            "related_ticket_id": related_ticket_id,
            "created_at": self.now,
            "updated_at": self.now,
        }
        ticket_id = db.execute(_INSERT_TICKET, ticket).scalar_one()
        self._add_message(ticket_id)
        refusal = acknowledgement_refusal(
            self.sender,
            settings.smtp.domains,
            automatic_replies_last_hour(db, self.sender, self.now) if self.sender else 0,
            settings.email.auto_replies_per_sender_per_hour,
        )
        acknowledgement = None if refusal else self._acknowledgement(ticket_id, ticket)
        decision = open_ticket(self.now, self.services.calendar(), settings.policy, acknowledgement)
        assert decision.state is TicketState.NEW  # the state the ticket was written with
        detail: dict[str, Any] = {}
        if refusal:
            detail["no_acknowledgement"] = refusal
        if related_ticket_id:
            detail["related_ref"] = format_ref(related_ticket_id)
        self._apply(ticket_id, None, decision, **detail)
        result = f"ticket {format_ref(ticket_id)} opened"
        if related_ticket_id:
            result += f", linked to {format_ref(related_ticket_id)}"
        if refusal:
            result += f"; no acknowledgement: {refusal}"
        return ticket_id, result

    def _apply(
        self, ticket_id: int, owner_id: int | None, decision: Decision, **detail: Any
    ) -> None:
        record_decision(
            self.db,
            ticket_id,
            owner_id,
            decision,
            self.now,
            actor=self.sender or "unknown sender",
            via="email",
            addressing=self._addressing,
            detail={"inbound_id": self.row.id, **detail},
        )

    def _contact(self) -> _Contact | None:
        """The sender in the customer file, filed as a new contact if unknown."""
        if not self.sender:
            return None
        found = self.db.execute(_CONTACT_BY_EMAIL, {"email": self.sender}).first()
        if found is not None:
            return _Contact(*found)
        new = {"email": self.sender, "name": self.parsed.from_name, "created_at": self.now}
        ((contact_id, _created),) = insert_many_or_get(self.db, Contact, "email", [new])
        return _Contact(contact_id, None, self.parsed.from_name, None, None)

    def _add_message(self, ticket_id: int) -> None:
        parsed = self.parsed
        message_id = self.db.execute(
            _INSERT_MESSAGE,
            {
                "ticket_id": ticket_id,
                "direction": "in",
                "channel": "email",
                "sender": self.sender or parseaddr(self.row.envelope_from or "")[1] or "unknown",
                "subject": parsed.subject[:500],
                "body": parsed.visible_text,
                "full_text": parsed.text,
                "message_id": parsed.message_id,
                "inbound_id": self.row.id,
                "created_at": self.now,
            },
        ).scalar_one()
        if parsed.attachments:
            self.db.execute(
                _INSERT_ATTACHMENT,
                [
                    {
                        "message_id": message_id,
                        "filename": a.filename[:500],
                        "content_type": a.content_type[:200],
                        "size": a.size,
                        "sha256": a.sha256,
                        "content": a.content,
                    }
                    for a in parsed.attachments
                ],
            )

    def _acknowledgement(self, ticket_id: int, ticket: dict[str, Any]) -> Notification:
        assert self.sender is not None
        return Notification(
            key="ack",
            template=ACK_TEMPLATE,
            channel="email",
            recipient=self.sender,
            language=ticket["language"],
            context={
                "ref": format_ref(ticket_id),
                "subject": tag_subject(_reply_subject(ticket["subject"]), ticket_id),
                "requester_name": ticket["requester_name"] or "",
                "problem": ticket["problem"][:500],
                "reply_to": reply_address(
                    self.services.reply_key(),
                    self.settings.email.from_address,
                    ticket_id,
                    self.sender,
                    "customer",
                ),
            },
        )

    def _addressing(self, ticket_id: int, note: Notification) -> dict[str, Any]:
        references = [*self.parsed.references]
        if self.parsed.message_id:
            references.append(self.parsed.message_id)
        return {
            "message_id": outbound_message_id(
                f"ticket:{ticket_id}:{note.key}", self.settings.email.from_domain
            ),
            "reply_to_message_id": self.parsed.message_id,
            "references": references[-20:],
        }


def _reply_subject(subject: str) -> str:
    stripped = subject.strip() or "(no subject)"
    return (
        stripped if stripped.lower().startswith(("re:", "回复:", "回复：")) else f"Re: {stripped}"
    )
