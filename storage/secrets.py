"""Secrets the service makes for itself and keeps, so every process agrees on them."""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy.orm import Session

from storage.inserts import insert_or_get
from storage.models import ServiceSecret


def get_or_create_secret(session: Session, name: str, now: datetime) -> str:
    """The stored secret ``name``; the first caller creates it (racing callers agree)."""
    insert_or_get(
        session,
        ServiceSecret,
        "name",
        {"name": name, "value": secrets.token_hex(32), "created_at": now},
    )
    return session.get_one(ServiceSecret, name).value
