"""Engine set-up: one function builds it, nothing connects at import time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from storage.sqlite_writers import SQLITE_BUSY_TIMEOUT_MS, WriterFileLock, serialize_writers


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

    database = parsed.database if parsed.database not in (None, "", ":memory:") else None
    if database:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
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

    serialize_writers(engine, WriterFileLock(database) if database else None)
    return engine
