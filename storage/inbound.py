"""The stored inbound rows as the intake works through them: claim, finish, quarantine.

The ``inbound_messages`` table is the intake's queue: the channels insert ``pending``
rows (``gateway/channels/store.py``), the intake claims one at a time inside its write
transaction and marks it ``processed`` or ``failed`` (quarantined, for
``supportline inbound replay``) in that same transaction.
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, bindparam, func, select, update

from storage.models import InboundMessage

PROCESSABLE = ("pending", "failed")  # failed: by `supportline inbound replay`
MAX_ERROR_CHARS = 4000


@dataclass(frozen=True)
class InboundRow:
    """What processing reads of a stored row."""

    id: int
    channel: str
    raw: bytes
    envelope_from: str | None
    envelope_to: list[str]


# Built once: building a statement from ORM attributes costs three times executing it
# (SQLAlchemy caches the compiled form, not the expression).
_CLAIM = (
    select(
        InboundMessage.id,
        InboundMessage.channel,
        InboundMessage.raw,
        InboundMessage.envelope_from,
        InboundMessage.envelope_to,
    )
    .where(InboundMessage.id == bindparam("inbound_id"), InboundMessage.state.in_(PROCESSABLE))
    .with_for_update()
)
_STATE = select(InboundMessage.state).where(InboundMessage.id == bindparam("inbound_id"))
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
    .limit(bindparam("limit"))
)
_RAW_OF = (
    select(InboundMessage.id, InboundMessage.raw)
    .where(InboundMessage.id.in_(bindparam("ids", expanding=True)))
    .order_by(InboundMessage.id)
)


def claim_inbound(connection: Connection, inbound_id: int) -> InboundRow | str:
    """Takes a stored row for processing, inside the caller's write transaction; else
    says what state keeps it from it.

    The row stays ours until commit: ``FOR UPDATE`` locks it on PostgreSQL (a second
    worker waits, then finds it processed), and SQLite's BEGIN IMMEDIATE holds the whole
    database. Not an UPDATE: SQLite rewrites a whole record, raw bytes and all, for any
    change, and the row is updated once anyway when processing ends.
    """
    claimed = connection.execute(_CLAIM, {"inbound_id": inbound_id}).first()
    if claimed is None:
        state = connection.scalar(_STATE, {"inbound_id": inbound_id})
        return state or "missing"
    return InboundRow(*claimed)


def mark_processed(connection: Connection, inbound_id: int, result: str, now: datetime) -> None:
    connection.execute(_MARK_PROCESSED, {"inbound_id": inbound_id, "outcome": result, "now": now})


def mark_failed(connection: Connection, inbound_id: int, exc: BaseException, now: datetime) -> None:
    """Quarantines the row: state ``failed`` with the error and its trace."""
    error = "".join(traceback.format_exception_only(exc)).strip()
    trace = "".join(traceback.format_exception(exc))[-MAX_ERROR_CHARS:]
    connection.execute(
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


def pending_ids(connection: Connection, after: int, limit: int) -> list[int]:
    """The next ``limit`` pending rows past ``after``, in arrival order."""
    return list(connection.scalars(_PENDING_IDS, {"after": after, "batch_size": limit}))


def pending_email_sizes(connection: Connection, after: int, limit: int) -> list[tuple[int, int]]:
    """``(id, size of the raw bytes)`` of the next pending emails past ``after``."""
    rows = connection.execute(_PENDING_EMAIL_SIZES, {"after": after, "limit": limit})
    return [(row.id, row.size) for row in rows]


def raw_of(connection: Connection, ids: Sequence[int]) -> list[tuple[int, bytes]]:
    """``(id, raw bytes)`` of the rows ``ids``, in id order."""
    return [(row.id, row.raw) for row in connection.execute(_RAW_OF, {"ids": list(ids)})]
