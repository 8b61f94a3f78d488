"""The intake worker: turns stored inbound rows into tickets, apart from the listeners.

The gateways only store and acknowledge; this worker takes every ``pending`` row from
the database, in arrival order and in batches (one commit for many messages under load).
The database is the queue, so nothing waits only in memory: rows stored before a crash
or a restart are simply still pending. A gateway calls ``wake()`` after storing, so new
mail is processed at once instead of at the next poll. It runs in a thread of its own;
``serve`` runs it in its background process (``gateway/background.py``). On PostgreSQL
more ``serve`` processes add more workers (rows are claimed, never processed twice).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from sqlalchemy import func, select

from gateway.bootstrap import Services
from gateway.intake.runner import process_pending
from gateway.serving.parse_ahead import ParseAhead
from gateway.serving.signals import Arrivals
from storage.models import InboundMessage
from storage.uow import unit_of_work

log = logging.getLogger(__name__)

POLL_SECONDS = 5.0  # a safety net: wake() normally starts the work at once
QUIET_SECONDS = 0.02  # arrivals this recent hold a batch back...
MAX_HOLD_SECONDS = 1.0  # ...but never longer than this, so processing always advances


class Flag(Protocol):
    """What the worker needs of an event: ``threading.Event``, or ``shared_signals.Wake``."""

    def set(self) -> None: ...
    def clear(self) -> None: ...
    def is_set(self) -> bool: ...
    def wait(self, timeout: float | None = None) -> bool: ...


class IntakeWorker:
    """``wake_flag`` is set when rows are stored (a ``shared_signals.Wake`` when the
    listeners are another process), ``stop_flag`` to stop after the batch in hand.
    ``arrivals``: the listeners' arrivals; while messages are coming in, storing them
    (what senders wait for) goes first, and each batch of processing waits a moment.
    ``parse_ahead``: parse the coming mail in a helper thread (``serve`` does)."""

    def __init__(
        self,
        services: Services,
        wake_flag: Flag | None = None,
        stop_flag: Flag | None = None,
        arrivals: Arrivals | None = None,
        parse_ahead: bool = False,
    ) -> None:
        self.services = services
        self.arrivals = arrivals
        self.ahead = ParseAhead(services.settings.policy.fault_types) if parse_ahead else None
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
                outcomes = process_pending(
                    self.services,
                    stopping=self.stop_flag.is_set,
                    hold=self._let_arrivals_in,
                    give_way=self._arriving,
                    ahead=self.ahead,
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

    def _let_arrivals_in(self, meanwhile: Callable[[], None]) -> None:
        if self.arrivals is None:
            return
        held = 0.0
        while held < MAX_HOLD_SECONDS and not self.arrivals.quiet_for(QUIET_SECONDS):
            meanwhile()  # parse what has arrived: parsing takes no write lock
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
        if self.ahead is not None:
            self.ahead.close()
