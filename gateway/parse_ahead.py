"""Parsing the coming mail in a thread while the intake worker waits or writes.

While mail is arriving, the intake worker holds its writes back so that storing what
senders wait for goes first; its process would sit idle on a core of its own. Parsing
needs no write lock, so ``ParseAhead`` parses the stored but unprocessed rows in a
thread meanwhile, and later, during a backlog, in the gaps the worker leaves while it
is in SQLite's C code or an fsync. The worker collects the results. A row whose parse
has not begun when the worker reaches it is parsed by the worker itself, so nothing
ever waits for the helper.

What it holds is bounded by the size of the raw mail it has taken and not handed over
(``budget_bytes``), not by a number of rows: one message may be 25 MB.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor

from parsers.mail import ParsedEmail, parse_email

log = logging.getLogger(__name__)

BUDGET_BYTES = 12 * 1024 * 1024  # of raw mail: its parses take about as much again


class ParseAhead:
    def __init__(self, budget_bytes: int = BUDGET_BYTES) -> None:
        self.budget_bytes = budget_bytes
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parse-ahead")
        self.futures: dict[int, tuple[Future[ParsedEmail], int]] = {}  # id → parse, size
        self.held_bytes = 0

    def room(self) -> int:
        """Bytes of raw mail it can still take."""
        return self.budget_bytes - self.held_bytes

    def last_taken(self) -> int:
        """The highest inbound id it has taken, 0 if none."""
        return max(self.futures, default=0)

    def submit(self, rows: Iterable[tuple[int, bytes]]) -> None:
        """Starts parsing ``(inbound id, raw bytes)`` rows not already started."""
        for inbound_id, raw in rows:
            if inbound_id not in self.futures:
                self.futures[inbound_id] = (self.pool.submit(parse_email, raw), len(raw))
                self.held_bytes += len(raw)

    def parsed(self, inbound_id: int, raw: bytes) -> ParsedEmail:
        """The row's parse: the helper's if it has begun it, else made here and now."""
        future = self._drop(inbound_id)
        if future is not None and (future.done() or not future.cancel()):
            return future.result()  # parse_email never raises
        return parse_email(raw)

    def forget_through(self, inbound_id: int) -> None:
        """Drops parses of rows up to ``inbound_id`` (processed without them)."""
        for stale in [i for i in self.futures if i <= inbound_id]:
            future = self._drop(stale)
            assert future is not None
            future.cancel()

    def _drop(self, inbound_id: int) -> Future[ParsedEmail] | None:
        future, size = self.futures.pop(inbound_id, (None, 0))
        self.held_bytes -= size
        return future

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.futures.clear()
        self.held_bytes = 0
