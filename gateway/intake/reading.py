"""A stored email as the intake reads it: parsed, with the intake record's fields.

The intake reads each email through a ``Reader``: ``read_here`` parses on the spot;
``serve``'s worker hands in its parse-ahead helper (``gateway/serving/parse_ahead.py``),
which has usually read the message already.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import Connection

from parsers.mail import ParsedEmail, parse_email
from parsers.record_fields import RecordFields, extract_record_fields

FaultTypes = Mapping[str, Sequence[str]]


@dataclass(frozen=True)
class Reading:
    """A parsed email. Read ahead, it also holds the intake record's fields, found against the
    customer file's machine models of that moment."""

    parsed: ParsedEmail
    fields: RecordFields | None = None
    known_models: tuple[str, ...] = ()

    def fields_for(self, known_models: tuple[str, ...], fault_types: FaultTypes) -> RecordFields:
        """The record fields against ``known_models``: those read ahead if the customer
        file's models are still what they were, else found now."""
        if self.fields is not None and known_models == self.known_models:
            return self.fields
        return record_fields(self.parsed, known_models, fault_types)


def record_fields(
    parsed: ParsedEmail, known_models: Sequence[str], fault_types: FaultTypes
) -> RecordFields:
    return extract_record_fields(
        parsed.subject,
        parsed.visible_text,
        from_name=parsed.from_name,
        known_models=known_models,
        fault_types=fault_types,
    )


class Reader(Protocol):
    """How the batch loop reads the stored emails it processes."""

    def reading(self, inbound_id: int, raw: bytes) -> Reading:
        """The row's reading (parsed here if not read ahead)."""
        ...

    def look_ahead(self, db: Connection, after: int) -> None:
        """Starts reading pending rows past ``after``, found on ``db`` (a reader may do
        nothing)."""
        ...

    def forget_through(self, inbound_id: int) -> None:
        """Drops what it holds for rows up to ``inbound_id``: they are processed."""
        ...


class ReadHere:
    """Parses each email when the intake reaches it; reads nothing ahead."""

    def reading(self, inbound_id: int, raw: bytes) -> Reading:
        return Reading(parse_email(raw))

    def look_ahead(self, db: Connection, after: int) -> None:
        return None

    def forget_through(self, inbound_id: int) -> None:
        return None
