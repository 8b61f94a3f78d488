"""Insert-if-absent on a unique key: how replays stay harmless without an error."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Connection, Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from storage.models import Base


def insert_or_get(
    session: Session, model: type[Base], key_column: str, values: dict[str, Any]
) -> tuple[Any, bool]:
    """Inserts ``values`` unless a row with the same ``key_column`` exists.

    Returns the row's primary key and whether this call created it. ``ON CONFLICT DO
    NOTHING`` (both SQLite and PostgreSQL) means a concurrent duplicate neither raises nor
    aborts the surrounding transaction, which a caught IntegrityError would on PostgreSQL.
    """
    return insert_many_or_get(session.connection(), model, key_column, [values])[0]


def insert_many_or_get(
    connection: Connection, model: type[Base], key_column: str, rows: Sequence[dict[str, Any]]
) -> list[tuple[Any, bool]]:
    """``insert_or_get`` for many rows (all with the same columns) in one statement.

    Returns, per row in order, its primary key and whether it was created now; a key that
    repeats within ``rows`` is created once, by its first row.
    """
    if not rows:
        return []
    table = cast(Table, model.__table__)
    (primary_key,) = table.primary_key.columns
    key = table.c[key_column]
    first_of: dict[Any, dict[str, Any]] = {}
    for values in rows:
        first_of.setdefault(values[key_column], values)
    # One statement shape per table, executed with a list of parameter sets: compiled
    # once and cached, and sent as one multi-row INSERT … RETURNING ("insertmanyvalues").
    created = {
        row_key: row_id
        for row_id, row_key in connection.execute(
            _insert_if_absent(connection.dialect.name, table, key_column),
            list(first_of.values()),
        )
    }
    missing = [k for k in first_of if k not in created]
    existing: dict[Any, Any] = {}
    if missing:
        existing = {
            k: i for k, i in connection.execute(select(key, primary_key).where(key.in_(missing)))
        }
    results, handed_out = [], set()
    for values in rows:
        row_key = values[key_column]
        if row_key in created and row_key not in handed_out:
            handed_out.add(row_key)
            results.append((created[row_key], True))
        else:
            results.append((created.get(row_key, existing.get(row_key)), False))
    return results


@functools.cache
def _insert_if_absent(dialect: str, table: Table, key_column: str) -> Any:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    (primary_key,) = table.primary_key.columns
    return (
        insert(table)
        .on_conflict_do_nothing(index_elements=[key_column])
        .returning(primary_key, table.c[key_column])
    )
