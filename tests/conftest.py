"""Fixtures shared by every test module."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import create_engine
from sqlalchemy.exc import OperationalError

from gateway.bootstrap import Services, build_services
from storage import migrate
from workflow.clock import fixed_clock
from workflow.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CORPUS = SHARED / "corpus"


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The public email corpus beside the checkout (never copied into the project).

    A clone with nothing beside it skips the tests that read it, saying why; under
    CI=true, where ../shared is always laid beside the checkout, its absence fails."""
    if not CORPUS.is_dir():
        reason = f"the public email corpus is not beside this checkout ({CORPUS})"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return CORPUS


# --- databases -------------------------------------------------------------------------
# Storage tests run on SQLite and on PostgreSQL. A PostgreSQL test gets a schema of its
# own in the ``test`` database, so tests never see each other's rows. Under CI=true an
# unreachable PostgreSQL fails the run instead of skipping.

POSTGRES_URL = os.environ.get(
    "SUPPORTLINE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
FIXED_NOW = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)  # Friday 10:00 in Shanghai
SUPPORTLINE = str(Path(sys.executable).with_name("supportline"))  # the installed command


class MutableClock:
    """A clock a test moves forward by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


def _postgres_schema_url(name: str) -> str:
    engine = create_engine(POSTGRES_URL)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
            connection.exec_driver_sql(f'CREATE SCHEMA "{name}"')
    except OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required under CI and unreachable: {exc.orig}")
        pytest.skip(f"PostgreSQL unreachable: {exc.orig}")
    finally:
        engine.dispose()
    return POSTGRES_URL + "?options=" + quote(f"-csearch_path={name}")


def _drop_postgres_schema(name: str) -> None:
    engine = create_engine(POSTGRES_URL)
    with engine.begin() as connection:
        connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each kind (not migrated)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'supportline.db'}"
        return
    name = f"t_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    yield _postgres_schema_url(name)
    _drop_postgres_schema(name)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """An empty PostgreSQL schema, for behaviour only PostgreSQL has (concurrent writers)."""
    name = f"t_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    yield _postgres_schema_url(name)
    _drop_postgres_schema(name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'supportline.db'}"


def make_services(url: str, now: datetime = FIXED_NOW, **overrides: Any) -> Services:
    """Services on a migrated database with a fixed clock."""
    document: dict[str, Any] = {"database": {"url": url}}
    for section, values in overrides.items():
        document.setdefault(section, {}).update(values)
    services = build_services(load_settings(document), fixed_clock(now))
    migrate.upgrade(services.engine)
    return services


@pytest.fixture
def services(db_url: str) -> Iterator[Services]:
    built = make_services(db_url)
    yield built
    built.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_http(
    url: str, timeout: float = 20.0, process: subprocess.Popen[bytes] | None = None
) -> bytes:
    """Polls ``url`` until it answers 200; fails early if ``process`` died."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            out = process.stdout.read().decode() if process.stdout else ""
            pytest.fail(f"the service exited with {process.returncode}:\n{out}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def stop(process: subprocess.Popen[bytes]) -> str:
    """Interrupts a service like Ctrl-C would and returns what it printed."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.stdout.read().decode() if process.stdout else ""
