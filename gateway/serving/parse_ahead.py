"""Reading the coming mail in a thread while the intake worker waits or writes.

While mail is arriving, the intake worker holds its writes back so that storing what
senders wait for goes first; its process would sit idle on a core of its own. Parsing
and finding the record fields need no write lock, so ``ParseAhead`` does both for the
stored but unprocessed rows in a thread meanwhile, and later, during a backlog, in the
gaps the worker leaves while it is in SQLite's C code or an fsync. The worker collects
the results. A row whose reading has not begun when the worker reaches it is parsed by
the worker itself, so nothing ever waits for the helper.

What it holds is bounded in bytes (``budget_bytes``), not by a number of rows: one
message may be 25 MB. A row counts its raw size until it is read, then what its
reading holds (texts and attachments; about three quarters of the raw size for the
benchmark's mail).
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor

from sqlalchemy import Connection

from gateway.intake.reading import FaultTypes, Reading, record_fields
from parsers.mail import ParsedEmail, parse_email
from storage.inbound import pending_email_sizes, raw_of
from storage.lookups import known_models

log = logging.getLogger(__name__)

# What serve's memory target (200 MB for all its processes, issue 3) leaves over; it
# covers about 1,500 of the intake benchmark's mails.
BUDGET_BYTES = 12 * 1024 * 1024

READ_AHEAD_ROWS = 256  # looked at per call; the byte budget bounds the rest


class ParseAhead:
    """A ``gateway.intake.reading.Reader`` that reads the pending mail in a helper thread."""

    def __init__(self, fault_types: FaultTypes, budget_bytes: int = BUDGET_BYTES) -> None:
        self.fault_types = fault_types
        self.budget_bytes = budget_bytes
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parse-ahead")
        self.futures: dict[int, Future[Reading]] = {}
        self.sizes: dict[int, int] = {}  # what each row taken holds, in bytes
        self.lock = threading.Lock()  # sizes change in both threads

    @property
    def held_bytes(self) -> int:
        with self.lock:
            return sum(self.sizes.values())

    def room(self) -> int:
        """Bytes it can still take on."""
        return self.budget_bytes - self.held_bytes

    def last_taken(self) -> int:
        """The highest inbound id it has taken, 0 if none."""
        return max(self.futures, default=0)

    def look_ahead(self, db: Connection, after: int) -> None:
        """Starts reading the pending email rows past ``after`` it does not have yet, in
        order, as far as its byte budget goes: each row's bytes are read for it once."""
        room = self.room()
        if room <= 0:
            return  # holding all it may: no query
        taken = []
        for inbound_id, size in pending_email_sizes(
            db, max(after, self.last_taken()), READ_AHEAD_ROWS
        ):
            if size > self.budget_bytes:
                continue  # too big to hold ahead: the intake parses it when it gets there
            if size > room:
                break
            taken.append(inbound_id)
            room -= size
        if taken:
            self.submit(raw_of(db, taken), known_models(db))

    def submit(self, rows: Iterable[tuple[int, bytes]], models: tuple[str, ...]) -> None:
        """Starts reading ``(inbound id, raw bytes)`` rows not already started."""
        for inbound_id, raw in rows:
            if inbound_id not in self.futures:
                with self.lock:
                    self.sizes[inbound_id] = len(raw)
                self.futures[inbound_id] = self.pool.submit(self._read, inbound_id, raw, models)

    def reading(self, inbound_id: int, raw: bytes) -> Reading:
        """The row's reading: the helper's if it has begun it, else a parse made here."""
        future = self._drop(inbound_id)
        if future is not None and (future.done() or not future.cancel()):
            return future.result()
        return Reading(parse_email(raw))

    def forget_through(self, inbound_id: int) -> None:
        """Drops readings of rows up to ``inbound_id`` (processed without them)."""
        for stale in [i for i in self.futures if i <= inbound_id]:
            future = self._drop(stale)
            assert future is not None
            future.cancel()

    def _read(self, inbound_id: int, raw: bytes, models: tuple[str, ...]) -> Reading:
        parsed = parse_email(raw)  # never raises
        try:
            fields = record_fields(parsed, models, self.fault_types)
        except Exception:  # the worker finds them again, and quarantines what fails
            log.exception("reading ahead: record fields not found")
            reading = Reading(parsed)
        else:
            reading = Reading(parsed, fields, models)
        size = _held_size(parsed)
        with self.lock:
            if inbound_id in self.sizes:  # not handed over meanwhile
                self.sizes[inbound_id] = size
        return reading

    def _drop(self, inbound_id: int) -> Future[Reading] | None:
        with self.lock:
            self.sizes.pop(inbound_id, None)
        return self.futures.pop(inbound_id, None)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.futures.clear()
        self.sizes.clear()


def _held_size(parsed: ParsedEmail) -> int:
    """The bytes a reading keeps alive: its texts and attachments."""
    texts = (parsed.text, parsed.visible_text, parsed.html or "")
    return sum(map(sys.getsizeof, texts)) + sum(len(a.content) for a in parsed.attachments)
