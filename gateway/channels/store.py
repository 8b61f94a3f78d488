"""Storing what arrives, before anyone is told "yes" (250, IMAP move, HTTP 200)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Connection, Engine

from storage.inserts import insert_many_or_get
from storage.models import InboundMessage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stored:
    inbound_id: int
    created: bool  # False: the very same bytes were stored before


# How a listener stores a row (``email_row``/``sms_row``) and waits for its commit
# without blocking the event loop: ``serve``'s group-commit writer, or ``store_now``.
Store = Callable[[dict[str, Any]], Awaitable[Stored]]


def store_now(engine: Engine) -> Store:
    """A ``Store`` that commits each row on its own, in a worker thread."""

    async def store(row: dict[str, Any]) -> Stored:
        return (await asyncio.to_thread(store_rows, engine, [row]))[0]

    return store


def header_message_id(raw: bytes) -> str | None:
    """The Message-ID header, read without trusting the rest of the message."""
    try:
        headers = BytesHeaderParser(policy=compat32).parsebytes(raw)
        value = headers.get("Message-ID")
    except Exception:  # malformed headers must not stop the message from being stored
        return None
    if not value:
        return None
    text = str(value).strip()
    return text[:500] or None


def email_dedupe_key(sha256: str) -> str:
    # The same bytes twice (a client retrying after a lost 250, an IMAP re-fetch) are one
    # row. The same Message-ID with other bytes is a second row on purpose: the pipeline
    # decides whether it repeats a message already on a ticket, visibly, never silently.
    return f"email:sha256:{sha256}"


def email_row(
    raw: bytes,
    *,
    source: str,
    received_at: datetime,
    envelope_from: str | None = None,
    envelope_to: Sequence[str] = (),
) -> dict[str, Any]:
    """The inbound row of a raw email, keyed by its content hash."""
    sha = hashlib.sha256(raw).hexdigest()
    return {
        "channel": "email",
        "source": source,
        "dedupe_key": email_dedupe_key(sha),
        "message_id": header_message_id(raw),
        "envelope_from": envelope_from,
        "envelope_to": list(envelope_to),
        "raw": raw,
        "sha256": sha,
        "received_at": received_at,
    }


def sms_row(
    form: Mapping[str, str], *, source: str, received_at: datetime, raw: bytes | None = None
) -> dict[str, Any]:
    """The inbound row of an SMS (Twilio's form fields), keyed by MessageSid.

    ``raw``: the request body as posted (the webhook); without it, the form encoded.
    The same MessageSid twice, a webhook retried or two requests racing, is one row.
    """
    if raw is None:
        raw = urlencode(sorted(form.items())).encode("utf-8")
    sha = hashlib.sha256(raw).hexdigest()
    sid = form.get("MessageSid") or form.get("SmsSid") or ""
    return {
        "channel": "sms",
        "source": source,
        "dedupe_key": f"sms:{sid}" if sid else f"sms:sha256:{sha}",
        "message_id": sid or None,
        "envelope_from": form.get("From"),
        "envelope_to": [form["To"]] if form.get("To") else [],
        "raw": raw,
        "sha256": sha,
        "received_at": received_at,
    }


def store_rows(engine: Engine, rows: Sequence[dict[str, Any]]) -> list[Stored]:
    """Commits inbound rows in one transaction; a row already there is found, not doubled."""
    with engine.begin() as connection:
        return insert_rows(connection, rows)


def insert_rows(connection: Connection, rows: Sequence[dict[str, Any]]) -> list[Stored]:
    """``store_rows`` inside the caller's transaction, on a Core connection, not an ORM
    session: the listeners call this for every message they answer, and the rows need
    no objects."""
    new_rows = [{**values, "state": "pending", "attempts": 0} for values in rows]
    results = insert_many_or_get(connection, InboundMessage, "dedupe_key", new_rows)
    stored = [Stored(inbound_id, created) for inbound_id, created in results]
    for values, result in zip(rows, stored, strict=True):
        if not result.created:
            log.info(
                "inbound %d: the same message arrived again (%s)",
                result.inbound_id,
                values["source"],
            )
    return stored


def store_email(
    engine: Engine,
    raw: bytes,
    *,
    source: str,
    received_at: datetime,
    envelope_from: str | None = None,
    envelope_to: Sequence[str] = (),
) -> Stored:
    """Commits the raw message and returns its row; safe to call again with the same bytes."""
    row = email_row(
        raw,
        source=source,
        received_at=received_at,
        envelope_from=envelope_from,
        envelope_to=envelope_to,
    )
    return store_rows(engine, [row])[0]


def store_sms(
    engine: Engine, form: Mapping[str, str], *, source: str, received_at: datetime
) -> Stored:
    """Commits an inbound SMS and returns its row; the same MessageSid again finds it."""
    return store_rows(engine, [sms_row(form, source=source, received_at=received_at)])[0]
