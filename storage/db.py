"""Engine set-up: one function builds it, nothing connects at import time."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

SQLITE_BUSY_TIMEOUT_MS = 30_000


def create_db_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url`` with our durability settings.

    SQLite: WAL, ``synchronous=FULL`` (a row committed before ``250 OK`` survives a power
    cut), foreign keys on, a busy timeout, and every transaction begun ``IMMEDIATE`` so
    two writers queue on the lock instead of failing with "database is locked" half-way.
    PostgreSQL goes through psycopg 3 (``postgresql://`` URLs are mapped to it).
    """
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True, **kwargs)

    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **kwargs
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy's "begin" event below (the pysqlite
        # driver would otherwise issue a deferred BEGIN of its own).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    _serialize_writers(engine)
    return engine


def _serialize_writers(engine: Engine) -> None:
    """Writers of this process queue on a Python lock, then BEGIN IMMEDIATE.

    SQLite's own busy handler polls with sleeps of up to 100 ms, so when the webhook,
    SMTP, the intake worker and the dispatcher all write, a waiting writer oversleeps
    and latency jumps; a lock hands over the moment the holder commits. The lock is
    taken when a transaction begins and given back after the COMMIT or ROLLBACK has run
    (the pool's rollback of a connection returned mid-transaction included). Other
    processes, such as a CLI command, still meet SQLite's busy timeout.
    """
    write_lock = threading.Lock()
    holder: list[Any] = [None]  # the DBAPI connection inside a write transaction
    dialect = engine.dialect
    commit, rollback = dialect.do_commit, dialect.do_rollback

    def raw(connection: Any) -> Any:
        return getattr(connection, "dbapi_connection", connection)

    def release(dbapi_connection: Any) -> None:
        if dbapi_connection is not None and holder[0] is raw(dbapi_connection):
            holder[0] = None
            write_lock.release()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        if not write_lock.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
            raise TimeoutError("timed out waiting for this process's SQLite write lock")
        holder[0] = raw(connection.connection)
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
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
