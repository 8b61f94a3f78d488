"""Wire once: settings, engine, sessions and clock are built here and passed in."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from storage.db import create_db_engine
from storage.secrets import get_or_create_secret
from storage.uow import session_factory, unit_of_work
from workflow.clock import Clock
from workflow.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from notifier.dispatcher import Dispatcher
    from notifier.email_transport import EmailTransport
    from notifier.sms_transport import SmsTransport
    from workflow.calendar import BusinessCalendar

CONFIG_ENV = "SUPPORTLINE_CONFIG"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def system_clock() -> datetime:
    """The real time; the only place below the CLI where it is read."""
    return datetime.now(UTC)


def read_settings(config_path: str | None, environ: Mapping[str, str]) -> Settings:
    """Settings from the TOML file (if any) and the environment; SettingsError if wrong."""
    path = config_path or environ.get(CONFIG_ENV)
    document = {}
    if path:
        try:
            document = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SettingsError(f"configuration file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(f"configuration file {path} cannot be read: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"configuration file {path} is not valid TOML: {exc}") from None
    try:
        return load_settings(document, environ)
    except SettingsError as exc:
        where = f"{path}: " if path else ""
        raise SettingsError(f"{where}{exc}") from None


def load_reply_key(settings: Settings, sessions: sessionmaker[Session], clock: Clock) -> bytes:
    """The HMAC key of signed reply addresses: configured, else made once and stored.
    Call it once at start-up: it may commit a transaction of its own."""
    configured = settings.security.reply_token_key
    if configured:
        return configured.encode()
    with unit_of_work(sessions) as session:
        value = get_or_create_secret(session, "reply_token_key", clock())
        session.commit()
    return value.encode()


@dataclass
class Services:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    clock: Clock
    _calendar: BusinessCalendar | None = field(default=None, repr=False)
    _email_transport: EmailTransport | None = field(default=None, repr=False)
    _sms_transport: SmsTransport | None = field(default=None, repr=False)
    _dispatcher: Dispatcher | None = field(default=None, repr=False)

    def calendar(self) -> BusinessCalendar:
        if self._calendar is None:
            # Imported on first use: the public-holiday tables take 9 MB, and serve's
            # listener process never reads the calendar.
            from workflow.policy import business_calendar

            self._calendar = business_calendar(self.settings)
        return self._calendar

    # --- the notifier's transports: built once, on first use -----------------------------
    # The notifier (templates, the Twilio client) is imported on first use as well:
    # serve's listener process sends nothing.
    def email_transport(self) -> EmailTransport:
        if self._email_transport is None:
            from notifier.transports import build_email_transport

            self._email_transport = build_email_transport(self.settings)
        return self._email_transport

    def sms_transport(self) -> SmsTransport:
        if self._sms_transport is None:
            from notifier.transports import build_sms_transport

            self._sms_transport = build_sms_transport(self.settings, self.clock)
        return self._sms_transport

    def dispatcher(self) -> Dispatcher:
        """The outbox dispatcher on this deployment's transports (one per Services)."""
        if self._dispatcher is None:
            from notifier.dispatcher import Dispatcher
            from notifier.transports import build_renderer

            self._dispatcher = Dispatcher(
                self.sessions,
                self.settings,
                self.clock,
                build_renderer(self.settings),
                self.email_transport(),
                self.sms_transport(),
            )
        return self._dispatcher

    def close(self) -> None:
        for transport in (self._email_transport, self._sms_transport):
            if transport is not None:
                transport.close()
        self.engine.dispose()


def build_services(settings: Settings, clock: Clock) -> Services:
    engine = create_db_engine(settings.database.url)
    return Services(settings, engine, session_factory(engine), clock)
