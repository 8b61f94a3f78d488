"""Insert-if-absent on a unique key: how replays stay harmless without an error."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from storage.models import Base


def insert_or_get(
    session: Session, model: type[Base], key_column: str, values: dict[str, Any]
) -> tuple[Any, bool]:
    """Inserts ``values`` unless a row with the same ``key_column`` exists.

    Returns the row's primary key and whether this call created it. ``ON CONFLICT DO NOTHING``
    (both SQLite and PostgreSQL) means a concurrent duplicate neither raises nor aborts
    the surrounding transaction, which a caught IntegrityError would on PostgreSQL.
    """
    table = cast(Table, model.__table__)
    (primary_key,) = table.primary_key.columns
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(table)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[key_column])
        .returning(primary_key)
    )
    created = session.execute(statement).scalar_one_or_none()
    if created is not None:
        return created, True
    existing = session.execute(
        select(primary_key).where(table.c[key_column] == values[key_column])
    ).scalar_one()
    return existing, False
