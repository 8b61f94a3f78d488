"""The intake worker: turns stored inbound rows into tickets, apart from the listeners.

The gateways only store and acknowledge; this worker takes every ``pending`` row from
the database, in arrival order and in batches (one commit for many messages under load).
The database is the queue, so nothing waits only in memory: rows stored before a crash
or a restart are simply still pending. A gateway calls ``wake()`` after storing, so new
mail is processed at once instead of at the next poll. It runs in a thread of its own;
``serve`` runs it in its background process (``gateway/serving/background.py``). On PostgreSQL
more ``serve`` processes add more workers (rows are claimed, never processed twice).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from gateway.intake.runner import process_pending
from gateway.intake.service import Intake
from gateway.serving.parse_ahead import ParseAhead
from gateway.serving.signals import Arrivals
from storage.models import InboundMessage
from storage.uow import unit_of_work

log = logging.getLogger(__name__)

POLL_SECONDS = 5.0  # a safety net: wake() normally starts the work at once
QUIET_SECONDS = 0.02  # arrivals this recent hold a batch back...
MAX_HOLD_SECONDS = 1.0  # ...but never longer than this, so processing always advances
MIN_BATCH = 8  # messages a batch takes before it gives way to arrivals


def batch_gives_way(done: int, arriving: bool, writer_waiting: bool) -> bool:
    """Whether the batch in hand, ``done`` messages in, should commit now: messages are
    arriving (the listeners need the processor; not before ``MIN_BATCH``, so that intake
    keeps pace with a steady stream) or, on SQLite, a listener waits to store one.

    >>> batch_gives_way(3, arriving=True, writer_waiting=False)
    False
    >>> batch_gives_way(3, arriving=False, writer_waiting=True)
    True
    """
    return (done >= MIN_BATCH and arriving) or writer_waiting


class Flag(Protocol):
    """What the worker needs of an event: ``threading.Event``, or ``serving.signals.Wake``."""

    def set(self) -> None: ...
    def clear(self) -> None: ...
    def is_set(self) -> bool: ...
    def wait(self, timeout: float | None = None) -> bool: ...


class IntakeWorker:
    """``make_intake`` builds the intake (``gateway.intake.service.build_intake``) when the
    worker's thread starts, and again after a failure until it succeeds: it reads the
    database, which may be away when ``serve`` starts. ``wake_flag`` is set when rows
    are stored (a ``serving.signals.Wake`` when the listeners are another process),
    ``stop_flag`` to stop after the batch in hand.
    ``arrivals``: the listeners' arrivals; while messages are coming in, storing them
    (what senders wait for) goes first, and each batch of processing waits a moment.
    ``parse_ahead``: parse the coming mail in a helper thread (``serve`` does).
    ``writers_waiting``: whether another writer waits for the database (SQLite's one
    lock: ``storage.sqlite_writers``); a batch then commits what it has done at once."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        make_intake: Callable[[], Intake],
        wake_flag: Flag | None = None,
        stop_flag: Flag | None = None,
        arrivals: Arrivals | None = None,
        parse_ahead: bool = False,
        writers_waiting: Callable[[], bool] = lambda: False,
    ) -> None:
        self.sessions = sessions
        self.make_intake = make_intake
        self.intake: Intake | None = None
        self.arrivals = arrivals
        self.writers_waiting = writers_waiting
        self.parse_ahead = parse_ahead
        self.ahead: ParseAhead | None = None
        self.wake_flag: Flag = wake_flag or threading.Event()
        self.stop_flag: Flag = stop_flag or threading.Event()
        self.working = threading.Event()
        self.thread = threading.Thread(target=self._run, name="intake", daemon=True)
        self.thread.start()

    def wake(self, _inbound_id: int | None = None) -> None:
        self.wake_flag.set()

    def busy(self) -> bool:
        """Whether a pass over the pending rows is under way (the dispatcher gives way)."""
        return self.working.is_set()

    def _run(self) -> None:
        while not self.stop_flag.is_set():
            self.wake_flag.clear()
            self.working.set()
            try:
                if self.intake is None:
                    self.intake = self.make_intake()
                    if self.parse_ahead:
                        self.ahead = ParseAhead(self.intake.policy.fault_types)
                outcomes = process_pending(
                    self.intake,
                    stopping=self.stop_flag.is_set,
                    hold=self._let_arrivals_in,
                    give_way=self._give_way,
                    reader=self.ahead,
                )
            except Exception:  # the database may be away; rows stay pending, try again later
                log.exception("intake pass failed; retrying in %.0f s", POLL_SECONDS)
                outcomes = None
            finally:
                self.working.clear()
            if outcomes is None:
                self.stop_flag.wait(POLL_SECONDS)
                continue
            for outcome in outcomes:
                log.info("inbound %d: %s", outcome.inbound_id, outcome.result)
            self.wake_flag.wait(POLL_SECONDS)

    def _arriving(self) -> bool:
        return self.arrivals is not None and not self.arrivals.quiet_for(QUIET_SECONDS)

    def _give_way(self, done: int) -> bool:
        return batch_gives_way(done, self._arriving(), self.writers_waiting())

    def _let_arrivals_in(self, meanwhile: Callable[[], None]) -> None:
        if self.arrivals is None:
            return
        held = 0.0
        while held < MAX_HOLD_SECONDS and not self.arrivals.quiet_for(QUIET_SECONDS):
            meanwhile()  # parse what has arrived: parsing takes no write lock
            self.stop_flag.wait(QUIET_SECONDS)
            held += QUIET_SECONDS

    def pending(self) -> int:
        with unit_of_work(self.sessions) as session:
            count = session.scalar(select(func.count()).where(InboundMessage.state == "pending"))
        return count or 0

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """True once no row is pending (for tests and the benchmark)."""
        for _ in range(int(timeout / 0.05)):
            if self.pending() == 0:
                return True
            self.stop_flag.wait(0.05)
        return False

    def close(self) -> None:
        """Stops after the batch in hand; what is still pending waits for the next start."""
        self.stop_flag.set()
        self.wake_flag.set()
        self.thread.join(timeout=60)
        if self.ahead is not None:
            self.ahead.close()
