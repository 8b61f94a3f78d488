"""Parsing the coming batch of mail in a thread while the intake worker writes.

The intake worker's thread spends part of each batch outside Python: in SQLite's C
code and in the fsync of every commit, where it lets other threads run. ``ParseAhead``
parses the rows of the coming batch in a thread of its own, mostly in those gaps, and
the worker collects the results. A row whose parse has not begun when the worker
reaches it is parsed by the worker itself, so nothing ever waits for the helper.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor

from parsers.mail import ParsedEmail, parse_email

log = logging.getLogger(__name__)


class ParseAhead:
    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parse-ahead")
        self.futures: dict[int, Future[ParsedEmail]] = {}

    def submit(self, rows: Iterable[tuple[int, bytes]]) -> None:
        """Starts parsing ``(inbound id, raw bytes)`` rows not already started."""
        for inbound_id, raw in rows:
            if inbound_id not in self.futures:
                self.futures[inbound_id] = self.pool.submit(parse_email, raw)

    def parsed(self, inbound_id: int, raw: bytes) -> ParsedEmail:
        """The row's parse: the helper's if it has begun it, else made here and now."""
        future = self.futures.pop(inbound_id, None)
        if future is not None and (future.done() or not future.cancel()):
            return future.result()  # parse_email never raises
        return parse_email(raw)

    def forget_through(self, inbound_id: int) -> None:
        """Drops parses of rows up to ``inbound_id`` (processed without them)."""
        for stale in [i for i in self.futures if i <= inbound_id]:
            self.futures.pop(stale).cancel()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.futures.clear()
