"""The deployment's settings: typed, defaulted, validated.

Pure code: the caller reads the TOML file and the environment and hands both in as
plain mappings. Every key of DESIGN.md "Configuration" is optional; a wrong key or value
raises ``SettingsError`` naming the key and what it allows, so start-up can stop with one
clear line instead of a traceback.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from email.utils import parseaddr
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from workflow.fault_types import DEFAULT_FAULT_TYPES

ENV_PREFIX = "SUPPORTLINE_"
LANGUAGES = ("zh-CN", "en")


class SettingsError(ValueError):
    """A configuration value the operator must fix; the message names the key."""


def _check_listen(value: str) -> str | None:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        return "must be HOST:PORT, e.g. 127.0.0.1:2525"
    return None


def _check_zone(value: str) -> str | None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return "must be an IANA time zone such as Asia/Shanghai"
    return None


def _check_share(value: float) -> str | None:
    return None if 0 < value < 1 else "must be a share between 0 and 1, e.g. 0.75"


def _check_positive(value: float) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _check_validity(value: int) -> str | None:
    # Twilio accepts ValidityPeriod from 1 to 36000 seconds.
    return None if 1 <= value <= 36000 else "must be between 1 and 36000 seconds"


def _check_window(value: str) -> str | None:
    match = re.fullmatch(r"(\d{2}):(\d{2})-(\d{2}):(\d{2})", value)
    if not match:
        return "must be HH:MM-HH:MM, e.g. 09:00-18:00"
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h1, m1) >= (h2, m2):
        return "must be a window that opens before it closes, within one day"
    return None


def _check_iso_date(value: str) -> str | None:
    try:
        date.fromisoformat(value)
    except ValueError:
        return "must be an ISO date, e.g. 2026-12-01"
    return None


def _setting(default: Any, *, choices: tuple[Any, ...] = (), check: Any = None, **kw: Any) -> Any:
    """A dataclass field carrying its allowed values for validation and messages."""
    meta = {"choices": choices, "check": check}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = "sqlite:///var/supportline.db"


@dataclass(frozen=True)
class SmtpSettings:
    listen: str = _setting("127.0.0.1:2525", check=_check_listen)
    domains: tuple[str, ...] = ("support.example.com",)
    max_message_bytes: int = _setting(26_214_400, check=_check_positive)


@dataclass(frozen=True)
class HttpSettings:
    listen: str = _setting("127.0.0.1:8025", check=_check_listen)
    public_url: str = "http://127.0.0.1:8025"


@dataclass(frozen=True)
class ImapMailbox:
    host: str = "127.0.0.1"
    port: int = 993
    ssl: bool = True
    username: str = ""
    password: str = ""
    folder: str = "INBOX"
    processed_folder: str = "Processed"


@dataclass(frozen=True)
class ImapSettings:
    mailboxes: tuple[ImapMailbox, ...] = ()


@dataclass(frozen=True)
class EmailSettings:
    transport: str = _setting("maildir", choices=("maildir", "smtp"))
    from_: str = "Support <support@support.example.com>"
    maildir: str = "var/outbox"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_username: str = ""
    smtp_password: str = ""
    starttls: bool = False
    auto_replies_per_sender_per_hour: int = _setting(5, check=_check_positive)
    # Notifier (issue 4): the relay's socket timeout, and implicit TLS (port 465) instead
    # of STARTTLS.
    smtp_timeout: float = _setting(30, check=_check_positive)
    smtp_ssl: bool = False

    @cached_property
    def from_address(self) -> str:
        """The addr-spec of ``from_``: "support@support.example.com"."""
        return parseaddr(self.from_)[1]

    @cached_property
    def from_domain(self) -> str:
        """The domain of ``from_``: the right-hand side of our Message-IDs."""
        return self.from_address.rpartition("@")[2] or "localhost"


@dataclass(frozen=True)
class SmsSettings:
    transport: str = _setting("log", choices=("log", "twilio"))
    log_file: str = "var/sms.log"
    twilio_account_sid: str = ""
    twilio_auth_token: str = ""
    twilio_previous_auth_token: str = ""  # still accepted on webhooks during a rotation
    twilio_from: str = ""
    twilio_messaging_service_sid: str = ""
    twilio_api_url: str = "https://api.twilio.com"
    # A customer's text joins their most recent open ticket updated within this many days.
    thread_window_days: int = _setting(14, check=_check_positive)
    # Acknowledgements one number may get in an hour (two auto-responders, or a number
    # texting in a loop, RFC 3834 §2 as for mail); email has its own limit.
    auto_replies_per_number_per_hour: int = _setting(5, check=_check_positive)
    # Notifier (issue 4). The client has no HTTP timeout of its own; empty callback URL
    # means <http.public_url>/twilio/status.
    twilio_timeout: float = _setting(10, check=_check_positive)
    twilio_status_callback_url: str = ""
    reminder_validity_seconds: int = _setting(3600, check=_check_validity)
    max_segments: int = _setting(3, check=_check_positive)
    unreachable_attempts: int = _setting(3, check=_check_positive)  # Twilio 30003


@dataclass(frozen=True)
class NotifierSettings:
    """The outbox dispatcher (issue 4): polling, leases, retries, dead letters, templates."""

    poll_seconds: float = _setting(1.0, check=_check_positive)
    batch_size: int = _setting(50, check=_check_positive)
    lease_seconds: int = _setting(120, check=_check_positive)
    max_attempts: int = _setting(8, check=_check_positive)
    backoff_base_seconds: float = _setting(30, check=_check_positive)
    backoff_max_seconds: float = _setting(3600, check=_check_positive)
    operations_email: str = ""  # dead letters and configuration errors are mailed here
    templates_dir: str = ""  # a folder whose templates win over the shipped ones


@dataclass(frozen=True)
class SecuritySettings:
    # Empty: the service generates one on first run and keeps it in the database.
    reply_token_key: str = ""


@dataclass(frozen=True)
class ClockSettings:
    """Spans of the policy's clocks, business hours unless the name says otherwise."""

    triage_hours: float = _setting(1, check=_check_positive)
    handling_hours: float = _setting(4, check=_check_positive)
    phone_handling_hours: float = _setting(4, check=_check_positive)
    confirmation_business_days: int = _setting(1, check=_check_positive)
    callback_days: int = _setting(3, check=_check_positive)
    checkin_window: str = _setting("08:00-20:00", check=_check_window)
    checkin_grace_minutes: int = _setting(60, check=_check_positive)
    supervisor_reply_hours: float = _setting(2, check=_check_positive)


@dataclass(frozen=True)
class PolicySettings:
    working_hours: tuple[str, ...] = _setting(("09:00-18:00",), check=_check_window)
    working_days: tuple[str, ...] = _setting(
        ("mon", "tue", "wed", "thu", "fri"),
        choices=("mon", "tue", "wed", "thu", "fri", "sat", "sun"),
    )
    holidays: str = "CN"
    extra_days_off: tuple[str, ...] = _setting((), check=_check_iso_date)
    extra_working_days: tuple[str, ...] = _setting((), check=_check_iso_date)
    warn_at: float = _setting(0.75, check=_check_share)
    clocks: ClockSettings = field(default_factory=ClockSettings)
    fault_types: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: dict(DEFAULT_FAULT_TYPES)
    )


@dataclass(frozen=True)
class Settings:
    timezone: str = _setting("Asia/Shanghai", check=_check_zone)
    language: str = _setting("zh-CN", choices=LANGUAGES)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    imap: ImapSettings = field(default_factory=ImapSettings)
    email: EmailSettings = field(default_factory=EmailSettings)
    sms: SmsSettings = field(default_factory=SmsSettings)
    notifier: NotifierSettings = field(default_factory=NotifierSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    policy: PolicySettings = field(default_factory=PolicySettings)


def load_settings(
    document: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Settings from a parsed TOML document, then ``SUPPORTLINE_<SECTION>_<KEY>`` overrides.

    >>> load_settings({"smtp": {"listen": "0.0.0.0:25"}}).smtp.listen
    '0.0.0.0:25'
    >>> load_settings({}, {"SUPPORTLINE_SMS_TWILIO_AUTH_TOKEN": "t"}).sms.twilio_auth_token
    't'
    """
    merged = _apply_environment(dict(document or {}), environ or {})
    return _build(Settings, merged, "")


def _toml_key(name: str) -> str:
    return name.rstrip("_")  # ``from_`` is spelled ``from`` in the file


def _apply_environment(document: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """Overlay environment variables on every scalar key the settings know."""
    for path, hint in _scalar_paths(Settings, ()):
        value = environ.get(ENV_PREFIX + "_".join(path).upper())
        if value is None:
            continue
        target = document
        for part in path[:-1]:
            section = target.get(part)
            target[part] = section = dict(section) if isinstance(section, Mapping) else {}
            target = section
        target[path[-1]] = _from_env_string(value, hint)
    return document


def _scalar_paths(cls: type, prefix: tuple[str, ...]) -> list[tuple[tuple[str, ...], Any]]:
    paths: list[tuple[tuple[str, ...], Any]] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        path = (*prefix, _toml_key(f.name))
        if dataclasses.is_dataclass(hint):
            paths.extend(_scalar_paths(typing.cast(type, hint), path))
        elif _is_scalar_or_list(hint):
            paths.append((path, hint))
    return paths


def _is_scalar_or_list(hint: Any) -> bool:
    if hint in (str, int, float, bool):
        return True
    item_hints = typing.get_args(hint)
    return typing.get_origin(hint) is tuple and not any(map(dataclasses.is_dataclass, item_hints))


def _from_env_string(value: str, hint: Any) -> Any:
    if hint is bool:
        return value.strip().lower() in ("1", "true", "yes", "on")
    if typing.get_origin(hint) is tuple:
        return [item.strip() for item in value.split(",") if item.strip()]
    return value  # numbers are converted (and checked) by _build


def _build(cls: type, data: Any, path: str) -> Any:
    where = path or "the top level"
    if not isinstance(data, Mapping):
        raise SettingsError(f"{where} must be a table of keys, got {data!r}")
    fields = {_toml_key(f.name): f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        allowed = ", ".join(sorted(fields))
        raise SettingsError(f"unknown key {_join(path, unknown[0])}; {where} allows: {allowed}")
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in data.items():
        f = fields[key]
        values[f.name] = _convert(hints[f.name], value, _join(path, key), f.metadata)
    return cls(**values)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _convert(hint: Any, value: Any, key: str, meta: Mapping[str, Any]) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _build(typing.cast(type, hint), value, key)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise SettingsError(f"{key} must be a list, got {value!r}")
        item_hint = args[0]
        if dataclasses.is_dataclass(item_hint):
            return tuple(
                _build(typing.cast(type, item_hint), v, f"{key}[{i}]") for i, v in enumerate(value)
            )
        return tuple(_convert(item_hint, v, key, meta) for v in value)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise SettingsError(f"{key} must be a table, got {value!r}")
        return {str(k): _convert(args[1], v, f"{key}.{k}", {}) for k, v in value.items()}
    if origin in (types.UnionType, typing.Union):
        raise SettingsError(f"{key}: optional settings are not supported")  # pragma: no cover
    converted = _scalar(hint, value, key)
    choices = meta.get("choices") or ()
    if choices and converted not in choices:
        allowed = ", ".join(str(c) for c in choices)
        raise SettingsError(f"{key} = {value!r} is not allowed; choose one of: {allowed}")
    check: Callable[[Any], str | None] | None = meta.get("check")
    problem = check(converted) if check else None
    if problem:
        raise SettingsError(f"{key} = {value!r} {problem}")
    return converted


def _scalar(hint: Any, value: Any, key: str) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise SettingsError(f"{key} must be true or false, got {value!r}")
    if hint in (int, float):
        if isinstance(value, bool):
            raise SettingsError(f"{key} must be a number, got {value!r}")
        try:
            number = hint(value)
        except (TypeError, ValueError):
            raise SettingsError(f"{key} must be a number, got {value!r}") from None
        if hint is int and isinstance(value, float) and value != number:
            raise SettingsError(f"{key} must be a whole number, got {value!r}")
        return number
    if hint is str:
        if isinstance(value, str):
            return value
        raise SettingsError(f"{key} must be a string, got {value!r}")
    raise SettingsError(f"{key}: unsupported setting type {hint!r}")  # pragma: no cover
