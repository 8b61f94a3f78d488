"""Every public corpus email through the whole intake pipeline, as `ingest email` runs it.

Each file becomes a ticket, a reply, a bounce, an auto-reply or a recognised duplicate;
none may be quarantined, and the set-of-emails classes hold end to end.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from gateway.channels.store import store_email
from gateway.intake.runner import process_pending
from gateway.intake.service import build_intake
from storage.models import InboundMessage
from storage.uow import unit_of_work
from tests.conftest import CORPUS, FIXED_NOW, make_services
from tests.unit.test_corpus_mail import ALL_EMAILS, SET_OF_EMAILS

pytestmark = pytest.mark.usefixtures("corpus_dir")  # skipped, saying why, without it
ACCEPTED_RESULTS = ("ticket ", "reply on ", "bounce", "auto-reply", "duplicate of ")


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[Path, tuple[str, str]]]:
    """(state, result) of every corpus email, ingested once into one database."""
    database = tmp_path_factory.mktemp("corpus") / "corpus.db"
    services = make_services(
        f"sqlite:///{database}", email={"auto_replies_per_sender_per_hour": 10**6}
    )
    row_of = {}  # byte-identical files share one row, as they would over SMTP
    for path in ALL_EMAILS:
        raw = path.read_bytes()
        row_of[path] = store_email(services.engine, raw, source="corpus", received_at=FIXED_NOW)
    process_pending(build_intake(services))
    with unit_of_work(services.sessions) as session:
        rows = {r.id: (r.state, r.result or "") for r in session.scalars(select(InboundMessage))}
    services.close()
    yield {path: rows[stored.inbound_id] for path, stored in row_of.items()}


def _rel(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(CORPUS)) for p in paths]


@pytest.mark.parametrize("path", ALL_EMAILS, ids=_rel(ALL_EMAILS))
def test_every_corpus_email_lands_in_a_class(results, path: Path) -> None:
    state, result = results[path]
    assert state == "processed", result
    assert result.startswith(ACCEPTED_RESULTS), result


def _set(pattern: str) -> list[Path]:
    return sorted(p for p in SET_OF_EMAILS.glob(pattern) if p.is_file())


@pytest.mark.parametrize("path", _set("*/rfc3834-*"), ids=_rel(_set("*/rfc3834-*")))
def test_rfc3834_auto_replies_open_no_ticket(results, path: Path) -> None:
    assert results[path][1].startswith(("auto-reply", "duplicate of ")), results[path]


@pytest.mark.parametrize("path", _set("*/rfc3464-*"), ids=_rel(_set("*/rfc3464-*")))
def test_rfc3464_reports_are_bounces(results, path: Path) -> None:
    assert results[path][1].startswith("bounce"), results[path]


@pytest.mark.parametrize("path", _set("not/*"), ids=_rel(_set("not/*")))
def test_not_bounces_are_not_bounces(results, path: Path) -> None:
    assert not results[path][1].startswith("bounce"), results[path]
