"""The intake's batch loop: stored inbound rows become tickets, replies or recorded no-ops.

Runs after the raw bytes are committed. Like Mailman's ``Runner``, the loop owns the
transaction, the commit and the quarantine; each message is handled by
``EmailIntake`` or ``SmsIntake`` (load → ask ``workflow`` → write) inside it. A
message's inbound row state, ticket, message, deadlines and outbox rows land together,
in one transaction with the rest of its batch (``process_pending``) or on their own
(``process_inbound``). A message that fails is quarantined (state ``failed`` with the
error) and waits for ``supportline inbound replay``; it is never dropped and never
retried in a loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from functools import cache

from sqlalchemy.orm import Session

from gateway.intake.email import EmailIntake, KnownModels
from gateway.intake.reading import Reader, ReadHere
from gateway.intake.service import Intake
from gateway.intake.sms import SmsIntake
from storage.inbound import claim_inbound, mark_failed, mark_processed, pending_ids
from storage.lookups import known_models
from storage.uow import unit_of_work

log = logging.getLogger(__name__)

# Whether a batch should end after the message in hand; told how many it has done.
GiveWay = Callable[[int], bool]


class NotProcessable(Exception):
    """The inbound row is missing or already processed."""


@dataclass(frozen=True)
class IntakeResult:
    """What became of one stored row, as ``supportline inbound`` reports it."""

    inbound_id: int
    result: str
    ticket_id: int | None = None


def process_inbound(intake: Intake, inbound_id: int) -> IntakeResult:
    """Processes one stored row; quarantines it on failure. Safe to call twice."""
    try:
        with unit_of_work(intake.sessions) as session:
            outcome = _process_one(intake, session, inbound_id, ReadHere())
            session.commit()
            return outcome
    except NotProcessable:
        raise
    except Exception as exc:
        log.exception("inbound %d quarantined", inbound_id)
        with unit_of_work(intake.sessions) as session:
            mark_failed(session.connection(), inbound_id, exc, intake.clock())
            session.commit()
        return IntakeResult(inbound_id, f"failed: {type(exc).__name__}: {exc}")


def process_batch(
    intake: Intake,
    inbound_ids: Sequence[int],
    reader: Reader | None = None,
    give_way: GiveWay = lambda _done: False,
) -> tuple[list[IntakeResult], int]:
    """Processes rows in one transaction, in order: one commit (one fsync on SQLite) for
    the batch instead of one per message.

    Optimistic: should one message fail, the whole batch rolls back and is processed
    again one message per transaction, where the failing one is quarantined alone.
    (A savepoint per message would do the same in one pass, at two statements and a
    flush more for every message; failures are rare.) Rows another worker already took
    are skipped. The batch ends early, after the message in hand, when ``give_way``
    says so. Returns the outcomes and the last id it went through.
    """
    reader = reader or ReadHere()
    try:
        with unit_of_work(intake.sessions) as session:
            # Read once for the batch: intake never files machines, and on PostgreSQL
            # a batch may as well see the customer file as it stood when it began.
            models = cache(lambda: known_models(session.connection()))
            outcomes, done_through = [], 0
            for inbound_id in inbound_ids:
                with suppress(NotProcessable):  # nothing was written for it
                    outcomes.append(_process_one(intake, session, inbound_id, reader, models))
                done_through = inbound_id
                if give_way(len(outcomes)):
                    break
            session.commit()
            return outcomes, done_through
    except Exception:  # a message failed, or the batch did (say the connection dropped)
        log.warning(
            "intake batch of %d messages rolled back; processing them one by one",
            len(inbound_ids),
            exc_info=True,
        )
        outcomes = []
        for inbound_id in inbound_ids:
            try:
                outcomes.append(process_inbound(intake, inbound_id))
            except NotProcessable:
                continue
        return outcomes, inbound_ids[-1]


def process_pending(
    intake: Intake,
    batch_size: int = 32,
    stopping: Callable[[], bool] = lambda: False,
    hold: Callable[[Callable[[], None]], None] = lambda _meanwhile: None,
    reader: Reader | None = None,
    give_way: GiveWay = lambda _done: False,
) -> list[IntakeResult]:
    """Processes every row stored but not yet processed, batch by batch, until none is
    left or ``stopping()`` says so. ``hold(meanwhile)`` may hold a batch back, calling
    ``meanwhile()`` while it waits; ``give_way`` may end one early; ``reader`` may
    read the coming mail ahead while this loop waits or writes."""
    reader = reader or ReadHere()
    outcomes: list[IntakeResult] = []
    after = 0

    def look_ahead() -> None:
        with unit_of_work(intake.sessions) as session:
            reader.look_ahead(session.connection(), after)

    while not stopping():
        hold(look_ahead)
        with unit_of_work(intake.sessions) as session:
            db = session.connection()
            ids = pending_ids(db, after, batch_size)
            if ids:  # in the same transaction: on SQLite each one takes the write lock
                reader.look_ahead(db, after)
        if not ids:
            return outcomes
        done, after = process_batch(intake, ids, reader, give_way)
        reader.forget_through(after)
        outcomes.extend(done)
    return outcomes


def _process_one(
    intake: Intake,
    session: Session,
    inbound_id: int,
    reader: Reader,
    models: KnownModels | None = None,
) -> IntakeResult:
    db = session.connection()
    row = claim_inbound(db, inbound_id)
    if isinstance(row, str):
        raise NotProcessable(f"inbound {inbound_id} is {row}; nothing to process")
    now = intake.clock()
    if row.channel == "sms":
        ticket_id, result = SmsIntake(intake, session, row, now).run()
    else:
        reading = reader.reading(row.id, row.raw)
        email = EmailIntake(intake, db, row, reading, now, models or (lambda: known_models(db)))
        ticket_id, result = email.run()
    mark_processed(db, inbound_id, result, now)
    return IntakeResult(inbound_id, result, ticket_id)
