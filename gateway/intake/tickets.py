"""Opening a ticket, replying on one and recording a decision: one way for email and SMS.

Each runs inside the intake transaction, on its connection: the ticket, its message,
deadlines, outbox rows and the audit event commit together, or not at all. The rows are
written by ``storage/tickets.py`` and ``storage/apply.py``; the decisions are
``workflow/tickets.py``'s.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from gateway.intake.service import Intake
from parsers.refs import format_ref
from storage.apply import Addressing, record_decision
from storage.lookups import customer_name
from storage.people import emails_of_phone, opted_out_of_sms
from storage.tickets import add_message, insert_ticket, set_ticket_state, ticket_state
from workflow.intake import company_of
from workflow.reach import fallback_email, sms_or_email
from workflow.tickets import Decision, Notification, TicketState, customer_replied, open_ticket

ACK_TEMPLATE = "ticket_ack"


@dataclass(frozen=True)
class Author:
    """Who the audit trail names for what one inbound message did, and how it came."""

    actor: str  # the sender's address or number
    via: str  # "email" or "sms"
    inbound_id: int
    addressing: Addressing | None = None  # threading headers of the email notifications


def open_ticket_from(
    db: Connection,
    intake: Intake,
    author: Author,
    now: datetime,
    record: Mapping[str, Any],
    message: Mapping[str, Any],
    *,
    attachments: Sequence[Mapping[str, Any]] = (),
    acknowledge: Callable[[int], Notification] | None = None,
    detail: Mapping[str, Any] | None = None,
) -> int:
    """Opens a ticket with the intake record ``record``, its first message ``message``,
    its clocks and (``acknowledge``: builds it from the new ticket's id) the customer's
    acknowledgement; returns the ticket's id."""
    ticket_id = insert_ticket(db, {"state": TicketState.NEW.value, **record}, now)
    add_message(db, ticket_id, message, now, attachments)
    ack = acknowledge(ticket_id) if acknowledge is not None else None
    decision = open_ticket(now, intake.calendar, intake.policy, ack)
    assert decision.state is TicketState.NEW  # the state the ticket was written with
    record_on_ticket(db, author, ticket_id, None, decision, now, **(detail or {}))
    return ticket_id


def acknowledgement(
    ticket_id: int,
    record: Mapping[str, Any],
    channel: str,
    recipient: str,
    subject: str,
    reply_to: str = "",
) -> Notification:
    """The customer's acknowledgement of a new ticket, on the channel they wrote on."""
    return Notification(
        key="ack",
        template=ACK_TEMPLATE,
        channel=channel,
        recipient=recipient,
        language=record["language"],
        context={
            "ref": format_ref(ticket_id),
            "subject": subject,
            "requester_name": record["requester_name"] or "",
            "problem": record["problem"][:500],
            "reply_to": reply_to,
        },
    )


def filed_company(db: Connection, stated: str | None, customer_id: int | None) -> str | None:
    """``workflow.intake.company_of``, reading the customer file's name only when the
    customer wrote none."""
    if stated or customer_id is None:
        return company_of(stated, None)
    return company_of(stated, customer_name(db, customer_id))


def reply_on_ticket(
    db: Connection,
    author: Author,
    ticket_id: int,
    message: Mapping[str, Any],
    now: datetime,
    *,
    attachments: Sequence[Mapping[str, Any]] = (),
    **detail: Any,
) -> None:
    """Adds the customer's ``message`` to the ticket's thread; the ticket moves on as
    ``workflow.tickets.customer_replied`` says."""
    state, owner_id = ticket_state(db, ticket_id)
    add_message(db, ticket_id, message, now, attachments)
    decision = customer_replied(TicketState(state))
    set_ticket_state(db, ticket_id, decision.state.value, now)
    record_on_ticket(db, author, ticket_id, owner_id, decision, now, **detail)


def record_on_ticket(
    db: Connection,
    author: Author,
    ticket_id: int,
    owner_id: int | None,
    decision: Decision,
    now: datetime,
    **detail: Any,
) -> list[int]:
    """Writes what ``decision`` implies besides the ticket's state (clocks, outbox rows,
    the event), its SMS rerouted for numbers that opted out; returns new outbox ids."""
    reachable = (reach(db, note) for note in decision.notify)
    decision = replace(decision, notify=tuple(note for note in reachable if note))
    return record_decision(
        db,
        ticket_id,
        owner_id,
        decision,
        now,
        actor=author.actor,
        via=author.via,
        addressing=author.addressing,
        detail={"inbound_id": author.inbound_id, **detail},
    )


def reach(db: Connection, note: Notification) -> Notification | None:
    """The notification as it may go (``workflow.reach``): an SMS to a number that opted
    out goes by email, or not at all without an address."""
    if note.channel != "sms":
        return note
    opted_out = opted_out_of_sms(db, note.recipient)
    email = fallback_email(*emails_of_phone(db, note.recipient)) if opted_out else None
    return sms_or_email(note, opted_out, email)
