"""Alembic environment: runs on the engine handed over in ``config.attributes``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from storage.db import create_db_engine
from storage.models import Base

config = context.config
engine: Engine | None = config.attributes.get("engine")
if engine is None:  # the plain ``alembic`` command, for writing new revisions
    engine = create_db_engine(
        config.get_main_option("sqlalchemy.url") or "sqlite:///var/supportline.db"
    )

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
