"""Alerts to the operations address, themselves written through the outbox.

Each alert has an idempotency key, so a dispatcher that records the same dead row twice
(or two dispatchers) alert once. An alert that itself dies is logged and never alerts
again: otherwise a broken mail relay would feed on its own alerts.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from storage.outbox import enqueue, outbound_message_id
from workflow.settings import Settings

log = logging.getLogger(__name__)

ALERT_TEMPLATE = "ops_alert"


def _alert(
    session: Session, settings: Settings, key: str, context: dict[str, Any], now: datetime
) -> int | None:
    address = settings.notifier.operations_email
    if not address:
        log.error("no notifier.operations_email to alert: %s", context)
        return None
    row_id, created = enqueue(
        session.connection(),
        key=key,
        channel="email",
        to=address,
        template=ALERT_TEMPLATE,
        language=settings.language,
        context=context,
        now=now,
        message_id=outbound_message_id(key, settings.email.from_domain),
    )
    return row_id if created else None


def _row_facts(row: Any) -> dict[str, Any]:
    """What an alert says of the outbox row it is about."""
    return {
        "outbox_id": row.id,
        "channel": row.channel,
        "to": row.to_address,
        "template": row.template,
        "idempotency_key": row.idempotency_key,
        "attempts": row.attempts,
    }


def alert_dead(
    session: Session, settings: Settings, row: Any, last_error: str, now: datetime
) -> int | None:
    """Queues the alert for a row that is now ``dead``; returns the alert's id if new."""
    if row.template == ALERT_TEMPLATE:
        log.error("alert #%d died (%s); not alerting about an alert", row.id, last_error)
        return None
    log.error("outbox #%d is dead after %d attempts: %s", row.id, row.attempts, last_error)
    return _alert(
        session,
        settings,
        f"alert:dead:{row.id}",
        {"kind": "dead", **_row_facts(row), "last_error": last_error, "status": "dead"},
        now,
    )


def alert_configuration(
    session: Session, settings: Settings, row: Any, error: str, code: int | None, now: datetime
) -> int | None:
    """Queues one alert per channel, error code and day for a provider configuration error."""
    log.error("%s channel paused by a configuration error: %s", row.channel, error)
    return _alert(
        session,
        settings,
        f"alert:config:{row.channel}:{code or 'unknown'}:{now.date().isoformat()}",
        {"kind": "configuration", **_row_facts(row), "last_error": error, "status": "queued"},
        now,
    )
