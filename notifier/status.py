"""Delivery reports from the SMS provider (Twilio's status callback), forward only.

Twilio's callbacks may arrive out of order (a late ``sent`` after ``delivered``) and
more than once; a row's ``delivery_status`` only ever moves to a later stage.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import OutboxMessage
from workflow.settings import Settings

# https://www.twilio.com/docs/messaging/api/message-resource#message-status-values
STAGES = {
    "accepted": 0,
    "scheduled": 0,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
    "canceled": 4,
    "read": 5,
}


def is_forward(current: str | None, new: str) -> bool:
    """Whether ``new`` is a later stage than ``current``.

    >>> is_forward(None, "queued"), is_forward("delivered", "sent"), is_forward("sent", "failed")
    (True, False, True)
    """
    if new not in STAGES:
        return False
    return current is None or STAGES[new] > STAGES.get(current, -1)


def apply_status(
    session: Session,
    *,
    message_sid: str,
    status: str,
    error_code: str | None,
    outbox_id: int | None,
    now: datetime,
) -> str:
    """Records one callback; returns what was done (for the log and the tests)."""
    row = session.scalars(select(OutboxMessage).where(OutboxMessage.provider_id == message_sid))
    found = row.first()
    if found is None and outbox_id is not None:
        candidate = session.get(OutboxMessage, outbox_id)
        # The worker may have died between Twilio's answer and storing the sid: the
        # callback is then what tells us the message went out.
        known = (None, message_sid)
        if candidate is not None and candidate.channel == "sms" and candidate.provider_id in known:
            found = candidate
    if found is None:
        return "unknown message"
    if found.provider_id is None:
        found.provider_id = message_sid
    if found.status in ("queued", "sending"):
        found.status, found.sent_at, found.lease_until = "sent", now, None
        found.in_doubt = False
    if not is_forward(found.delivery_status, status):
        return f"outbox #{found.id}: {status} ignored after {found.delivery_status}"
    found.delivery_status = status
    if error_code:
        found.last_error = f"Twilio delivery error {error_code} ({status})"
    return f"outbox #{found.id}: {status}"


def status_callback_url(settings: Settings) -> str:
    """Where Twilio reports delivery: configured, else ``POST /twilio/status`` here."""
    configured = settings.sms.twilio_status_callback_url
    return configured or f"{settings.http.public_url.rstrip('/')}/twilio/status"
