"""Writing tickets and their threads: open one, add a message to it, change it.

One way for every channel, in Core statements on the caller's transaction; what a
workflow decision implies besides (deadlines, outbox rows, the audit event) is
``storage/apply.py``'s ``record_decision``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update

from storage.models import Attachment, Message, Ticket

_INSERT_TICKET = insert(Ticket).returning(Ticket.id)
_INSERT_MESSAGE = insert(Message).returning(Message.id)
_INSERT_ATTACHMENT = insert(Attachment)
_TICKET_STATE = select(Ticket.state, Ticket.owner_id).where(Ticket.id == bindparam("ticket_id"))
_SET_STATE = (
    update(Ticket)
    .where(Ticket.id == bindparam("ticket_id"))
    .values(state=bindparam("new_state"), updated_at=bindparam("now"))
)


def insert_ticket(connection: Connection, record: Mapping[str, Any], now: datetime) -> int:
    """Opens a ticket with the intake record's columns ``record``; returns its id."""
    values = {"created_at": now, "updated_at": now, **record}
    return int(connection.execute(_INSERT_TICKET, values).scalar_one())


def add_message(
    connection: Connection,
    ticket_id: int,
    message: Mapping[str, Any],
    now: datetime,
    attachments: Sequence[Mapping[str, Any]] = (),
) -> int:
    """Adds ``message`` (a ``messages`` row's columns) to the ticket's thread, with its
    ``attachments`` (``attachments`` rows' columns); returns the message's id."""
    values = {"ticket_id": ticket_id, "created_at": now, **message}
    message_id = int(connection.execute(_INSERT_MESSAGE, values).scalar_one())
    if attachments:
        rows = [{"message_id": message_id, **attachment} for attachment in attachments]
        connection.execute(_INSERT_ATTACHMENT, rows)
    return message_id


def ticket_state(connection: Connection, ticket_id: int) -> tuple[str, int | None]:
    """The ticket's state and owner (第一受理人)."""
    state, owner_id = connection.execute(_TICKET_STATE, {"ticket_id": ticket_id}).one()
    return state, owner_id


def set_ticket_state(connection: Connection, ticket_id: int, state: str, now: datetime) -> None:
    connection.execute(_SET_STATE, {"ticket_id": ticket_id, "new_state": state, "now": now})


def update_ticket(connection: Connection, ticket_id: int, values: Mapping[str, Any]) -> None:
    """Sets the columns ``values`` of one ticket (a staff command's assignment, say)."""
    if values:
        connection.execute(update(Ticket).where(Ticket.id == ticket_id).values(**values))
