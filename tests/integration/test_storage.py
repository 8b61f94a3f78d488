"""The schema on SQLite and PostgreSQL: migrations, unique keys, time, durability."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, StatementError

from gateway.bootstrap import Services
from storage import migrate
from storage.db import create_db_engine
from storage.models import (
    Base,
    DailyCheckIn,
    InboundMessage,
    OutboxMessage,
    Report,
    Staff,
    Ticket,
    Trip,
)
from storage.uow import session_factory, unit_of_work
from tests.conftest import FIXED_NOW

NOW = FIXED_NOW


def test_migrations_match_the_models(db_url: str) -> None:
    """Autogenerate finds nothing: a model changed without a migration fails here."""
    engine = create_db_engine(db_url)
    migrate.upgrade(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    assert migrate.current_revision(engine) is not None
    engine.dispose()


def test_upgrade_twice_is_harmless(db_url: str) -> None:
    engine = create_db_engine(db_url)
    migrate.upgrade(engine)
    first = migrate.current_revision(engine)
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == first
    engine.dispose()


def _inbound(key: str) -> InboundMessage:
    return InboundMessage(
        channel="email", source="smtp", dedupe_key=key, raw=b"x", sha256="0" * 64, received_at=NOW
    )


def _outbox(key: str) -> OutboxMessage:
    return OutboxMessage(
        idempotency_key=key,
        channel="email",
        to_address="a@example.com",
        template="ack",
        language="en",
        next_attempt_at=NOW,
        created_at=NOW,
    )


def _staff(email: str) -> Staff:
    return Staff(
        name="王强",
        role="engineer",
        email=email,
        language="zh-CN",
        timezone="Asia/Shanghai",
        created_at=NOW,
        updated_at=NOW,
    )


@pytest.mark.parametrize(
    "make_twin",
    [
        pytest.param(lambda: [_inbound("mid:<a@x>"), _inbound("mid:<a@x>")], id="inbound"),
        pytest.param(lambda: [_outbox("ack:1"), _outbox("ack:1")], id="outbox"),
        pytest.param(
            lambda: [
                Report(kind="monthly", period="2026-11", content_html="", created_at=NOW),
                Report(kind="monthly", period="2026-11", content_html="", created_at=NOW),
            ],
            id="report",
        ),
    ],
)
def test_replay_keys_are_unique(services: Services, make_twin: Callable[[], list[Base]]) -> None:
    with unit_of_work(services.sessions) as session:
        first, second = make_twin()
        session.add(first)
        session.commit()
        session.add(second)
        with pytest.raises(IntegrityError):
            session.commit()


def test_one_checkin_per_engineer_and_local_day(services: Services) -> None:
    with unit_of_work(services.sessions) as session:
        engineer = _staff("wq@example.com")
        ticket = Ticket(
            state="onsite", channel="email", language="zh-CN", created_at=NOW, updated_at=NOW
        )
        session.add_all([engineer, ticket])
        session.flush()
        trip = Trip(
            ticket_id=ticket.id,
            engineer_id=engineer.id,
            starts_on=date(2026, 11, 27),
            ends_on=date(2026, 11, 29),
            created_at=NOW,
        )
        session.add(trip)
        session.flush()
        for body in ("第一天进展", "again"):
            session.add(
                DailyCheckIn(
                    trip_id=trip.id,
                    engineer_id=engineer.id,
                    local_date=date(2026, 11, 27),
                    body=body,
                    received_at=NOW,
                )
            )
        with pytest.raises(IntegrityError):
            session.commit()


def test_times_come_back_aware_and_in_utc(services: Services) -> None:
    shanghai = timezone(timedelta(hours=8))
    local = datetime(2026, 11, 27, 10, 0, tzinfo=shanghai)
    with unit_of_work(services.sessions) as session:
        row = _inbound("k")
        row.received_at = local
        session.add(row)
        session.commit()
    with unit_of_work(services.sessions) as session:
        stored = session.scalars(select(InboundMessage)).one().received_at
    assert stored.tzinfo is not None
    assert stored == local
    assert stored.utcoffset() == timedelta(0)


def test_naive_datetimes_are_refused(services: Services) -> None:
    with unit_of_work(services.sessions) as session:
        row = _inbound("naive")
        row.received_at = datetime(2026, 11, 27, 10, 0)  # noqa: DTZ001 - the point of the test
        session.add(row)
        with pytest.raises(StatementError, match="naive datetime"):
            session.commit()


def test_uncommitted_work_is_rolled_back(services: Services) -> None:
    with unit_of_work(services.sessions) as session:
        session.add(_outbox("never"))
        session.flush()
    with unit_of_work(services.sessions) as session:
        assert session.scalars(select(OutboxMessage)).all() == []


def test_sqlite_is_durable_and_checks_foreign_keys(sqlite_url: str) -> None:
    engine = create_db_engine(sqlite_url)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
    migrate.upgrade(engine)
    with unit_of_work(session_factory(engine)) as session:
        session.add(
            DailyCheckIn(
                trip_id=999,
                engineer_id=999,
                local_date=date(2026, 11, 27),
                body="x",
                received_at=datetime.now(UTC),
            )
        )
        with pytest.raises(IntegrityError):
            session.commit()
    engine.dispose()


def test_insert_many_or_get_creates_each_key_once(services: Services) -> None:
    from storage.inserts import insert_many_or_get

    def row(key: str) -> dict:
        return {"channel": "sms", "source": "t", "dedupe_key": key, "raw": b"x",
                "sha256": "0" * 64, "received_at": NOW, "envelope_to": [], "state": "pending",
                "attempts": 0}  # fmt: skip

    with unit_of_work(services.sessions) as session:
        [(old_id, _)] = insert_many_or_get(
            session.connection(), InboundMessage, "dedupe_key", [row("old")]
        )
        some = [row("a"), row("old"), row("a"), row("b")]
        results = insert_many_or_get(session.connection(), InboundMessage, "dedupe_key", some)
        session.commit()
    (a_id, a_new), (again_id, again_new), (a2_id, a2_new), (_, b_new) = results
    assert (a_new, again_new, a2_new, b_new) == (True, False, False, True)
    assert again_id == old_id and a2_id == a_id
    with unit_of_work(services.sessions) as session:
        assert len(session.scalars(select(InboundMessage)).all()) == 3


def _write_lock_is_free(engine) -> bool:
    """A second transaction can begin at once (the first one gave the lock back)."""
    import threading

    done = threading.Event()

    def begin_elsewhere() -> None:
        with engine.begin() as connection:
            connection.exec_driver_sql("SELECT 1")
        done.set()

    threading.Thread(target=begin_elsewhere, daemon=True).start()
    return done.wait(5)


def test_regression_invalidated_connection_kept_the_write_lock(sqlite_url: str) -> None:
    """Fixed in 81ab0e1: an invalidated SQLite connection kept its process's write lock."""
    engine = create_db_engine(sqlite_url)
    connection = engine.connect()
    connection.exec_driver_sql("SELECT 1")  # begins: takes this process's write lock
    connection.invalidate()
    connection.close()
    assert _write_lock_is_free(engine)
    engine.dispose()


def test_regression_interrupt_mid_transaction_kept_the_write_lock(sqlite_url: str) -> None:
    """Fixed in 81ab0e1: an interrupt mid-transaction kept the process's SQLite write lock."""
    engine = create_db_engine(sqlite_url)
    with pytest.raises(KeyboardInterrupt), engine.connect() as connection:
        connection.exec_driver_sql("SELECT 1")
        raise KeyboardInterrupt
    assert _write_lock_is_free(engine)
    engine.dispose()


HOLD_AND_WRITE = """
import sys
from storage.db import create_db_engine
engine = create_db_engine(sys.argv[1])
print("waiting", flush=True)
with engine.begin() as connection:
    connection.exec_driver_sql("CREATE TABLE IF NOT EXISTS other (n INTEGER)")
    connection.exec_driver_sql("INSERT INTO other VALUES (1)")
print("written", flush=True)
"""


def test_a_writer_of_another_process_waits_its_turn_and_is_seen_waiting(
    sqlite_url: str,
) -> None:
    """serve's two processes share one SQLite file: the one writing can tell that the
    other waits (the intake then ends its batch early), and the other writes right after."""
    import subprocess
    import sys
    import time

    from storage.sqlite_writers import writers_waiting
    from tests.conftest import ROOT

    engine = create_db_engine(sqlite_url)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE mine (n INTEGER)")
        assert not writers_waiting(engine)
        other = subprocess.Popen(
            [sys.executable, "-c", HOLD_AND_WRITE, sqlite_url],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert other.stdout is not None
        assert other.stdout.readline().strip() == "waiting"
        deadline = time.monotonic() + 20
        while not writers_waiting(engine) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert writers_waiting(engine)
        assert other.poll() is None  # still waiting: this transaction holds the database
        connection.exec_driver_sql("INSERT INTO mine VALUES (1)")
    assert other.stdout.readline().strip() == "written"
    assert other.wait(timeout=20) == 0
    with engine.begin() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM other").scalar() == 1
    engine.dispose()
