"""The ticket's life (DESIGN.md "Ticket states") and what each step starts, stops, sends.

Every transition is a function of the facts and the time; it returns a ``Decision`` that
``storage.apply`` writes in one transaction. Nothing here reads the clock or touches I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from workflow.calendar import BusinessCalendar, warn_at
from workflow.settings import PolicySettings


class TicketState(StrEnum):
    NEW = "new"
    ACCEPTED = "accepted"
    ESCALATED = "escalated"  # passed to the supervisor/manager (§4.3.2)
    ASSIGNED = "assigned"  # routed to an engineer
    ONSITE = "onsite"  # a trip (§4.5)
    RETURNED = "returned"  # machine sent back to the factory (§4.4.4)
    WAITING_CUSTOMER = "waiting_customer"  # clocks paused
    RESOLVED = "resolved"
    CONFIRMED = "confirmed"  # by the supervisor/manager (§4.4.5)
    CLOSED = "closed"


class DeadlineKind(StrEnum):
    TRIAGE = "triage"  # §4.3.2: handle or pass to the supervisor within 1 hour
    HANDLING = "handling"  # §4.3.2 / §4.4.5: handled within 4 hours
    RECORD_TO_SUPERVISOR = "record_to_supervisor"  # §4.3.2: by the next day
    CONFIRMATION = "confirmation"  # §4.4.5: supervisor confirms
    TRIP_CHECKIN = "trip_checkin"  # §4.5.10 g): one SMS a day
    SUPERVISOR_REPLY = "supervisor_reply"  # §4.5.10 g): and a reply to it
    CALLBACK = "callback"  # §4.6: sales assistant calls back


@dataclass(frozen=True)
class StartDeadline:
    kind: DeadlineKind
    started_at: datetime
    due_at: datetime
    warn_at: datetime


@dataclass(frozen=True)
class Notification:
    """A message to send; ``key`` is unique within the ticket (the outbox idempotency key)."""

    key: str
    template: str
    channel: str  # email, sms
    recipient: str
    language: str
    context: Mapping[str, Any] = field(default_factory=dict)
    auto_submitted: bool = True


@dataclass(frozen=True)
class Decision:
    state: TicketState
    event: str
    start: tuple[StartDeadline, ...] = ()
    stop: tuple[DeadlineKind, ...] = ()
    notify: tuple[Notification, ...] = ()


def business_clock(
    kind: DeadlineKind,
    now: datetime,
    hours: float,
    calendar: BusinessCalendar,
    warn_share: float,
) -> StartDeadline:
    """A clock of ``hours`` business hours starting ``now``, warned at ``warn_share``."""
    due = calendar.add_business_time(now, timedelta(hours=hours))
    return StartDeadline(kind, now, due, warn_at(now, due, warn_share, calendar))


def open_ticket(
    now: datetime,
    calendar: BusinessCalendar,
    policy: PolicySettings,
    acknowledgement: Notification | None,
) -> Decision:
    """A request arrived: the intake record exists and the triage clock runs (§4.3.2).

    The first receiver must handle it or pass it to the supervisor within the triage
    span; the customer is acknowledged with the reference unless that is suppressed
    (automatic senders, rate limit, no address).
    """
    triage = business_clock(
        DeadlineKind.TRIAGE, now, policy.clocks.triage_hours, calendar, policy.warn_at
    )
    notify = (acknowledgement,) if acknowledgement else ()
    return Decision(TicketState.NEW, "ticket_opened", start=(triage,), notify=notify)


def customer_replied(state: TicketState) -> Decision:
    """The customer wrote on an existing ticket; a paused ticket is live again."""
    if state is TicketState.WAITING_CUSTOMER:
        return Decision(TicketState.ACCEPTED, "customer_replied")
    return Decision(state, "customer_replied")
