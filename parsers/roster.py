"""The staff file and the customer file: CSV text in, validated rows or row errors out.

Both files are edited in spreadsheets; Chinese Excel saves CSV as GBK, others as UTF-8
with or without a byte-order mark, so the bytes are decoded accordingly. Every row is
checked and every problem is reported with its line number, so an operator fixes the
whole file in one go.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from parsers.phones import normalize_phone

STAFF_COLUMNS = ("name", "role", "email", "phone", "supervisor_email", "language", "timezone")
CUSTOMER_COLUMNS = (
    "customer", "contact", "email", "phone", "language", "model", "serial", "shipped_on", "special",
)  # fmt: skip
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
TRUE_WORDS = {"1", "yes", "y", "true", "是", "有"}
FALSE_WORDS = {"", "0", "no", "n", "false", "否", "无"}


@dataclass(frozen=True)
class RowError:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass(frozen=True)
class StaffRow:
    line: int
    name: str
    role: str
    email: str
    phone: str | None
    supervisor_email: str | None
    language: str
    timezone: str


@dataclass(frozen=True)
class CustomerRow:
    line: int
    customer: str
    contact: str
    email: str | None
    phone: str | None
    language: str | None
    model: str | None
    serial: str | None
    shipped_on: date | None
    special: bool


def decode_csv(data: bytes) -> str:
    """UTF-8 (BOM or not), else GB18030, the superset of what Chinese Excel writes."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("gb18030", errors="replace")


def _rows(
    text: str, columns: Sequence[str]
) -> tuple[list[tuple[int, dict[str, str]]], list[RowError]]:
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None:
        return [], [RowError(1, "the file is empty; expected a header row")]
    names = [h.strip().lower() for h in header]
    missing = [c for c in columns if c not in names]
    unknown = [n for n in names if n not in columns]
    if missing or unknown:
        parts = []
        if missing:
            parts.append("missing column(s) " + ", ".join(missing))
        if unknown:
            parts.append("unknown column(s) " + ", ".join(unknown))
        return [], [RowError(1, "; ".join(parts) + "; expected: " + ",".join(columns))]
    rows: list[tuple[int, dict[str, str]]] = []
    for values in reader:
        line = reader.line_num
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(names):
            return rows, [RowError(line, f"{len(values)} fields, the header has {len(names)}")]
        rows.append((line, {n: v.strip() for n, v in zip(names, values, strict=True)}))
    return rows, []


def _check_email(value: str, errors: list[str], *, required: bool) -> str | None:
    if not value:
        if required:
            errors.append("email is required")
        return None
    if not EMAIL_RE.match(value):
        errors.append(f"email {value!r} is not an address")
        return None
    return value.lower()


def _check_language(value: str, languages: Collection[str], errors: list[str]) -> str | None:
    if not value:
        return None
    for known in languages:
        if value.lower() == known.lower():
            return known
    errors.append(f"language {value!r} is not one of {', '.join(languages)}")
    return None


def _unique(rows: Sequence[tuple[int, str | None]], what: str, errors: list[RowError]) -> None:
    seen: dict[str, int] = {}
    for line, value in rows:
        if value is None:
            continue
        if value in seen:
            errors.append(RowError(line, f"{what} {value} repeats line {seen[value]}"))
        else:
            seen[value] = line


def parse_staff_csv(
    data: bytes,
    roles: Collection[str],
    languages: Collection[str],
    default_language: str,
    default_timezone: str,
    region: str = "CN",
) -> tuple[list[StaffRow], list[RowError]]:
    """Validated staff rows, or the errors (all of them) that reject the file."""
    raw_rows, errors = _rows(decode_csv(data), STAFF_COLUMNS)
    rows: list[StaffRow] = []
    for line, r in raw_rows:
        problems: list[str] = []
        if not r["name"]:
            problems.append("name is required")
        role = r["role"].lower()
        if role not in roles:
            problems.append(f"role {r['role']!r} is not one of {', '.join(roles)}")
        email = _check_email(r["email"], problems, required=True)
        phone = None
        if r["phone"]:
            phone = normalize_phone(r["phone"], region, mobile_only=True)
            if phone is None:
                problems.append(f"phone {r['phone']!r} is not a valid mobile number")
        supervisor = _check_email(r["supervisor_email"], problems, required=False)
        language = _check_language(r["language"], languages, problems) or default_language
        zone = r["timezone"] or default_timezone
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(f"timezone {zone!r} is not an IANA zone such as Asia/Shanghai")
        if problems:
            errors.extend(RowError(line, p) for p in problems)
        elif email is not None:
            rows.append(StaffRow(line, r["name"], role, email, phone, supervisor, language, zone))
    _unique([(r.line, r.email) for r in rows], "email", errors)
    _unique([(r.line, r.phone) for r in rows], "phone", errors)
    return rows, sorted(errors, key=lambda e: e.line)


def parse_customer_csv(
    data: bytes, languages: Collection[str], region: str = "CN"
) -> tuple[list[CustomerRow], list[RowError]]:
    """Validated customer-file rows, or the errors (all of them) that reject the file."""
    raw_rows, errors = _rows(decode_csv(data), CUSTOMER_COLUMNS)
    rows: list[CustomerRow] = []
    for line, r in raw_rows:
        problems: list[str] = []
        if not r["customer"]:
            problems.append("customer is required")
        email = _check_email(r["email"], problems, required=False)
        phone = None
        if r["phone"]:
            phone = normalize_phone(r["phone"], region)
            if phone is None:
                problems.append(f"phone {r['phone']!r} is not a valid number")
        language = _check_language(r["language"], languages, problems)
        if r["serial"] and not r["model"]:
            problems.append("a serial needs its model")
        shipped = None
        if r["shipped_on"]:
            try:
                shipped = date.fromisoformat(r["shipped_on"])
            except ValueError:
                problems.append(f"shipped_on {r['shipped_on']!r} is not a date like 2024-05-31")
        special_word = r["special"].lower()
        if special_word not in TRUE_WORDS | FALSE_WORDS:
            problems.append(f"special {r['special']!r} is not yes or no")
        if problems:
            errors.extend(RowError(line, p) for p in problems)
            continue
        rows.append(
            CustomerRow(
                line=line,
                customer=r["customer"],
                contact=r["contact"],
                email=email,
                phone=phone,
                language=language,
                model=r["model"] or None,
                serial=r["serial"] or None,
                shipped_on=shipped,
                special=special_word in TRUE_WORDS,
            )
        )
    _unique([(r.line, r.serial) for r in rows], "serial", errors)
    return rows, sorted(errors, key=lambda e: e.line)
