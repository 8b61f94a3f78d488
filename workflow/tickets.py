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


# -- staff transitions (the SMS issue; the email commands call the same functions) -------


class TransitionError(ValueError):
    """A transition the ticket's current state does not allow."""


# Which states each staff transition may start from. ``workflow.commands`` checks them
# first so the sender gets a reason; the functions below check again so that no
# caller can write an impossible history.
ACCEPT_FROM = frozenset({TicketState.NEW, TicketState.ESCALATED, TicketState.ASSIGNED})
ARRIVE_FROM = frozenset({TicketState.ACCEPTED, TicketState.ASSIGNED, TicketState.ONSITE})
# An engineer who solved an assigned ticket before accepting it still reports it done.
RESOLVE_FROM = frozenset({
    TicketState.ASSIGNED, TicketState.ACCEPTED, TicketState.ONSITE, TicketState.RETURNED,
    TicketState.WAITING_CUSTOMER,
})  # fmt: skip
ESCALATE_FROM = frozenset({
    TicketState.NEW, TicketState.ACCEPTED, TicketState.ASSIGNED, TicketState.ONSITE,
    TicketState.RETURNED, TicketState.WAITING_CUSTOMER,
})  # fmt: skip
ASSIGN_FROM = frozenset({
    TicketState.NEW, TicketState.ESCALATED, TicketState.ASSIGNED, TicketState.ACCEPTED,
    TicketState.WAITING_CUSTOMER,
})  # fmt: skip
CONFIRM_FROM = frozenset({TicketState.RESOLVED})


def _require(state: TicketState, allowed: frozenset[TicketState], action: str) -> None:
    if state not in allowed:
        raise TransitionError(f"cannot {action} a ticket that is {state.value}")


def ticket_accepted(
    state: TicketState,
    now: datetime,
    calendar: BusinessCalendar,
    policy: PolicySettings,
    notify: tuple[Notification, ...] = (),
) -> Decision:
    """An engineer took the ticket: triage is over and the handling clock runs (§4.3.2,
    §4.4.5). A handling clock left from an earlier engineer is stopped, not doubled."""
    _require(state, ACCEPT_FROM, "accept")
    handling = business_clock(
        DeadlineKind.HANDLING, now, policy.clocks.handling_hours, calendar, policy.warn_at
    )
    return Decision(
        TicketState.ACCEPTED,
        "ticket_accepted",
        start=(handling,),
        stop=(DeadlineKind.TRIAGE, DeadlineKind.HANDLING),
        notify=notify,
    )


def engineer_arrived(state: TicketState, notify: tuple[Notification, ...] = ()) -> Decision:
    """The engineer is on site (§4.5, on-site visits: first report to the supervisor)."""
    _require(state, ARRIVE_FROM, "record an arrival on")
    return Decision(TicketState.ONSITE, "engineer_arrived", notify=notify)


def ticket_resolved(
    state: TicketState,
    now: datetime,
    calendar: BusinessCalendar,
    policy: PolicySettings,
    notify: tuple[Notification, ...] = (),
) -> Decision:
    """The engineer reports it solved; the supervisor must confirm it (§4.4.5)."""
    _require(state, RESOLVE_FROM, "resolve")
    due = calendar.add_business_days(now, policy.clocks.confirmation_business_days)
    confirmation = StartDeadline(
        DeadlineKind.CONFIRMATION, now, due, warn_at(now, due, policy.warn_at, calendar)
    )
    return Decision(
        TicketState.RESOLVED,
        "ticket_resolved",
        start=(confirmation,),
        stop=(DeadlineKind.TRIAGE, DeadlineKind.HANDLING),
        notify=notify,
    )


def ticket_confirmed(state: TicketState, notify: tuple[Notification, ...] = ()) -> Decision:
    """The supervisor/manager confirmed the resolution (§4.4.5)."""
    _require(state, CONFIRM_FROM, "confirm")
    stop = (DeadlineKind.CONFIRMATION,)
    return Decision(TicketState.CONFIRMED, "ticket_confirmed", stop=stop, notify=notify)


def ticket_escalated(state: TicketState, notify: tuple[Notification, ...] = ()) -> Decision:
    """Passed up to the supervisor (§4.3.2): the engineer's handling clock stops, since
    reminding them of a ticket they handed back would only be noise."""
    _require(state, ESCALATE_FROM, "escalate")
    return Decision(
        TicketState.ESCALATED, "ticket_escalated", stop=(DeadlineKind.HANDLING,), notify=notify
    )


def ticket_assigned(state: TicketState, notify: tuple[Notification, ...] = ()) -> Decision:
    """The supervisor routed the ticket to an engineer (§4.3.2): triage is done; the
    handling clock starts again when the engineer accepts."""
    _require(state, ASSIGN_FROM, "assign")
    return Decision(
        TicketState.ASSIGNED,
        "ticket_assigned",
        stop=(DeadlineKind.TRIAGE, DeadlineKind.HANDLING),
        notify=notify,
    )
