"""Signals between ``serve``'s two processes, in shared memory and without locks.

A process can be killed at any instant. ``multiprocessing.Event`` keeps a lock and
counts its sleepers, so a background process killed while waiting on it leaves the
listeners' next ``set()`` waiting for it forever. These are plain shared numbers: a
writer stores, a reader polls, and a death mid-way leaves nothing held.
"""

from __future__ import annotations

import multiprocessing
import time

_CONTEXT = multiprocessing.get_context("spawn")
WAKE_POLL_SECONDS = 0.02


class Arrivals:
    """When the listeners last queued a message to store (the monotonic clock is the
    same for every process of the machine)."""

    def __init__(self) -> None:
        self.last = _CONTEXT.Value("d", 0.0, lock=False)

    def mark(self) -> None:
        self.last.value = time.monotonic()

    def quiet_for(self, seconds: float) -> bool:
        return time.monotonic() - self.last.value >= seconds


class Wake:
    """An event another process sets: ``set()`` bumps a shared counter, ``wait()`` polls
    it every 20 ms. Two bumps racing may count once; either way the count moved."""

    def __init__(self) -> None:
        self.count = _CONTEXT.Value("Q", 0, lock=False)
        self.seen = 0

    def set(self) -> None:
        self.count.value = (self.count.value + 1) % 2**63

    def clear(self) -> None:
        self.seen = self.count.value

    def is_set(self) -> bool:
        return bool(self.count.value != self.seen)

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(WAKE_POLL_SECONDS)
        return True
