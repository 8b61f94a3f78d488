"""The dispatcher's background loop: ``DispatcherThread`` runs passes of a
``notifier.dispatcher.Dispatcher`` in a thread of the serving process, woken by this
process's own outbox writes and giving way to the intake worker while it is busy.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, event

from notifier.dispatcher import Dispatcher

log = logging.getLogger(__name__)


class DispatcherThread:
    """Runs passes in a thread until stopped: every ``poll_seconds``, or at once when
    this process commits a new outbox row (a cheap engine event; other processes'
    rows wait for the next poll).

    ``intake_busy()``: whether the intake worker of this process is at work. Intake goes
    first, since a message is safe only once it is a ticket, and the two share one
    interpreter and one SQLite writer: while intake is busy a pass sends one batch, then
    waits ``YIELD_SECONDS``. So a burst of mail is turned into tickets at full speed, its
    acknowledgements keep going out, slowly, and catch up at full speed after it.
    """

    YIELD_SECONDS = 1.0

    def __init__(
        self,
        dispatcher: Dispatcher,
        engine: Engine,
        poll_seconds: float,
        intake_busy: Callable[[], bool] = lambda: False,
    ) -> None:
        self.dispatcher = dispatcher
        self.engine = engine
        self.poll_seconds = poll_seconds
        self.intake_busy = intake_busy
        self.stop_event = threading.Event()
        self.wake = threading.Event()
        self.thread = threading.Thread(target=self._run, name="dispatcher", daemon=True)
        self.batches_this_pass = 0

    def _on_execute(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("INSERT INTO outbox"):
            conn.info["outbox_written"] = True

    def _on_commit(self, conn: Any) -> None:
        if conn.info.pop("outbox_written", False):
            self.wake.set()

    def _on_rollback(self, conn: Any) -> None:
        conn.info.pop("outbox_written", None)

    def start(self) -> None:
        event.listen(self.engine, "after_cursor_execute", self._on_execute)
        event.listen(self.engine, "commit", self._on_commit)
        event.listen(self.engine, "rollback", self._on_rollback)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop_event.is_set():
            self.wake.clear()
            self.batches_this_pass = 0
            try:
                report = self.dispatcher.run_pass(self._pass_ends)
                if report.summary() != "nothing due":
                    log.info("outbox: %s", report.summary())
            except Exception:  # the database away for a moment must not end the thread
                log.exception("outbox pass failed; trying again")
            if self.intake_busy() and not self.stop_event.is_set():
                self.stop_event.wait(self.YIELD_SECONDS)
            else:
                self.wake.wait(self.poll_seconds)

    def _pass_ends(self) -> bool:
        """Before each batch: stopping, or intake busy and this pass had its batch."""
        self.batches_this_pass += 1
        if self.stop_event.is_set():
            return True
        return self.batches_this_pass > 1 and self.intake_busy()

    def stop(self, timeout: float = 30.0) -> None:
        self.stop_event.set()
        self.wake.set()
        if self.thread.ident is not None:  # started
            self.thread.join(timeout)
        for name, handler in (
            ("after_cursor_execute", self._on_execute),
            ("commit", self._on_commit),
            ("rollback", self._on_rollback),
        ):
            if event.contains(self.engine, name, handler):
                event.remove(self.engine, name, handler)
        self.dispatcher.close()
