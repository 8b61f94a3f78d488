"""What the intake works with, each named, built once at start-up (``build_intake``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session, sessionmaker

from gateway.bootstrap import Services, load_reply_key
from workflow.clock import Clock
from workflow.settings import EmailSettings, PolicySettings, SmsSettings

if TYPE_CHECKING:  # the public-holiday tables behind it take 9 MB; imported when built
    from workflow.calendar import BusinessCalendar


@dataclass(frozen=True)
class Intake:
    """The intake's collaborators: no getter behind them opens a transaction."""

    sessions: sessionmaker[Session]
    clock: Clock
    calendar: BusinessCalendar
    reply_key: bytes  # signs and checks reply addresses (parsers/reply_tokens.py)
    policy: PolicySettings
    email: EmailSettings
    sms: SmsSettings
    our_domains: frozenset[str]  # lower case: mail for these is ours, from these is ours
    language: str  # the department's, for a customer whose language nothing tells


def build_intake(services: Services) -> Intake:
    """The intake on this deployment's database and settings. Reads (or makes and
    stores) the reply-address key now, in a transaction of its own: made later, inside
    the intake's transaction, it would wait on SQLite for the lock that one holds."""
    settings = services.settings
    return Intake(
        sessions=services.sessions,
        clock=services.clock,
        calendar=services.calendar(),
        reply_key=load_reply_key(settings, services.sessions, services.clock),
        policy=settings.policy,
        email=settings.email,
        sms=settings.sms,
        our_domains=frozenset(domain.lower() for domain in settings.smtp.domains),
        language=settings.language,
    )
