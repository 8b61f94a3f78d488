"""SQLite's writers in turn: across the threads of a process and across processes.

SQLite lets one writer in at a time. Its own busy handler sleeps 1, 2, 5 … up to 100 ms
between tries, so under load (SMTP, the webhook, the intake and the dispatcher all
writing) a waiting writer oversleeps and latency jumps. Here writers queue on a Python
lock and a lock file instead, and a long job can ask whether someone waits for it
(``writers_waiting``). PostgreSQL needs none of this.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, event

SQLITE_BUSY_TIMEOUT_MS = 30_000
_WRITERS_WAITING: weakref.WeakKeyDictionary[Engine, Callable[[], bool]] = (
    weakref.WeakKeyDictionary()
)


def writers_waiting(engine: Engine) -> bool:
    """Whether another writer waits for the one database lock (SQLite) while this one
    writes: a long job then commits what it has done and lets it in. On PostgreSQL
    writers do not queue for the whole database, so never."""
    check = _WRITERS_WAITING.get(engine)
    return check() if check is not None else False


class WriterFileLock:
    """The database's writers across processes, in turn: locks on ``<database>.writer-lock``.

    SQLite's own busy handler sleeps 1, 2, 5 … up to 100 ms between tries, so a writer
    waiting on another process oversleeps; this lock is polled every 0.1–1 ms instead.
    Polled locks are not fair: a process that commits and begins again at once (the
    intake worker going through a backlog) would win every time against one that is
    asleep between polls (a webhook's commit). So a writer first takes the queue byte,
    then the write byte, then lets the queue byte go: whoever waits for the write byte
    holds the queue byte, and the holder, to begin again, must queue behind it.
    ``serve``'s two processes and any CLI command take turns here before BEGIN IMMEDIATE.
    """

    WRITE, QUEUE = 0, 1  # byte offsets locked in the file (POSIX record locks)

    def __init__(self, database: str) -> None:
        self.path = f"{database}.writer-lock"
        self.fd: int | None = None
        self.pid = 0

    def acquire(self, timeout: float) -> bool:
        if self.pid != os.getpid():  # opened once per process
            self.pid = os.getpid()
            try:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:  # a read-only folder: SQLite's busy timeout still guards
                self.fd = None
        if self.fd is None:
            return True
        deadline = time.monotonic() + timeout
        if not self._lock(self.QUEUE, deadline):
            return False
        try:
            return self._lock(self.WRITE, deadline)
        finally:
            fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, self.QUEUE)

    def release(self) -> None:
        if self.fd is not None:
            fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, self.WRITE)

    def others_waiting(self) -> bool:
        """Whether another process waits for the write byte (it holds the queue byte);
        only meaningful while this process holds the write byte."""
        if self.fd is None:
            return False
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, self.QUEUE)
        except (BlockingIOError, PermissionError):
            return True
        fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, self.QUEUE)
        return False

    def _lock(self, byte: int, deadline: float) -> bool:
        assert self.fd is not None
        pause = 0.0001
        while True:
            try:
                fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, byte)
                return True
            except (BlockingIOError, PermissionError):  # EAGAIN or EACCES: held elsewhere
                if time.monotonic() >= deadline:
                    return False
                time.sleep(pause)
                pause = min(pause * 2, 0.001)


def serialize_writers(engine: Engine, file_lock: WriterFileLock | None) -> None:
    """Writers of this process queue on a Python lock, then on the database's lock file
    (other processes), then BEGIN IMMEDIATE.

    SQLite's own busy handler polls with sleeps of up to 100 ms, so when the webhook,
    SMTP, the intake worker and the dispatcher all write, a waiting writer oversleeps
    and latency jumps; a lock hands over the moment the holder commits. The lock is
    taken when a transaction begins and given back after the COMMIT or ROLLBACK has run
    (the pool's rollback of a connection returned mid-transaction included). SQLite's
    busy timeout stays as the backstop for a process that does not take the lock file.
    """
    write_lock = threading.Lock()
    holder: list[Any] = [None]  # the DBAPI connection inside a write transaction
    waiting = [0]  # threads of this process waiting for write_lock
    counting = threading.Lock()

    def count_waiting(change: int) -> None:
        with counting:
            waiting[0] += change

    def others_waiting() -> bool:
        return waiting[0] > 0 or (file_lock is not None and file_lock.others_waiting())

    _WRITERS_WAITING[engine] = others_waiting
    dialect = engine.dialect
    commit, rollback = dialect.do_commit, dialect.do_rollback

    def raw(connection: Any) -> Any:
        return getattr(connection, "dbapi_connection", connection)

    def release(dbapi_connection: Any) -> None:
        if dbapi_connection is not None and holder[0] is raw(dbapi_connection):
            holder[0] = None
            if file_lock is not None:
                file_lock.release()
            write_lock.release()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        timeout = SQLITE_BUSY_TIMEOUT_MS / 1000
        count_waiting(1)
        try:
            locked = write_lock.acquire(timeout=timeout)
        finally:
            count_waiting(-1)
        if not locked:
            raise TimeoutError("timed out waiting for this process's SQLite write lock")
        try:
            if file_lock is not None and not file_lock.acquire(timeout):
                raise TimeoutError(f"timed out waiting for {file_lock.path}")
        except BaseException:
            write_lock.release()
            raise
        holder[0] = raw(connection.connection)
        try:
            # On the driver's connection: every transaction begins here, and SQLAlchemy's
            # statement machinery costs more than the statement itself.
            holder[0].execute("BEGIN IMMEDIATE")
        except BaseException:
            release(holder[0])
            raise

    def do_commit(dbapi_connection: Any) -> None:
        try:
            commit(dbapi_connection)
        finally:
            release(dbapi_connection)

    def do_rollback(dbapi_connection: Any) -> None:
        try:
            rollback(dbapi_connection)
        finally:
            release(dbapi_connection)

    dialect.do_commit = do_commit  # type: ignore[method-assign]
    dialect.do_rollback = do_rollback  # type: ignore[method-assign]

    # Backstops: a connection that is invalidated (an error the driver cannot recover
    # from, an interrupt mid-statement) or closed is not rolled back through the dialect,
    # and SQLite drops its transaction with it; every connection also passes "checkin"
    # on its way back to the pool. Whichever comes first gives the lock back.
    for name in ("checkin", "invalidate", "soft_invalidate", "close", "close_detached"):
        event.listen(engine.pool, name, lambda dbapi_connection, *_rest: release(dbapi_connection))
