"""Group commit for the listeners: one transaction stores what arrived meanwhile.

Every SMTP session and webhook request must see its raw bytes committed before it is
answered; with SQLite's ``synchronous=FULL`` each commit is an fsync. Like an MTA's queue
runner, one writer thread commits everything that arrived while the previous commit ran,
so under load one fsync answers many senders, and a quiet system still commits each
message at once. A failed commit fails every message of it (they answer 451 / 503 and
their senders retry); nothing is acknowledged that was not stored.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from gateway.inbound import Stored, store_rows

log = logging.getLogger(__name__)

MAX_BATCH = 64


class InboundWriter:
    """``on_stored`` is told of each newly stored row (serve wakes the intake worker)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        on_stored: Callable[[int], None] = lambda _inbound_id: None,
    ) -> None:
        self.sessions = sessions
        self.on_stored = on_stored
        self.pending: queue.Queue[tuple[dict[str, Any], Future[Stored]] | None] = queue.Queue()
        self.last_arrival = 0.0  # monotonic time of the latest submit
        self.thread = threading.Thread(target=self._run, name="inbound-writer", daemon=True)
        self.thread.start()

    def submit(self, row: dict[str, Any]) -> Future[Stored]:
        """Queues ``row`` (from ``email_row``/``sms_row``); the future resolves once committed."""
        done: Future[Stored] = Future()
        self.last_arrival = time.monotonic()
        self.pending.put((row, done))
        return done

    async def store(self, row: dict[str, Any]) -> Stored:
        """``submit`` for the event loop: waits without blocking it."""
        return await asyncio.wrap_future(self.submit(row))

    def quiet_for(self, seconds: float) -> bool:
        """Whether nothing arrived for ``seconds`` (background work yields to arrivals)."""
        return time.monotonic() - self.last_arrival >= seconds and self.pending.empty()

    def _run(self) -> None:
        while True:
            first = self.pending.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    item = self.pending.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self.pending.put(None)
                    break
                batch.append(item)
            self._commit(batch)

    def _commit(self, batch: list[tuple[dict[str, Any], Future[Stored]]]) -> None:
        try:
            results = store_rows(self.sessions, [row for row, _ in batch])
        except Exception as exc:
            log.exception("could not store %d inbound message(s)", len(batch))
            for _, done in batch:
                done.set_exception(exc)
            return
        for (_, done), stored in zip(batch, results, strict=True):
            done.set_result(stored)
        if any(stored.created for stored in results):
            try:
                self.on_stored(results[-1].inbound_id)
            except Exception:  # the rows are committed; the worker's poll finds them
                log.exception("could not wake the intake worker")

    def close(self) -> None:
        """Commits what is queued, then stops."""
        self.pending.put(None)
        self.thread.join(timeout=30)
