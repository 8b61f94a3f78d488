"""One stored email, inside the intake transaction: load the facts, ask ``workflow``, write.

What the message is (bounce, auto-reply, duplicate, reply, new request) is
``workflow.intake.route_email``'s decision over the clues loaded here; the writes are
``gateway/intake/tickets.py``'s, the same for SMS.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from email.utils import parseaddr
from functools import partial
from typing import Any

from sqlalchemy import Connection

from gateway.intake.reading import Reading
from gateway.intake.service import Intake
from gateway.intake.tickets import (
    Author,
    acknowledgement,
    filed_company,
    open_ticket_from,
    reply_on_ticket,
)
from parsers.mail import ParsedEmail
from parsers.refs import find_subject_ref, format_ref, tag_subject
from parsers.reply_tokens import read_token, reply_address, split_plus_address
from storage.inbound import InboundRow
from storage.lookups import (
    bounceable_outbox_ids,
    contact_by_email,
    hold_message_id,
    machine_by_serial,
    mark_bounced,
    sender_on_ticket,
    ticket_exists,
    ticket_of_message_ids,
    ticket_with_message,
)
from storage.outbox import automatic_replies_last_hour, outbound_message_id
from workflow.intake import (
    Route,
    ThreadClues,
    acknowledgement_refusal,
    bounce_mark,
    customer_language,
    customer_of,
    route_email,
)
from workflow.tickets import Notification

# The machine models of the customer file, as the intake transaction sees them.
KnownModels = Callable[[], tuple[str, ...]]


class EmailIntake:
    """One parsed email applied to the database, inside the caller's transaction.

    Core statements on the transaction's connection and no ORM objects: this runs for
    every message of a burst of mail, and the ORM's unit of work cost three times the
    SQL it issued (measured: 6.8 ms a message with it, of which 0.8 ms parsing).
    """

    def __init__(
        self,
        intake: Intake,
        db: Connection,
        row: InboundRow,
        reading: Reading,
        now: datetime,
        models: KnownModels,
    ) -> None:
        self.intake = intake
        self.db = db
        self.row = row
        self.reading = reading
        self.parsed = reading.parsed
        self.now = now
        self.models = models
        self.sender = reading.parsed.from_address
        # A function of the message, not a bound method: an EmailIntake that held itself
        # through its Author would wait for the cycle collector, and its parsed mail with it.
        addressing = partial(thread_addressing, self.parsed, intake.email.from_domain)
        self.author = Author(self.sender or "unknown sender", "email", row.id, addressing)

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
            ticket_id = routing.ticket_id
            reply_on_ticket(
                self.db,
                self.author,
                ticket_id,
                self._message(),
                self.now,
                attachments=self._attachments(),
                threaded_by=routing.reason,
            )
            return ticket_id, f"reply on {format_ref(ticket_id)} ({routing.reason})"
        return self._open(routing.related_ticket_id)

    # -- what the message is ---------------------------------------------------------

    def _duplicate_of(self) -> int | None:
        """The ticket already holding this Message-ID with the same text, if any."""
        if not self.parsed.message_id:
            return None
        hold_message_id(self.db, self.parsed.message_id)
        return ticket_with_message(self.db, self.parsed.message_id, self.parsed.text)

    def _thread_clues(self) -> ThreadClues:
        subject_ticket = find_subject_ref(self.parsed.subject)
        if subject_ticket is not None and not ticket_exists(self.db, subject_ticket):
            subject_ticket = None
        return ThreadClues(
            token_ticket=self._token_ticket(),
            header_ticket=ticket_of_message_ids(
                self.db, [*self.parsed.in_reply_to, *reversed(self.parsed.references)]
            ),
            subject_ticket=subject_ticket,
            sender_on_subject_ticket=(
                subject_ticket is not None
                and self.sender is not None
                and sender_on_ticket(self.db, subject_ticket, self.sender)
            ),
        )

    def _token_ticket(self) -> int | None:
        if not self.sender:
            return None
        recipients = [*self.row.envelope_to, *self.parsed.to, *self.parsed.cc]
        for address in recipients:
            base, token = split_plus_address(str(address))
            if token is None or base.rpartition("@")[2].lower() not in self.intake.our_domains:
                continue
            claim = read_token(self.intake.reply_key, token, self.sender)
            if claim is not None and ticket_exists(self.db, claim.ticket_id):
                return claim.ticket_id
        return None

    # -- what we do with it ----------------------------------------------------------

    def _record_bounce(self) -> str:
        bounce = self.parsed.bounce
        assert bounce is not None
        ours = []
        if bounce.original_message_ids:
            ours = bounceable_outbox_ids(self.db, bounce.original_message_ids)
        if not ours:
            return f"bounce, not of a message of ours ({bounce.reason})"
        mark_bounced(
            self.db, ours, bounce_mark(bounce.reason, bounce.permanent, bounce.failed_recipients)
        )
        marked = ", ".join(f"#{outbox_id}" for outbox_id in ours)
        return f"bounce of outbox {marked} ({bounce.reason})"

    def _open(self, related_ticket_id: int | None) -> tuple[int, str]:
        parsed, db, intake = self.parsed, self.db, self.intake
        contact = (
            contact_by_email(db, self.sender, parsed.from_name, self.now) if self.sender else None
        )
        fields = self.reading.fields_for(self.models(), intake.policy.fault_types)
        machine = machine_by_serial(db, fields.serial) if fields.serial else None
        customer_id = customer_of(contact, machine)
        record: dict[str, Any] = {
            "channel": "email",
            "subject": parsed.subject[:500],
            "requester_name": fields.requester_name or (contact.name if contact else None),
            "identity": fields.department,
            "company": filed_company(db, fields.company, customer_id),
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
                intake.language,
            ),
            "customer_id": customer_id,
            "contact_id": contact.id if contact else None,
            "machine_id": machine.id if machine else None,
            "related_ticket_id": related_ticket_id,
        }
        refusal = acknowledgement_refusal(
            self.sender,
            tuple(intake.our_domains),
            automatic_replies_last_hour(db, self.sender, self.now) if self.sender else 0,
            intake.email.auto_replies_per_sender_per_hour,
        )
        detail: dict[str, Any] = {}
        if refusal:
            detail["no_acknowledgement"] = refusal
        if related_ticket_id:
            detail["related_ref"] = format_ref(related_ticket_id)
        ticket_id = open_ticket_from(
            db,
            intake,
            self.author,
            self.now,
            record,
            self._message(),
            attachments=self._attachments(),
            acknowledge=None if refusal else lambda new_id: self._acknowledgement(new_id, record),
            detail=detail,
        )
        result = f"ticket {format_ref(ticket_id)} opened"
        if related_ticket_id:
            result += f", linked to {format_ref(related_ticket_id)}"
        if refusal:
            result += f"; no acknowledgement: {refusal}"
        return ticket_id, result

    def _message(self) -> dict[str, Any]:
        parsed = self.parsed
        return {
            "direction": "in",
            "channel": "email",
            "sender": self.sender or parseaddr(self.row.envelope_from or "")[1] or "unknown",
            "subject": parsed.subject[:500],
            "body": parsed.visible_text,
            "full_text": parsed.text,
            "message_id": parsed.message_id,
            "inbound_id": self.row.id,
        }

    def _attachments(self) -> list[dict[str, Any]]:
        return [
            {
                "filename": a.filename[:500],
                "content_type": a.content_type[:200],
                "size": a.size,
                "sha256": a.sha256,
                "content": a.content,
            }
            for a in self.parsed.attachments
        ]

    def _acknowledgement(self, ticket_id: int, record: dict[str, Any]) -> Notification:
        assert self.sender is not None
        reply_to = reply_address(
            self.intake.reply_key,
            self.intake.email.from_address,
            ticket_id,
            self.sender,
            "customer",
        )
        subject = tag_subject(_reply_subject(record["subject"]), ticket_id)
        return acknowledgement(ticket_id, record, "email", self.sender, subject, reply_to)


def thread_addressing(
    parsed: ParsedEmail, from_domain: str, ticket_id: int, note: Notification
) -> dict[str, Any]:
    """The threading headers of an email we send on a ticket in answer to ``parsed``:
    a Message-ID derived from the outbox key, In-Reply-To and References."""
    references = [*parsed.references]
    if parsed.message_id:
        references.append(parsed.message_id)
    return {
        "message_id": outbound_message_id(f"ticket:{ticket_id}:{note.key}", from_domain),
        "reply_to_message_id": parsed.message_id,
        "references": references[-20:],
    }


def _reply_subject(subject: str) -> str:
    stripped = subject.strip() or "(no subject)"
    return (
        stripped if stripped.lower().startswith(("re:", "回复:", "回复：")) else f"Re: {stripped}"
    )
