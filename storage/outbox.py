"""Writing outbox rows: once per idempotency key, inside the caller's transaction."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, func, select

from storage.inserts import insert_many_or_get
from storage.models import OutboxMessage


def outbound_message_id(idempotency_key: str, domain: str) -> str:
    """The Message-ID of an outbound email, derived from its idempotency key.

    Deterministic so that a resend after a crash carries the same Message-ID and the
    recipient's client (and our own threading) recognises it.

    >>> outbound_message_id("ticket:1:ack", "support.example.com")
    '<sl.70cd15d6f12c24ac1631@support.example.com>'
    """
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:20]
    return f"<sl.{digest}@{domain}>"


def enqueue(
    connection: Connection,
    *,
    key: str,
    channel: str,
    to: str,
    template: str,
    language: str,
    context: Mapping[str, Any],
    now: datetime,
    ticket_id: int | None = None,
    message_id: str | None = None,
    reply_to_message_id: str | None = None,
    references: Sequence[str] = (),
    auto_submitted: bool = True,
) -> tuple[int, bool]:
    """Queues a message; the same key again is a no-op. Returns (row id, created)."""
    return insert_many_or_get(
        connection,
        OutboxMessage,
        "idempotency_key",
        [
            {
                "idempotency_key": key,
                "channel": channel,
                "to_address": to,
                "template": template,
                "language": language,
                "context": dict(context),
                "ticket_id": ticket_id,
                "message_id": message_id,
                "reply_to_message_id": reply_to_message_id,
                "references": list(references),
                "auto_submitted": auto_submitted,
                "status": "queued",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            },
        ],
    )[0]


_AUTOMATIC_SINCE = select(func.count(OutboxMessage.id)).where(
    OutboxMessage.to_address == bindparam("address"),
    OutboxMessage.auto_submitted.is_(True),
    OutboxMessage.created_at > bindparam("since"),
)


def automatic_replies_last_hour(connection: Connection, address: str, now: datetime) -> int:
    """How many automatic messages went to ``address`` in the hour before ``now`` (the
    per-sender limit on acknowledgements, RFC 3834 §2)."""
    since = now - timedelta(hours=1)
    count = connection.scalar(_AUTOMATIC_SINCE, {"address": address, "since": since})
    return count or 0
