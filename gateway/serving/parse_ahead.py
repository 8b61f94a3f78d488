"""Reading the coming mail in a thread while the intake worker waits or writes.

While mail is arriving, the intake worker holds its writes back so that storing what
senders wait for goes first; its process would sit idle on a core of its own. Parsing
and finding the intake fields need no write lock, so ``ParseAhead`` does both for the
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
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from parsers.intake import IntakeFields, extract_intake
from parsers.mail import ParsedEmail, parse_email

log = logging.getLogger(__name__)

# What serve's memory target (200 MB for all its processes, issue 3) leaves over; it
# covers about 1,500 of the intake benchmark's mails.
BUDGET_BYTES = 12 * 1024 * 1024

FaultTypes = Mapping[str, Sequence[str]]


@dataclass(frozen=True)
class Reading:
    """A stored email as the intake reads it. Read ahead, it also holds the intake
    fields, found against the customer file's machine models of that moment."""

    parsed: ParsedEmail
    fields: IntakeFields | None = None
    known_models: tuple[str, ...] = ()

    def fields_for(self, known_models: tuple[str, ...], fault_types: FaultTypes) -> IntakeFields:
        """The intake fields against ``known_models``: those read ahead if the customer
        file's models are still what they were, else found now."""
        if self.fields is not None and known_models == self.known_models:
            return self.fields
        return intake_fields(self.parsed, known_models, fault_types)


def intake_fields(
    parsed: ParsedEmail, known_models: Sequence[str], fault_types: FaultTypes
) -> IntakeFields:
    return extract_intake(
        parsed.subject,
        parsed.visible_text,
        from_name=parsed.from_name,
        known_models=known_models,
        fault_types=fault_types,
    )


class ParseAhead:
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

    def submit(self, rows: Iterable[tuple[int, bytes]], known_models: tuple[str, ...]) -> None:
        """Starts reading ``(inbound id, raw bytes)`` rows not already started."""
        for inbound_id, raw in rows:
            if inbound_id not in self.futures:
                with self.lock:
                    self.sizes[inbound_id] = len(raw)
                self.futures[inbound_id] = self.pool.submit(
                    self._read, inbound_id, raw, known_models
                )

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

    def _read(self, inbound_id: int, raw: bytes, known_models: tuple[str, ...]) -> Reading:
        parsed = parse_email(raw)  # never raises
        try:
            fields = intake_fields(parsed, known_models, self.fault_types)
        except Exception:  # the worker finds them again, and quarantines what fails
            log.exception("reading ahead: intake fields not found")
            reading = Reading(parsed)
        else:
            reading = Reading(parsed, fields, known_models)
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
