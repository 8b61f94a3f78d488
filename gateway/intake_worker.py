"""The intake worker: turns stored inbound rows into tickets, apart from the listeners.

The gateways only store and acknowledge; this worker takes every ``pending`` row from
the database, in arrival order and in batches (one commit for many messages under load).
The database is the queue, so nothing waits only in memory: rows stored before a crash
or a restart are simply still pending. A gateway calls ``wake()`` after storing, so new
mail is processed at once instead of at the next poll. It runs in a thread of its own,
off the event loop; SQLite has one writer anyway, and on PostgreSQL more ``serve``
processes add more workers (rows are claimed, never processed twice).
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import func, select

from gateway.bootstrap import Services
from gateway.inbound_writer import InboundWriter
from gateway.intake import process_pending
from storage.models import InboundMessage
from storage.uow import unit_of_work

log = logging.getLogger(__name__)

POLL_SECONDS = 5.0  # a safety net: wake() normally starts the work at once
QUIET_SECONDS = 0.02  # arrivals this recent hold a batch back...
MAX_HOLD_SECONDS = 1.0  # ...but never longer than this, so processing always advances


class IntakeWorker:
    """``yield_to``: the listeners' writer; while messages are arriving, storing them
    (what senders wait for) goes first and each batch of processing waits a moment."""

    def __init__(self, services: Services, yield_to: InboundWriter | None = None) -> None:
        self.services = services
        self.yield_to = yield_to
        self.wake_flag = threading.Event()
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._run, name="intake", daemon=True)
        self.thread.start()

    def wake(self, _inbound_id: int | None = None) -> None:
        self.wake_flag.set()

    def _run(self) -> None:
        while not self.stop_flag.is_set():
            self.wake_flag.clear()
            try:
                passes = process_pending(
                    self.services, stop=self.stop_flag, before_batch=self._let_arrivals_in
                )
                for outcome in passes:
                    log.info("inbound %d: %s", outcome.inbound_id, outcome.result)
            except Exception:  # the database may be away; rows stay pending, try again later
                log.exception("intake pass failed; retrying in %.0f s", POLL_SECONDS)
                self.stop_flag.wait(POLL_SECONDS)
                continue
            self.wake_flag.wait(POLL_SECONDS)

    def _let_arrivals_in(self) -> None:
        if self.yield_to is None:
            return
        held = 0.0
        while held < MAX_HOLD_SECONDS and not self.yield_to.quiet_for(QUIET_SECONDS):
            self.stop_flag.wait(QUIET_SECONDS)
            held += QUIET_SECONDS

    def pending(self) -> int:
        with unit_of_work(self.services.sessions) as session:
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
