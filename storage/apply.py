"""Applying a workflow decision to a ticket: state, deadlines, outbox rows, audit event.

Called inside the caller's unit of work, so everything a decision implies commits
together or not at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from storage.models import Deadline, Event, Ticket
from storage.outbox import enqueue
from workflow.tickets import Decision, Notification, StartDeadline

# Builds the outbox fields a notification needs beyond the decision itself (Message-ID,
# threading headers, reply address); the gateway knows the domain and the token key.
Addressing = Callable[[Ticket, Notification], dict[str, Any]]


def meet_deadlines(
    session: Session, which: ColumnElement[bool], kinds: Iterable[str], now: datetime
) -> None:
    """Marks the open deadlines ``which`` selects, of ``kinds``, as met at ``now``."""
    open_rows = select(Deadline).where(
        which, Deadline.state == "open", Deadline.kind.in_([str(kind) for kind in kinds])
    )
    for deadline in session.scalars(open_rows):
        deadline.state, deadline.closed_at, deadline.next_stage_at = "met", now, None


def new_deadline(start: StartDeadline, **links: int | None) -> Deadline:
    """The row of a clock the workflow starts; ``links`` name its ticket, trip, check-in
    and owner. The tick first looks at it when the owner is to be warned."""
    return Deadline(
        kind=start.kind.value,
        started_at=start.started_at,
        due_at=start.due_at,
        next_stage_at=start.warn_at,
        state="open",
        stages_done=0,
        **links,
    )


def apply_decision(
    session: Session,
    ticket: Ticket,
    decision: Decision,
    now: datetime,
    *,
    actor: str,
    via: str,
    addressing: Addressing | None = None,
    detail: dict[str, Any] | None = None,
) -> list[int]:
    """Writes the decision; returns the ids of outbox rows it created."""
    ticket.state = decision.state.value
    ticket.updated_at = now
    session.flush()  # the ticket needs its id for the rows below
    if decision.stop:
        meet_deadlines(session, Deadline.ticket_id == ticket.id, decision.stop, now)
    for start in decision.start:
        session.add(new_deadline(start, ticket_id=ticket.id, owner_id=ticket.owner_id))
    created = []
    for note in decision.notify:
        extra = addressing(ticket, note) if addressing else {}
        outbox_id, is_new = enqueue(
            session,
            key=f"ticket:{ticket.id}:{note.key}",
            channel=note.channel,
            to=note.recipient,
            template=note.template,
            language=note.language,
            context=dict(note.context),
            now=now,
            ticket_id=ticket.id,
            auto_submitted=note.auto_submitted,
            **extra,
        )
        if is_new:
            created.append(outbox_id)
    session.add(
        Event(
            at=now,
            ticket_id=ticket.id,
            kind=decision.event,
            actor=actor,
            via=via,
            detail={"state": decision.state.value, **(detail or {})},
        )
    )
    return created
