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
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine

from gateway.channels.store import Stored, insert_rows

log = logging.getLogger(__name__)

MAX_BATCH = 64
Waiting = tuple[dict[str, Any], "asyncio.Future[Stored]"]  # a row and its sender's future


class InboundWriter:
    """``on_stored`` is told of each newly stored row (serve wakes the intake worker),
    ``on_submit`` of each row queued (the intake worker holds back while rows arrive)."""

    def __init__(
        self,
        engine: Engine,
        on_stored: Callable[[int], None] = lambda _inbound_id: None,
        on_submit: Callable[[], None] = lambda: None,
    ) -> None:
        self.engine = engine
        self.connection: Connection | None = None  # the writer thread's own
        self.on_stored = on_stored
        self.on_submit = on_submit
        self.pending: queue.SimpleQueue[Waiting | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="inbound-writer", daemon=True)
        self.thread.start()

    async def store(self, row: dict[str, Any]) -> Stored:
        """Queues ``row`` (from ``email_row``/``sms_row``) and waits, without blocking the
        event loop, until it is committed."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Stored] = loop.create_future()
        self.on_submit()
        self.pending.put((row, done))
        return await done

    def _run(self) -> None:
        while True:
            first = self.pending.get()
            if first is None:
                self._drop_connection()
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

    def _commit(self, batch: list[Waiting]) -> None:
        results: list[Stored] | Exception
        try:
            # One connection kept for the writer's life: no pool round trip per batch.
            if self.connection is None:
                self.connection = self.engine.connect()
            with self.connection.begin():
                results = insert_rows(self.connection, [row for row, _ in batch])
        except Exception as exc:
            log.exception("could not store %d inbound message(s)", len(batch))
            results = exc
            self._drop_connection()  # it may be broken; the next batch opens another
        # One wake-up of the event loop answers the whole batch, not one per message.
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[int, asyncio.Future[Stored]]]] = {}
        for index, (_, done) in enumerate(batch):
            by_loop.setdefault(done.get_loop(), []).append((index, done))
        for loop, waiters in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, waiters, results)
            except RuntimeError:  # that loop is closed: its senders are gone
                log.warning("%d sender(s) left before their message was stored", len(waiters))
        if isinstance(results, list) and any(stored.created for stored in results):
            try:
                self.on_stored(results[-1].inbound_id)
            except Exception:  # the rows are committed; the worker's poll finds them
                log.exception("could not wake the intake worker")

    def _drop_connection(self) -> None:
        if self.connection is not None:
            try:
                self.connection.close()
            except Exception:
                log.exception("could not close the writer's database connection")
            self.connection = None

    def close(self) -> None:
        """Commits what is queued, then stops."""
        self.pending.put(None)
        self.thread.join(timeout=30)


def _resolve(
    waiters: list[tuple[int, asyncio.Future[Stored]]], results: list[Stored] | Exception
) -> None:
    for index, done in waiters:
        if done.cancelled():  # the session went away meanwhile
            continue
        if isinstance(results, Exception):
            done.set_exception(results)
        else:
            done.set_result(results[index])
