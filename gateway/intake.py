"""The intake pipeline: a stored inbound email becomes a ticket, a reply, or a recorded no-op.

Runs after the raw bytes are committed. One transaction per message: the inbound row's
state, the ticket, its message, deadlines and outbox rows land together. A message that
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
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from gateway.bootstrap import Services
from gateway.sms_intake import SmsIntake
from parsers.intake import extract_intake
from parsers.mail import ParsedEmail, parse_email
from parsers.refs import find_subject_ref, format_ref, tag_subject
from parsers.reply_tokens import read_token, reply_address, split_plus_address
from storage.apply import apply_decision
from storage.db import writers_waiting
from storage.models import (
    Attachment,
    Contact,
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

PROCESSABLE = ("pending", "failed")
ACK_TEMPLATE = "ticket_ack"
MAX_ERROR_CHARS = 4000


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


def process_batch(services: Services, inbound_ids: Sequence[int]) -> tuple[list[Outcome], int]:
    """Processes rows in one transaction, in order: one commit (one fsync on SQLite) for
    the batch instead of one per message.

    Optimistic: should one message fail, the whole batch rolls back and is processed
    again one message per transaction, where the failing one is quarantined alone.
    (A savepoint per message would do the same in one pass, at two statements and a
    flush more for every message; failures are rare.) Rows another worker already took
    are skipped. On SQLite the batch ends early, after the message in hand, when another
    writer waits for the database (a listener storing what a sender waits for). Returns
    the outcomes and the last id it went through.
    """
    services.reply_key()
    try:
        with unit_of_work(services.sessions) as session:
            outcomes, done_through = [], 0
            for inbound_id in inbound_ids:
                with suppress(NotProcessable):  # nothing was written for it
                    outcomes.append(_process_in_transaction(services, session, inbound_id))
                done_through = inbound_id
                if writers_waiting(services.engine):
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
    batch_size: int = 8,
    stopping: Callable[[], bool] = lambda: False,
    before_batch: Callable[[], None] = lambda: None,
) -> list[Outcome]:
    """Processes every row stored but not yet processed, batch by batch, until none is
    left or ``stopping()`` says so; ``before_batch`` may hold a batch back."""
    outcomes: list[Outcome] = []
    after = 0
    while not stopping():
        before_batch()
        with unit_of_work(services.sessions) as session:
            ids = session.scalars(
                select(InboundMessage.id)
                .where(InboundMessage.state == "pending", InboundMessage.id > after)
                .order_by(InboundMessage.id)
                .limit(batch_size)
            ).all()
        if not ids:
            return outcomes
        done, after = process_batch(services, ids)
        outcomes.extend(done)
    return outcomes


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


def _process_in_transaction(services: Services, session: Session, inbound_id: int) -> Outcome:
    # Claiming the row with an UPDATE locks it (PostgreSQL) or the database (SQLite's
    # BEGIN IMMEDIATE) until commit, so two workers never process the same message.
    claimed = session.execute(
        update(InboundMessage)
        .where(InboundMessage.id == inbound_id, InboundMessage.state.in_(PROCESSABLE))
        .values(attempts=InboundMessage.attempts + 1)
    )
    if claimed.rowcount == 0:  # type: ignore[attr-defined]
        row = session.get(InboundMessage, inbound_id)
        state = row.state if row else "missing"
        raise NotProcessable(f"inbound {inbound_id} is {state}; nothing to process")
    row = session.get_one(InboundMessage, inbound_id)
    now = services.clock()
    if row.channel == "sms":
        ticket_id, result = SmsIntake(services, session, row, now).run()
    else:
        ticket_id, result = EmailIntake(services, session, row, parse_email(row.raw), now).run()
    row.state, row.result, row.error, row.processed_at = "processed", result, None, now
    return Outcome(inbound_id, result, ticket_id)


class EmailIntake:
    """One parsed email applied to the database, inside the caller's transaction."""

    def __init__(
        self,
        services: Services,
        session: Session,
        row: InboundMessage,
        parsed: ParsedEmail,
        now: datetime,
    ) -> None:
        self.services = services
        self.session = session
        self.row = row
        self.parsed = parsed
        self.now = now
        self.settings = services.settings
        self.sender = parsed.from_address

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
        if self.session.get_bind().dialect.name == "postgresql":
            # Two copies of one message (other routes, other bytes) processed at once by
            # two serve processes would each miss the other's uncommitted Message: the
            # second waits here until the first commits. (SQLite has one writer anyway.)
            self.session.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:message_id))"),
                {"message_id": self.parsed.message_id},
            )
        earlier = self.session.scalars(
            select(Message).where(
                Message.message_id == self.parsed.message_id, Message.direction == "in"
            )
        ).first()
        if earlier is not None and earlier.full_text == self.parsed.text:
            return earlier.ticket_id
        return None

    def _thread_clues(self) -> ThreadClues:
        subject_ticket = find_subject_ref(self.parsed.subject)
        if subject_ticket is not None and self.session.get(Ticket, subject_ticket) is None:
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
            if claim is not None and self.session.get(Ticket, claim.ticket_id) is not None:
                return claim.ticket_id
        return None

    def _header_ticket(self) -> int | None:
        ids = [*self.parsed.in_reply_to, *reversed(self.parsed.references)]
        if not ids:
            return None
        for message_id in ids:
            known = self.session.scalars(
                select(Message.ticket_id).where(Message.message_id == message_id)
            ).first()
            if known is None:
                known = self.session.scalars(
                    select(OutboxMessage.ticket_id).where(
                        OutboxMessage.message_id == message_id,
                        OutboxMessage.ticket_id.is_not(None),
                    )
                ).first()
            if known is not None:
                return known
        return None

    def _sender_on_ticket(self, ticket_id: int) -> bool:
        if not self.sender:
            return False
        ticket = self.session.get_one(Ticket, ticket_id)
        if (ticket.contact_email or "").lower() == self.sender:
            return True
        wrote_before = self.session.scalars(
            select(Message.id).where(Message.ticket_id == ticket_id, Message.sender == self.sender)
        ).first()
        return wrote_before is not None

    # -- what we do with it ----------------------------------------------------------

    def _record_bounce(self) -> str:
        bounce = self.parsed.bounce
        assert bounce is not None
        ours = []
        if bounce.original_message_ids:
            # Only what already left can bounce; a report naming a row still queued or
            # being sent (a forgery, or a mix-up) must not stop it from going out.
            ours = list(
                self.session.scalars(
                    select(OutboxMessage).where(
                        OutboxMessage.message_id.in_(bounce.original_message_ids),
                        OutboxMessage.status.in_(("sent", "bounced")),
                    )
                )
            )
        recipients = ", ".join(bounce.failed_recipients)
        for sent in ours:
            if bounce.permanent:
                sent.status, sent.delivery_status = "bounced", "bounced"
            else:  # delayed: still in transit somewhere, nothing to undo
                sent.delivery_status = "delayed"
            sent.last_error = f"bounce: {bounce.reason}" + (
                f" ({recipients})" if recipients else ""
            )
        if not ours:
            return f"bounce, not of a message of ours ({bounce.reason})"
        marked = ", ".join(f"#{o.id}" for o in ours)
        return f"bounce of outbox {marked} ({bounce.reason})"

    def _reply(self, ticket_id: int, reason: str) -> tuple[int, str]:
        ticket = self.session.get_one(Ticket, ticket_id)
        self._add_message(ticket)
        self._apply(ticket, customer_replied(TicketState(ticket.state)), threaded_by=reason)
        return ticket.id, f"reply on {format_ref(ticket.id)} ({reason})"

    def _open(self, related_ticket_id: int | None) -> tuple[int, str]:
        parsed, settings = self.parsed, self.settings
        contact = self._contact()
        known_models = self.session.scalars(select(Machine.model).distinct()).all()
        fields = extract_intake(
            parsed.subject,
            parsed.visible_text,
            from_name=parsed.from_name,
            known_models=known_models,
            fault_types=settings.policy.fault_types,
        )
        machine = None
        if fields.serial:
            machine = self.session.scalars(
                select(Machine).where(func.lower(Machine.serial) == fields.serial.lower())
            ).first()
        customer = contact.customer if contact else None
        if customer is None and machine is not None:
            customer = machine.customer
        language = customer_language(
            contact.language if contact else None,
            f"{parsed.subject}\n{parsed.visible_text}",
            settings.language,
        )
        ticket = Ticket(
            state=TicketState.NEW.value,
            channel="email",
            subject=parsed.subject[:500],
            requester_name=fields.requester_name or (contact.name if contact else None),
            identity=fields.department,
            company=fields.company or (customer.name if customer else None),
            contact_email=self.sender,
            contact_phone=fields.phone or (contact.phone if contact else None),
            problem=fields.problem,
            request=fields.request,
            machine_model=(machine.model if machine else None) or fields.machine_model,
            serial=fields.serial,
            fault_type=fields.fault_type,
            language=language,
            customer_id=customer.id if customer else None,
            contact_id=contact.id if contact else None,
            machine_id=machine.id if machine else None,
            related_ticket_id=related_ticket_id,
            created_at=self.now,
            updated_at=self.now,
        )
        self.session.add(ticket)
        self.session.flush()
        self._add_message(ticket)
        refusal = acknowledgement_refusal(
            self.sender,
            settings.smtp.domains,
            automatic_replies_last_hour(self.session, self.sender, self.now) if self.sender else 0,
            settings.email.auto_replies_per_sender_per_hour,
        )
        acknowledgement = None if refusal else self._acknowledgement(ticket)
        decision = open_ticket(self.now, self.services.calendar(), settings.policy, acknowledgement)
        detail: dict[str, Any] = {}
        if refusal:
            detail["no_acknowledgement"] = refusal
        if related_ticket_id:
            detail["related_ref"] = format_ref(related_ticket_id)
        self._apply(ticket, decision, **detail)
        result = f"ticket {format_ref(ticket.id)} opened"
        if related_ticket_id:
            result += f", linked to {format_ref(related_ticket_id)}"
        if refusal:
            result += f"; no acknowledgement: {refusal}"
        return ticket.id, result

    def _apply(self, ticket: Ticket, decision: Decision, **detail: Any) -> None:
        apply_decision(
            self.session,
            ticket,
            decision,
            self.now,
            actor=self.sender or "unknown sender",
            via="email",
            addressing=self._addressing,
            detail={"inbound_id": self.row.id, **detail},
        )

    def _contact(self) -> Contact | None:
        """The sender in the customer file, filed as a new contact if unknown."""
        if not self.sender:
            return None
        contact = self.session.scalars(select(Contact).where(Contact.email == self.sender)).first()
        if contact is None:
            contact = Contact(email=self.sender, name=self.parsed.from_name, created_at=self.now)
            self.session.add(contact)
            self.session.flush()
        return contact

    def _add_message(self, ticket: Ticket) -> Message:
        parsed = self.parsed
        message = Message(
            ticket_id=ticket.id,
            direction="in",
            channel="email",
            sender=self.sender or parseaddr(self.row.envelope_from or "")[1] or "unknown",
            subject=parsed.subject[:500],
            body=parsed.visible_text,
            full_text=parsed.text,
            message_id=parsed.message_id,
            inbound_id=self.row.id,
            created_at=self.now,
        )
        message.attachments = [
            Attachment(
                filename=a.filename[:500],
                content_type=a.content_type[:200],
                size=a.size,
                sha256=a.sha256,
                content=a.content,
            )
            for a in parsed.attachments
        ]
        self.session.add(message)
        return message

    def _acknowledgement(self, ticket: Ticket) -> Notification:
        assert self.sender is not None
        base = parseaddr(self.settings.email.from_)[1]
        return Notification(
            key="ack",
            template=ACK_TEMPLATE,
            channel="email",
            recipient=self.sender,
            language=ticket.language,
            context={
                "ref": format_ref(ticket.id),
                "subject": tag_subject(_reply_subject(ticket.subject), ticket.id),
                "requester_name": ticket.requester_name or "",
                "problem": ticket.problem[:500],
                "reply_to": reply_address(
                    self.services.reply_key(), base, ticket.id, self.sender, "customer"
                ),
            },
        )

    def _addressing(self, ticket: Ticket, note: Notification) -> dict[str, Any]:
        domain = parseaddr(self.settings.email.from_)[1].rpartition("@")[2] or "localhost"
        references = [*self.parsed.references]
        if self.parsed.message_id:
            references.append(self.parsed.message_id)
        return {
            "message_id": outbound_message_id(f"ticket:{ticket.id}:{note.key}", domain),
            "reply_to_message_id": self.parsed.message_id,
            "references": references[-20:],
        }


def _reply_subject(subject: str) -> str:
    stripped = subject.strip() or "(no subject)"
    return (
        stripped if stripped.lower().startswith(("re:", "回复:", "回复：")) else f"Re: {stripped}"
    )
