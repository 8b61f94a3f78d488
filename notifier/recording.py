"""What sending an outbox row came to, and how the dispatcher stores it.

Holds the values that pass between the parts of ``notifier.dispatcher.Dispatcher`` — a
claimed row (``Claimed``), the outcome of one attempt at it (``SendOutcome``) and what a
pass did (``PassReport``) — and the writes that record outcomes in the database:

- ``record_sent``: the common case, plain ``sent`` rows, as one executemany;
- ``record_one``: any other outcome (retry with backoff or ``dead``, ``failed``, left
  ``queued``), then its follow-ups and alerts, in the caller's transaction;
- the follow-ups an attempt attaches to its outcome, to land with it: flag an invalid
  number (``flag_phone``), record an opt-out the carrier reported (``opt_out``), queue
  the email twin of an SMS whose number opted out (``email_twin``).

Every write to a row is fenced on the attempt that claimed it (``under_attempt``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, update
from sqlalchemy.orm import Session

from notifier import alerts
from storage.inserts import insert_or_get
from storage.models import OutboxMessage, PhoneFlag, SmsConsent
from storage.outbox import enqueue, outbound_message_id
from workflow.settings import Settings

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class Claimed:
    """A row as claimed: what sending it needs, detached from any session.

    Its fields are the columns ``Dispatcher.claim`` returns (``_CLAIMED_COLUMNS`` in
    ``notifier.dispatcher``), by name.
    """

    id: int
    idempotency_key: str
    channel: str
    to_address: str
    template: str
    language: str
    context: dict[str, Any]
    ticket_id: int | None
    message_id: str | None
    reply_to_message_id: str | None
    references: list[Any]
    auto_submitted: bool
    attempts: int  # including this attempt
    in_doubt: bool
    created_at: datetime


# A change that must land with the outcome, in the same transaction.
FollowUp = Callable[[Session, datetime], None]


@dataclass
class SendOutcome:
    """What one attempt at a claimed row came to, until it is recorded."""

    row: Claimed
    kind: str  # sent, retry, failed, deferred, paused
    provider_id: str | None = None
    error: str | None = None
    subject: str | None = None
    body: str | None = None
    in_doubt: bool = False
    max_attempts: int | None = None
    code: int | None = None
    reconciled: bool = False
    alert: bool = False  # a configuration error: tell operations
    follow_ups: list[FollowUp] = field(default_factory=list)


@dataclass
class PassReport:
    """What one pass did, by outcome."""

    sent: int = 0
    reconciled: int = 0
    retried: int = 0
    failed: int = 0
    dead: int = 0
    deferred: int = 0
    alerts: int = 0

    def summary(self) -> str:
        parts = [f"{value} {name}" for name, value in vars(self).items() if value]
        return ", ".join(parts) or "nothing due"


def under_attempt(row_id: Any, attempts: Any) -> ColumnElement[bool]:
    """The row is still ``sending`` under the attempt this dispatcher claimed (values or
    bind parameters): writes fenced on it lose to a dispatcher that took the row over."""
    return and_(
        OutboxMessage.id == row_id,
        OutboxMessage.status == "sending",
        OutboxMessage.attempts == attempts,
    )


# --- recording -------------------------------------------------------------------------
def record_sent(
    session: Session, outcomes: list[SendOutcome], now: datetime, report: PassReport
) -> None:
    """The common case as one executemany: the per-row ORM update was the cost."""
    table = OutboxMessage.__table__
    statement = (
        update(table)  # type: ignore[arg-type]
        .where(under_attempt(bindparam("b_id"), bindparam("b_attempts")))
        .values(
            status="sent",
            sent_at=now,
            lease_until=None,
            last_error=None,
            in_doubt=False,
            provider_id=bindparam("b_provider_id"),
            subject=bindparam("b_subject"),
            body=bindparam("b_body"),
        )  # fmt: skip
    )
    session.connection().execute(
        statement,
        [
            {
                "b_id": o.row.id,
                "b_attempts": o.row.attempts,
                "b_provider_id": o.provider_id,
                "b_subject": (o.subject or "")[:500] or None,
                "b_body": o.body,
            }
            for o in outcomes
        ],
    )
    report.sent += len(outcomes)
    report.reconciled += sum(o.reconciled for o in outcomes)


def record_one(
    session: Session,
    outcome: SendOutcome,
    now: datetime,
    report: PassReport,
    settings: Settings,
    backoff: Callable[[int], timedelta],
) -> None:
    """Stores one outcome, its follow-ups and any alert; ``backoff(attempts)`` is the
    wait before a retry."""
    row = outcome.row
    error = (outcome.error or "")[:MAX_ERROR_CHARS] or None
    values: dict[str, Any] = {"lease_until": None}
    if outcome.subject is not None:
        values["subject"] = outcome.subject[:500]
    if outcome.body is not None:
        values["body"] = outcome.body
    kind = outcome.kind
    if kind == "sent":
        values.update(
            status="sent", sent_at=now, provider_id=outcome.provider_id, last_error=None,
            in_doubt=False,
        )  # fmt: skip
        report.sent += 1
        report.reconciled += outcome.reconciled
    elif kind == "retry":
        limit = settings.notifier.max_attempts
        if outcome.max_attempts is not None:
            limit = min(limit, outcome.max_attempts)
        values.update(last_error=error, in_doubt=outcome.in_doubt)
        if row.attempts >= limit:
            values["status"] = "dead"
            report.dead += 1
        else:
            values.update(status="queued", next_attempt_at=now + backoff(row.attempts))
            report.retried += 1
    elif kind == "failed":
        values.update(status="failed", last_error=error, in_doubt=False)
        report.failed += 1
    elif kind == "deferred":
        # A template error is ours to fix; the row waits for the fix, not for a
        # retry budget to run out.
        log.error("outbox #%d stays queued: %s", row.id, error)
        values.update(
            status="queued", attempts=row.attempts - 1, last_error=error,
            next_attempt_at=now + timedelta(seconds=settings.notifier.backoff_max_seconds),
        )  # fmt: skip
        report.deferred += 1
    elif kind == "paused":
        values.update(status="queued", attempts=row.attempts - 1, next_attempt_at=now)
        if outcome.alert:
            values["last_error"] = error
        report.deferred += 1
    else:  # pragma: no cover - the kinds are the ones above
        raise ValueError(kind)
    # Fenced on the attempt: if our lease ran out and another dispatcher took the row
    # over, its outcome is the one that counts.
    result = session.execute(
        update(OutboxMessage)
        .where(under_attempt(row.id, row.attempts))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 1) == 0:
        log.warning("outbox #%d changed under us; outcome %s not recorded", row.id, kind)
        return
    for follow_up in outcome.follow_ups:
        follow_up(session, now)
    alert_id = None
    if values.get("status") == "dead":
        alert_id = alerts.alert_dead(session, settings, row, error or "", now)
    elif outcome.alert:
        alert_id = alerts.alert_configuration(
            session, settings, row, error or "", outcome.code, now
        )
    report.alerts += alert_id is not None


# --- follow-ups --------------------------------------------------------------------------
def flag_phone(phone: str, code: int, reason: str) -> FollowUp:
    """Marks ``phone`` undeliverable: later SMS to it fail without reaching the provider."""

    def write(session: Session, now: datetime) -> None:
        insert_or_get(
            session,
            PhoneFlag,
            "phone",
            {"phone": phone, "code": code, "reason": reason[:300], "flagged_at": now},
        )

    return write


def opt_out(phone: str) -> FollowUp:
    """Records the opt-out the carrier reported (error 21610) as ``phone``'s consent."""

    def write(session: Session, now: datetime) -> None:
        consent = session.get(SmsConsent, phone)
        if consent is None:
            session.add(SmsConsent(phone=phone, opted_out=True, changed_at=now, keyword="21610"))
        elif not consent.opted_out:
            consent.opted_out, consent.changed_at, consent.keyword = True, now, "21610"
        session.flush()

    return write


def email_twin(row: Claimed, address: str, domain: str) -> FollowUp:
    """Queues the SMS ``row`` again as an email to ``address``, under its own key."""
    key = f"{row.idempotency_key}:email"

    def write(session: Session, now: datetime) -> None:
        enqueue(
            session.connection(),
            key=key,
            channel="email",
            to=address,
            template=row.template,
            language=row.language,
            context=row.context,
            now=now,
            ticket_id=row.ticket_id,
            message_id=outbound_message_id(key, domain),
            auto_submitted=row.auto_submitted,
        )

    return write
