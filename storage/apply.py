"""Applying a workflow decision to a ticket: state, deadlines, outbox rows, audit event.

Called inside the caller's transaction, so everything a decision implies commits
together or not at all. The rows are written with Core statements on the transaction's
connection: the email intake, which writes most of them, holds no ORM objects at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, insert, update

from storage.models import Deadline, Event
from storage.outbox import enqueue
from workflow.tickets import Decision, Notification, StartDeadline

# Builds the outbox fields a notification needs beyond the decision itself (Message-ID,
# threading headers, reply address) from the ticket's id; the gateway knows the domain
# and the token key.
Addressing = Callable[[int, Notification], dict[str, Any]]

_INSERT_DEADLINE = insert(Deadline)  # built once: every new ticket writes both
_INSERT_EVENT = insert(Event)


def meet_deadlines(
    connection: Connection, which: ColumnElement[bool], kinds: Iterable[str], now: datetime
) -> None:
    """Marks the open deadlines ``which`` selects, of ``kinds``, as met at ``now``.

    One UPDATE on the connection: a session holding deadlines not yet written must be
    flushed first.
    """
    wanted = [str(kind) for kind in kinds]
    if not wanted:
        return
    connection.execute(
        update(Deadline)
        .where(which, Deadline.state == "open", Deadline.kind.in_(wanted))
        .values(state="met", closed_at=now, next_stage_at=None)
    )


def deadline_row(start: StartDeadline, **links: int | None) -> dict[str, Any]:
    """The row of a clock the workflow starts; ``links`` name its ticket, trip, check-in
    and owner. The tick first looks at it when the owner is to be warned."""
    return {
        "kind": start.kind.value,
        "started_at": start.started_at,
        "due_at": start.due_at,
        "next_stage_at": start.warn_at,
        "state": "open",
        "stages_done": 0,
        "ticket_id": None,
        "trip_id": None,
        "checkin_id": None,
        "owner_id": None,
        **links,
    }


def insert_deadline(connection: Connection, start: StartDeadline, **links: int | None) -> None:
    """Starts one clock (``deadline_row``) outside a ticket decision: a check-in's."""
    connection.execute(_INSERT_DEADLINE, deadline_row(start, **links))


def record_decision(
    connection: Connection,
    ticket_id: int,
    owner_id: int | None,
    decision: Decision,
    now: datetime,
    *,
    actor: str,
    via: str,
    addressing: Addressing | None = None,
    detail: dict[str, Any] | None = None,
) -> list[int]:
    """Writes what a decision implies besides the ticket's own state: deadlines met and
    started, outbox rows, the audit event. Returns the ids of outbox rows it created."""
    if decision.stop:  # a new ticket has none: no statement to build
        meet_deadlines(connection, Deadline.ticket_id == ticket_id, decision.stop, now)
    if decision.start:
        connection.execute(
            _INSERT_DEADLINE,
            [deadline_row(s, ticket_id=ticket_id, owner_id=owner_id) for s in decision.start],
        )
    created = []
    for note in decision.notify:
        extra = addressing(ticket_id, note) if addressing else {}
        outbox_id, is_new = enqueue(
            connection,
            key=f"ticket:{ticket_id}:{note.key}",
            channel=note.channel,
            to=note.recipient,
            template=note.template,
            language=note.language,
            context=dict(note.context),
            now=now,
            ticket_id=ticket_id,
            auto_submitted=note.auto_submitted,
            **extra,
        )
        if is_new:
            created.append(outbox_id)
    detail = {"state": decision.state.value, **(detail or {})}
    record_event(connection, ticket_id, decision.event, now, actor=actor, via=via, detail=detail)
    return created


def record_event(
    connection: Connection,
    ticket_id: int | None,
    kind: str,
    now: datetime,
    *,
    actor: str,
    via: str,
    detail: dict[str, Any],
) -> None:
    """One line of the audit trail: what happened, to which ticket (if any), by whom."""
    connection.execute(
        _INSERT_EVENT,
        {
            "at": now,
            "ticket_id": ticket_id,
            "kind": kind,
            "actor": actor,
            "via": via,
            "detail": detail,
        },
    )
