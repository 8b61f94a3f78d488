"""The unit of work: one transaction per decision, committed explicitly."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker


def session_factory(engine: Engine) -> sessionmaker[Session]:
    # expire_on_commit=False: objects stay readable after the commit that wrote them,
    # which the CLI and the dispatcher rely on to report what they did.
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def unit_of_work(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work is kept only if the caller calls ``commit()``.

    Leaving the block without committing, normally or by an exception, rolls back, so
    a decision's ticket, deadlines and outbox rows land together or not at all.
    """
    session = sessions()
    try:
        yield session
    finally:
        # close() rolls back what was not committed and detaches the objects without
        # expiring them (rollback() would expire them), so they stay readable.
        session.close()
