"""Staff commands: who may do what, on which ticket, and what follows (the SMS issue).

Engineers and supervisors act by SMS (``parsers.sms_commands`` reads the text) and, in
the clocks issue, by email; both channels call the functions below, which decide and
never write. Each takes:

- an ``Inbound``: the sender (a ``StaffView``), the time, the channel, and a ``key``
  unique to the inbound message (e.g. ``"sms:1234"`` from ``inbound_messages.id``) from
  which every notification key is derived, so replaying the message sends nothing twice;
- ``Facts``: plain views of the rows the decision needs, loaded by the caller;
- ``Rules``: the business calendar and the policy settings;
- the command's own arguments, as plain values (this package imports nothing of
  ``parsers``);

and returns a ``CommandResult`` for ``storage`` to apply in one transaction:

- ``decision``: a ticket transition of ``workflow.tickets`` (state, deadlines, event, and
  ``notify`` — notifications about that ticket, whose keys are unique within it, as
  ``storage.apply.apply_decision`` expects);
- ``ticket_update``, ``trip_update``, ``checkin``, ``acknowledgement``: the other columns
  to write;
- ``reply`` (to the sender) and ``notify`` (check-in relays and acknowledgements, not
  bound to a ticket): notifications whose keys are already globally unique;
- or ``refusal``: why nothing changed, with a ``reply`` that says so. A sender is never
  left without an answer.

Which ticket a command without a reference means: the single ticket the command could
apply to among the sender's own (an engineer's assigned tickets for ACCEPT, their open
ones for DONE, their trips today for ARRIVED…). None is refused as ``no_ticket``, more
than one as ``ambiguous_ticket`` with the references to choose from.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any, Concatenate, ParamSpec
from zoneinfo import ZoneInfo

from workflow.calendar import BusinessCalendar
from workflow.roles import Role
from workflow.settings import PolicySettings
from workflow.tickets import (
    ACCEPT_FROM,
    ARRIVE_FROM,
    ASSIGN_FROM,
    CONFIRM_FROM,
    ESCALATE_FROM,
    RESOLVE_FROM,
    DeadlineKind,
    Decision,
    Notification,
    StartDeadline,
    TicketState,
    business_clock,
    engineer_arrived,
    ticket_accepted,
    ticket_assigned,
    ticket_confirmed,
    ticket_escalated,
    ticket_resolved,
)

# The brief of the SMS issue: only engineers act on their tickets and trips; only
# supervisors and managers acknowledge, assign and confirm.
ENGINEER_ROLES = frozenset({Role.ENGINEER.value})
SUPERVISOR_ROLES = frozenset({Role.SUPERVISOR.value, Role.MANAGER.value})
ENDED_TRIP_STATES = frozenset({"completed", "cancelled"})
LOCAL_FORMAT = "%Y-%m-%d %H:%M"

# -- what the caller hands in -------------------------------------------------------------


@dataclass(frozen=True)
class StaffView:
    id: int
    name: str
    role: str  # workflow.roles.Role values
    language: str  # zh-CN, en
    timezone: str = "Asia/Shanghai"
    phone: str | None = None  # E.164
    email: str | None = None
    supervisor_id: int | None = None


@dataclass(frozen=True)
class TicketView:
    id: int
    ref: str  # parsers.refs.format_ref(id); templates show it
    state: TicketState
    engineer_id: int | None = None
    supervisor_id: int | None = None
    owner_id: int | None = None
    language: str = "zh-CN"  # the customer's
    contact_phone: str | None = None
    contact_email: str | None = None


@dataclass(frozen=True)
class TripView:
    id: int
    ticket_id: int
    ticket_ref: str
    engineer_id: int
    supervisor_id: int | None
    starts_on: date  # in the engineer's timezone, both days included
    ends_on: date
    state: str = "planned"  # planned, onsite, completed, cancelled
    arrived_at: datetime | None = None


@dataclass(frozen=True)
class CheckInView:
    id: int
    trip_id: int
    ticket_id: int
    engineer_id: int
    local_date: date
    body: str
    relayed_to_id: int | None = None  # the supervisor it was relayed to
    acknowledged: bool = False


@dataclass(frozen=True)
class Facts:
    """What the caller loads for one inbound command.

    ``tickets``: the ticket the command's reference names (if it exists), the tickets of
    the trips below, and the open tickets on which the sender is engineer or supervisor.
    ``trips``: the sender's trips that have not ended. ``checkins``: the sender's own
    check-in of today (an engineer), or the unanswered relayed check-ins (a supervisor
    or manager). ``staff``: the active staff directory (a department is small: pass it
    all; names and supervisors are looked up in it).
    """

    tickets: tuple[TicketView, ...] = ()
    trips: tuple[TripView, ...] = ()
    checkins: tuple[CheckInView, ...] = ()
    staff: tuple[StaffView, ...] = ()

    def person(self, staff_id: int | None) -> StaffView | None:
        return next((s for s in self.staff if s.id == staff_id), None)

    def ticket(self, ticket_id: int) -> TicketView | None:
        return next((t for t in self.tickets if t.id == ticket_id), None)


@dataclass(frozen=True)
class Rules:
    calendar: BusinessCalendar
    policy: PolicySettings


@dataclass(frozen=True)
class Inbound:
    sender: StaffView
    now: datetime
    key: str  # unique per inbound message: "sms:<inbound id>"
    channel: str = "sms"  # where the reply goes: sms, email

    def __post_init__(self) -> None:
        if self.now.tzinfo is None or self.now.utcoffset() is None:
            raise ValueError("an inbound command needs an aware time")


# -- what comes back ----------------------------------------------------------------------


class Outcome(StrEnum):
    APPLIED = "applied"  # something changed
    REPLIED = "replied"  # nothing to change: usage, help
    REFUSED = "refused"  # the sender can fix it: see ``refusal``


class Refusal(StrEnum):
    WRONG_ROLE = "wrong_role"
    UNKNOWN_TICKET = "unknown_ticket"
    NO_TICKET = "no_ticket"
    AMBIGUOUS_TICKET = "ambiguous_ticket"
    NOT_YOURS = "not_yours"
    WRONG_STATE = "wrong_state"
    NOT_ON_TRIP = "not_on_trip"
    NO_TIME = "no_time"
    UNKNOWN_ENGINEER = "unknown_engineer"
    AMBIGUOUS_ENGINEER = "ambiguous_engineer"
    ALREADY_ASSIGNED = "already_assigned"
    NOTHING_TO_ACKNOWLEDGE = "nothing_to_acknowledge"


@dataclass(frozen=True)
class TicketUpdate:
    """Ticket columns to set besides the state; None leaves a column as it is."""

    engineer_id: int | None = None
    supervisor_id: int | None = None
    owner_id: int | None = None
    resolved_at: datetime | None = None
    confirmed_at: datetime | None = None
    note: str | None = None  # for the ticket's thread: a summary, a reason


@dataclass(frozen=True)
class TripUpdate:
    """Trip columns to set; None leaves a column as it is."""

    trip_id: int
    state: str | None = None
    eta: datetime | None = None
    arrived_at: datetime | None = None
    completed_at: datetime | None = None
    report: str | None = None


@dataclass(frozen=True)
class CheckInWrite:
    """The engineer's check-in row for ``local_date`` (one per engineer and day): insert
    it, or update ``checkin_id``. Either way its acknowledgement is cleared, because the
    supervisor has new text to answer; open ``meets`` deadlines of the trip are met and
    ``reply_clock`` (the supervisor's) starts on the row."""

    checkin_id: int | None
    trip_id: int
    engineer_id: int
    local_date: date
    body: str  # the whole day's text, this message appended
    received_at: datetime
    relayed_to_id: int | None
    relayed_at: datetime | None
    reply_clock: StartDeadline | None
    meets: tuple[DeadlineKind, ...] = (DeadlineKind.TRIP_CHECKIN,)


@dataclass(frozen=True)
class Acknowledgement:
    """Check-ins answered: set ``acknowledged_at``/``acknowledged_by_id``; their open
    ``stops`` deadlines are met."""

    checkin_ids: tuple[int, ...]
    by_id: int
    at: datetime
    stops: tuple[DeadlineKind, ...] = (DeadlineKind.SUPERVISOR_REPLY,)


@dataclass(frozen=True)
class CommandResult:
    outcome: Outcome
    reply: Notification | None = None
    refusal: Refusal | None = None
    ticket_id: int | None = None
    decision: Decision | None = None
    ticket_update: TicketUpdate | None = None
    trip_update: TripUpdate | None = None
    checkin: CheckInWrite | None = None
    acknowledgement: Acknowledgement | None = None
    notify: tuple[Notification, ...] = ()


# -- small helpers ------------------------------------------------------------------------


def local_date(at: datetime, timezone: str) -> date:
    """The calendar date of ``at`` where the person is.

    >>> local_date(datetime(2026, 11, 27, 15, 30, tzinfo=UTC), "Asia/Shanghai")
    datetime.date(2026, 11, 27)
    >>> local_date(datetime(2026, 11, 27, 16, 30, tzinfo=UTC), "Asia/Shanghai")
    datetime.date(2026, 11, 28)
    """
    return at.astimezone(ZoneInfo(timezone)).date()


def _local_text(at: datetime, timezone: str) -> str:
    return at.astimezone(ZoneInfo(timezone)).strftime(LOCAL_FORMAT)


def resolve_eta(
    now: datetime,
    timezone: str,
    at: tuple[int | None, int, int] | None,
    after: timedelta | None = None,
) -> datetime | None:
    """The instant (UTC) an ETA names: a delay from ``now``, or a wall-clock time
    ``(day_offset, hour, minute)`` in ``timezone``.

    Without a day, the time is the occurrence nearest to ``now``: "ETA 9:00" sent at
    22:00 means tomorrow, "ETA 14:30" sent at 14:35 (a little late) means today.

    >>> now = datetime(2026, 11, 27, 14, 0, tzinfo=UTC)  # 22:00 in Shanghai
    >>> resolve_eta(now, "Asia/Shanghai", (None, 9, 0)).isoformat()
    '2026-11-28T01:00:00+00:00'
    >>> resolve_eta(now, "Asia/Shanghai", (0, 23, 30)).isoformat()
    '2026-11-27T15:30:00+00:00'
    >>> resolve_eta(now, "Asia/Shanghai", None, timedelta(hours=2)).isoformat()
    '2026-11-27T16:00:00+00:00'
    """
    if after is not None:
        return (now + after).astimezone(UTC)
    if at is None:
        return None
    day_offset, hour, minute = at
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        return None  # an email command may carry what the SMS parser would have rejected
    zone = ZoneInfo(timezone)
    today = now.astimezone(zone).date()

    def on(offset: int) -> datetime:
        moment = datetime.combine(today + timedelta(days=offset), time(hour, minute), zone)
        return moment.astimezone(UTC)

    if day_offset is not None:
        return on(day_offset)
    return min((on(-1), on(0), on(1)), key=lambda moment: abs(moment - now))


def _fold_name(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).casefold().split())


def _named(text: str, people: Collection[StaffView]) -> StaffView | None:
    """The person whose name ``text`` starts with (the longest such name), or None.

    >>> wang = StaffView(1, "王强", "engineer", "zh-CN")
    >>> _named("王强 辛苦了", [wang]).name, _named("辛苦了", [wang])
    ('王强', None)
    """
    folded = _fold_name(text)
    matches = [p for p in people if _fold_name(p.name) and folded.startswith(_fold_name(p.name))]
    return max(matches, key=lambda p: len(_fold_name(p.name)), default=None)


def _after_name(text: str, name: str) -> str:
    """What follows ``name`` at the start of ``text``, however either was typed.

    >>> _after_name("Ｗａｎｇ  Qiang, thanks", "Wang Qiang")
    ', thanks'
    """
    wanted = _fold_name(name)
    for end in range(len(text) + 1):
        if _fold_name(text[:end]) == wanted:
            return text[end:]
    return ""


def _to_staff(
    person: StaffView | None,
    key: str,
    template: str,
    context: Mapping[str, Any],
    channel: str = "sms",
) -> Notification | None:
    """A notification to a colleague on ``channel``, or on the other one if that is all
    we have for them; None when there is no one or we cannot reach them at all."""
    if person is None:
        return None
    addresses = {"sms": person.phone, "email": person.email}
    for ch in (channel, *(c for c in addresses if c != channel)):
        if addresses[ch]:
            return Notification(
                key, template, ch, str(addresses[ch]), person.language, dict(context)
            )
    return None


def _reply(inbound: Inbound, template: str, context: Mapping[str, Any]) -> Notification | None:
    return _to_staff(inbound.sender, f"{inbound.key}:reply", template, context, inbound.channel)


def _some(*notes: Notification | None) -> tuple[Notification, ...]:
    return tuple(note for note in notes if note is not None)


def _supervisor_of(facts: Facts, sender: StaffView, *candidates: int | None) -> StaffView | None:
    """The first known person among ``candidates``, else the sender's own supervisor."""
    for staff_id in (*candidates, sender.supervisor_id):
        person = facts.person(staff_id)
        if person is not None:
            return person
    return None


# -- refusals -----------------------------------------------------------------------------


class _Refused(Exception):
    def __init__(self, reason: Refusal, ticket_id: int | None = None, **context: Any) -> None:
        super().__init__(reason.value)
        self.reason, self.ticket_id, self.context = reason, ticket_id, context


P = ParamSpec("P")
Handler = Callable[Concatenate[Inbound, P], CommandResult]


def _command(name: str) -> Callable[[Handler[P]], Handler[P]]:
    """Turns a ``_Refused`` raised anywhere in a handler into a refusal reply naming the
    command, so each rule is one line where it applies."""

    def wrap(handler: Handler[P]) -> Handler[P]:
        @functools.wraps(handler)
        def run(inbound: Inbound, /, *args: P.args, **kwargs: P.kwargs) -> CommandResult:
            try:
                return handler(inbound, *args, **kwargs)
            except _Refused as refused:
                context = {"command": name, "reason": refused.reason.value, **refused.context}
                return CommandResult(
                    Outcome.REFUSED,
                    reply=_reply(inbound, "sms_refused", context),
                    refusal=refused.reason,
                    ticket_id=refused.ticket_id,
                )

        return run

    return wrap


def _require_role(sender: StaffView, roles: frozenset[str]) -> None:
    if sender.role not in roles:
        raise _Refused(Refusal.WRONG_ROLE, role=sender.role)


def _require_state(ticket: TicketView, allowed: frozenset[TicketState]) -> None:
    if ticket.state not in allowed:
        raise _Refused(Refusal.WRONG_STATE, ticket.id, ref=ticket.ref, state=ticket.state.value)


def _require_engineer_on(ticket: TicketView, sender: StaffView) -> None:
    if ticket.engineer_id != sender.id:
        raise _Refused(Refusal.NOT_YOURS, ticket.id, ref=ticket.ref)


def _require_supervisor_of(ticket: TicketView, sender: StaffView) -> None:
    # A manager may act on any ticket; a supervisor on their own or unclaimed ones.
    if sender.role == Role.SUPERVISOR and ticket.supervisor_id not in (None, sender.id):
        raise _Refused(Refusal.NOT_YOURS, ticket.id, ref=ticket.ref)


def _pick_ticket(
    ticket_id: int | None, facts: Facts, implied: Callable[[TicketView], bool]
) -> TicketView:
    """The named ticket, or the only one ``implied`` by the command and the sender."""
    if ticket_id is not None:
        ticket = facts.ticket(ticket_id)
        if ticket is None:
            raise _Refused(Refusal.UNKNOWN_TICKET, ticket_id)
        return ticket
    candidates = {t.id: t for t in facts.tickets if implied(t)}
    if len(candidates) == 1:
        return next(iter(candidates.values()))
    if not candidates:
        raise _Refused(Refusal.NO_TICKET)
    raise _Refused(Refusal.AMBIGUOUS_TICKET, refs=[candidates[i].ref for i in sorted(candidates)])


def trips_today(engineer: StaffView, trips: Collection[TripView], now: datetime) -> list[TripView]:
    """The engineer's trips that have not ended and include today, in their timezone,
    earliest first."""
    today = local_date(now, engineer.timezone)
    return sorted(
        (
            trip
            for trip in trips
            if trip.engineer_id == engineer.id
            and trip.state not in ENDED_TRIP_STATES
            and trip.starts_on <= today <= trip.ends_on
        ),
        key=lambda trip: (trip.starts_on, trip.id),
    )


def _pick_trip(
    ticket_id: int | None, inbound: Inbound, facts: Facts, implied: list[TripView]
) -> tuple[TripView, TicketView]:
    sender = inbound.sender
    if ticket_id is not None:
        trips = [
            trip
            for trip in facts.trips
            if trip.ticket_id == ticket_id
            and trip.engineer_id == sender.id
            and trip.state not in ENDED_TRIP_STATES
        ]
        if not trips:
            named = _pick_ticket(ticket_id, facts, lambda t: False)
            _require_engineer_on(named, sender)
            raise _Refused(Refusal.NOT_ON_TRIP, ticket_id, ref=named.ref)
        trip = min(trips, key=lambda t: (t.starts_on, t.id))
    elif len(implied) == 1:
        trip = implied[0]
    elif not implied:
        raise _Refused(Refusal.NOT_ON_TRIP)
    else:
        raise _Refused(Refusal.AMBIGUOUS_TICKET, refs=sorted({t.ticket_ref for t in implied}))
    ticket = facts.ticket(trip.ticket_id)
    if ticket is None:
        raise _Refused(Refusal.UNKNOWN_TICKET, trip.ticket_id)
    return trip, ticket


# -- engineers ----------------------------------------------------------------------------


@_command("accept")
def accept_ticket(
    inbound: Inbound, facts: Facts, rules: Rules, ticket_id: int | None
) -> CommandResult:
    """ACCEPT/接单: the engineer takes a new, escalated or assigned-to-them ticket; triage
    stops, the handling clock starts (§4.3.2, §4.4.5)."""
    me = inbound.sender
    _require_role(me, ENGINEER_ROLES)
    ticket = _pick_ticket(
        ticket_id,
        facts,
        lambda t: t.state is TicketState.ASSIGNED and t.engineer_id == me.id,
    )
    if ticket.state is TicketState.ASSIGNED and ticket.engineer_id not in (None, me.id):
        raise _Refused(Refusal.NOT_YOURS, ticket.id, ref=ticket.ref)
    _require_state(ticket, ACCEPT_FROM)
    decision = ticket_accepted(ticket.state, inbound.now, rules.calendar, rules.policy)
    due = decision.start[0].due_at
    reply = _reply(
        inbound,
        "sms_reply_accepted",
        {"ref": ticket.ref, "due_at": due.isoformat(), "due_local": _local_text(due, me.timezone)},
    )
    return CommandResult(
        Outcome.APPLIED,
        reply=reply,
        ticket_id=ticket.id,
        decision=decision,
        # Whoever takes a ticket nobody owned yet is its first receiver (第一受理人).
        ticket_update=TicketUpdate(
            engineer_id=me.id, owner_id=me.id if ticket.owner_id is None else None
        ),
    )


@_command("arrived")
def record_arrival(
    inbound: Inbound, facts: Facts, rules: Rules, ticket_id: int | None, note: str = ""
) -> CommandResult:
    """ARRIVED/到达: the engineer is on site; the supervisor hears first (§4.5 item 9).

    Every arrival is relayed (on a trip of several days the engineer arrives each
    morning); the trip keeps the first arrival time."""
    me, now = inbound.sender, inbound.now
    _require_role(me, ENGINEER_ROLES)
    trip, ticket = _pick_trip(ticket_id, inbound, facts, trips_today(me, facts.trips, now))
    _require_engineer_on(ticket, me)
    _require_state(ticket, ARRIVE_FROM)
    supervisor = _supervisor_of(facts, me, trip.supervisor_id, ticket.supervisor_id)
    relay = _to_staff(
        supervisor,
        f"{inbound.key}:arrival",
        "arrival_relay",
        {
            "ref": ticket.ref,
            "engineer_name": me.name,
            "at_local": _local_text(now, me.timezone),
            "note": note,
        },
    )
    return CommandResult(
        Outcome.APPLIED,
        reply=_reply(inbound, "sms_reply_arrived", {"ref": ticket.ref}),
        ticket_id=ticket.id,
        decision=engineer_arrived(ticket.state, notify=_some(relay)),
        trip_update=TripUpdate(
            trip.id, state="onsite", arrived_at=now if trip.arrived_at is None else None
        ),
    )


@_command("eta")
def report_eta(
    inbound: Inbound,
    facts: Facts,
    rules: Rules,
    ticket_id: int | None,
    when_text: str,
    at: tuple[int | None, int, int] | None,
    after: timedelta | None = None,
) -> CommandResult:
    """ETA/预计: when the engineer expects to arrive; the customer is told (§4.5 item 8)."""
    me, now = inbound.sender, inbound.now
    _require_role(me, ENGINEER_ROLES)
    today = local_date(now, me.timezone)
    # An ETA is usually sent the day before or on the way: any trip not yet reached.
    upcoming = sorted(
        (
            trip
            for trip in facts.trips
            if trip.engineer_id == me.id
            and trip.state not in ENDED_TRIP_STATES
            and trip.arrived_at is None
            and trip.ends_on >= today
        ),
        key=lambda trip: (trip.starts_on, trip.id),
    )
    trip, ticket = _pick_trip(ticket_id, inbound, facts, upcoming)
    _require_engineer_on(ticket, me)
    eta = resolve_eta(now, me.timezone, at, after)
    if eta is None:
        raise _Refused(Refusal.NO_TIME, ticket.id, ref=ticket.ref, when_text=when_text)
    eta_local = _local_text(eta, me.timezone)
    context = {"ref": ticket.ref, "eta_at": eta.isoformat(), "eta_local": eta_local}
    to_customer = None
    if ticket.contact_phone or ticket.contact_email:
        channel, address = (
            ("sms", ticket.contact_phone)
            if ticket.contact_phone
            else ("email", ticket.contact_email)
        )
        to_customer = Notification(
            f"{inbound.key}:eta",
            "eta_to_customer",
            channel,
            str(address),
            ticket.language,
            {**context, "engineer_name": me.name},
        )
    return CommandResult(
        Outcome.APPLIED,
        reply=_reply(inbound, "sms_reply_eta", context),
        ticket_id=ticket.id,
        decision=Decision(ticket.state, "eta_reported", notify=_some(to_customer)),
        trip_update=TripUpdate(trip.id, eta=eta),
    )


@_command("done")
def resolve_ticket(
    inbound: Inbound, facts: Facts, rules: Rules, ticket_id: int | None, summary: str
) -> CommandResult:
    """DONE/完成: solved; the handling clock stops and the supervisor's confirmation
    clock starts (§4.4.5); the supervisor hears the result (§4.5 item 12)."""
    me, now = inbound.sender, inbound.now
    _require_role(me, ENGINEER_ROLES)
    ticket = _pick_ticket(
        ticket_id, facts, lambda t: t.engineer_id == me.id and t.state in RESOLVE_FROM
    )
    _require_engineer_on(ticket, me)
    _require_state(ticket, RESOLVE_FROM)
    supervisor = _supervisor_of(facts, me, ticket.supervisor_id)
    context = {"ref": ticket.ref, "engineer_name": me.name, "summary": summary}
    to_supervisor = _to_staff(supervisor, f"{inbound.key}:resolved", "ticket_resolved", context)
    decision = ticket_resolved(
        ticket.state, now, rules.calendar, rules.policy, notify=_some(to_supervisor)
    )
    trip = next(
        (
            t
            for t in facts.trips
            if t.ticket_id == ticket.id
            and t.engineer_id == me.id
            and t.state not in ENDED_TRIP_STATES
        ),
        None,
    )
    return CommandResult(
        Outcome.APPLIED,
        reply=_reply(inbound, "sms_reply_done", {"ref": ticket.ref}),
        ticket_id=ticket.id,
        decision=decision,
        ticket_update=TicketUpdate(resolved_at=now, note=summary or None),
        trip_update=(
            TripUpdate(trip.id, state="completed", completed_at=now, report=summary or None)
            if trip
            else None
        ),
    )


@_command("escalate")
def escalate_ticket(
    inbound: Inbound, facts: Facts, rules: Rules, ticket_id: int | None, reason: str
) -> CommandResult:
    """ESCALATE/上报: passed up to the supervisor (§4.3.2), who is told why."""
    me = inbound.sender
    _require_role(me, ENGINEER_ROLES)
    ticket = _pick_ticket(
        ticket_id, facts, lambda t: t.engineer_id == me.id and t.state in ESCALATE_FROM
    )
    _require_engineer_on(ticket, me)
    _require_state(ticket, ESCALATE_FROM)
    supervisor = _supervisor_of(facts, me, ticket.supervisor_id)
    to_supervisor = _to_staff(
        supervisor,
        f"{inbound.key}:escalated",
        "ticket_escalated",
        {"ref": ticket.ref, "engineer_name": me.name, "reason": reason},
    )
    return CommandResult(
        Outcome.APPLIED,
        reply=_reply(
            inbound,
            "sms_reply_escalated",
            {"ref": ticket.ref, "supervisor_name": supervisor.name if supervisor else ""},
        ),
        ticket_id=ticket.id,
        decision=ticket_escalated(ticket.state, notify=_some(to_supervisor)),
        ticket_update=TicketUpdate(
            supervisor_id=supervisor.id if supervisor and ticket.supervisor_id is None else None,
            note=reason or None,
        ),
    )


@_command("checkin")
def record_checkin(inbound: Inbound, facts: Facts, rules: Rules, text: str) -> CommandResult:
    """CHECKIN/签到, or free text on a trip: the day's check-in, relayed to the
    supervisor, whose reply is then due (§4.5.10 g).

    The day is the engineer's local date. A second message the same day is appended to
    that day's check-in and relayed too, so the supervisor sees the news."""
    me, now = inbound.sender, inbound.now
    _require_role(me, ENGINEER_ROLES)
    trips = trips_today(me, facts.trips, now)
    if not trips:
        raise _Refused(Refusal.NOT_ON_TRIP)
    # A check-in is the engineer's day, not a ticket's: with two trips on one day (rare)
    # it hangs on the earliest.
    trip = trips[0]
    today = local_date(now, me.timezone)
    existing = next(
        (c for c in facts.checkins if c.engineer_id == me.id and c.local_date == today), None
    )
    body = "\n".join(part for part in (existing.body if existing else "", text.strip()) if part)
    supervisor = _supervisor_of(facts, me, trip.supervisor_id)
    relay = _to_staff(
        supervisor,
        f"{inbound.key}:checkin-relay",
        "checkin_relay",
        {
            "engineer_name": me.name,
            "ref": trip.ticket_ref,
            "local_date": today.isoformat(),
            "text": text.strip(),
            "update": existing is not None,
        },
    )
    policy = rules.policy
    reply_clock = (
        business_clock(
            DeadlineKind.SUPERVISOR_REPLY,
            now,
            policy.clocks.supervisor_reply_hours,
            rules.calendar,
            policy.warn_at,
        )
        if relay
        else None
    )
    checkin = CheckInWrite(
        checkin_id=existing.id if existing else None,
        trip_id=trip.id,
        engineer_id=me.id,
        local_date=today,
        body=body,
        received_at=now,
        relayed_to_id=supervisor.id if relay and supervisor else None,
        relayed_at=now if relay else None,
        reply_clock=reply_clock,
    )
    reply = _reply(
        inbound,
        "sms_reply_checkin",
        {
            "local_date": today.isoformat(),
            "ref": trip.ticket_ref,
            "supervisor_name": supervisor.name if relay and supervisor else "",
        },
    )
    return CommandResult(
        Outcome.APPLIED,
        reply=reply,
        ticket_id=trip.ticket_id,
        checkin=checkin,
        notify=_some(relay),
    )


# -- supervisors and managers -------------------------------------------------------------


@_command("ack")
def acknowledge_checkins(
    inbound: Inbound, facts: Facts, rules: Rules, ticket_id: int | None, target: str = ""
) -> CommandResult:
    """OK/收到: answers every check-in relayed to the sender that is still unanswered;
    "OK 王强" only that engineer's, "OK SL-42" only that ticket's. Each engineer is told.

    Text after the verb that does not start with an engineer's name is a remark
    ("收到，辛苦了"), passed on to the engineers, not a filter. A manager naming an
    engineer or a ticket may answer check-ins relayed to someone else."""
    me, now = inbound.sender, inbound.now
    _require_role(me, SUPERVISOR_ROLES)
    unanswered = [c for c in facts.checkins if not c.acknowledged and c.relayed_to_id]
    mine = [c for c in unanswered if c.relayed_to_id == me.id]
    reachable = unanswered if me.role == Role.MANAGER else mine
    engineers = [s for s in facts.staff if s.role in ENGINEER_ROLES]
    named = None if ticket_id is not None else _named(target, engineers)
    remark = target
    if ticket_id is not None:
        scope = [c for c in reachable if c.ticket_id == ticket_id]
    elif named is not None:
        scope = [c for c in reachable if c.engineer_id == named.id]
        remark = _after_name(target, named.name)
    else:
        scope = mine
    remark = remark.strip(" ,，:：;；、")
    if not scope:
        raise _Refused(
            Refusal.NOTHING_TO_ACKNOWLEDGE,
            ticket_id,
            engineer_name=named.name if named else "",
        )
    notify: list[Notification] = []
    by_engineer: dict[int, list[CheckInView]] = {}
    for checkin in sorted(scope, key=lambda c: (c.local_date, c.id)):
        by_engineer.setdefault(checkin.engineer_id, []).append(checkin)
    names = []
    for engineer_id, checkins in by_engineer.items():
        engineer = facts.person(engineer_id)
        if engineer is None:
            continue
        names.append(engineer.name)
        note = _to_staff(
            engineer,
            f"{inbound.key}:checkin-ack:{engineer_id}",
            "checkin_acknowledged",
            {
                "supervisor_name": me.name,
                "dates": [c.local_date.isoformat() for c in checkins],
                "remark": remark,
            },
        )
        notify.extend(_some(note))
    return CommandResult(
        Outcome.APPLIED,
        reply=_reply(inbound, "sms_reply_acknowledged", {"count": len(scope), "engineers": names}),
        ticket_id=ticket_id,
        acknowledgement=Acknowledgement(tuple(sorted(c.id for c in scope)), me.id, now),
        notify=tuple(notify),
    )


def _find_engineer(facts: Facts, name: str, phone: str | None) -> StaffView:
    engineers = [s for s in facts.staff if s.role in ENGINEER_ROLES]
    if phone:
        by_phone = [s for s in engineers if s.phone == phone]
        if by_phone:
            return by_phone[0]
    wanted = _fold_name(name)
    if not wanted:
        raise _Refused(Refusal.UNKNOWN_ENGINEER, engineer=name)
    exact = [s for s in engineers if _fold_name(s.name) == wanted]
    # "派 SL-42 王" is fine when only one engineer's name starts so.
    found = exact or [s for s in engineers if _fold_name(s.name).startswith(wanted)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise _Refused(Refusal.UNKNOWN_ENGINEER, engineer=name)
    raise _Refused(Refusal.AMBIGUOUS_ENGINEER, engineer=name, names=[s.name for s in found])


@_command("assign")
def assign_ticket(
    inbound: Inbound,
    facts: Facts,
    rules: Rules,
    ticket_id: int | None,
    engineer: str,
    engineer_phone: str | None = None,
) -> CommandResult:
    """ASSIGN/派: the supervisor routes the ticket to an engineer (§4.3.2), who is told."""
    me = inbound.sender
    _require_role(me, SUPERVISOR_ROLES)
    ticket = _pick_ticket(
        ticket_id,
        facts,
        lambda t: t.supervisor_id == me.id and t.state in (TicketState.NEW, TicketState.ESCALATED),
    )
    _require_supervisor_of(ticket, me)
    _require_state(ticket, ASSIGN_FROM)
    target = _find_engineer(facts, engineer, engineer_phone)
    if ticket.engineer_id == target.id and ticket.state in (
        TicketState.ASSIGNED,
        TicketState.ACCEPTED,
    ):
        raise _Refused(
            Refusal.ALREADY_ASSIGNED, ticket.id, ref=ticket.ref, engineer_name=target.name
        )
    to_engineer = _to_staff(
        target,
        f"{inbound.key}:assigned:{target.id}",
        "ticket_assigned",
        {"ref": ticket.ref, "supervisor_name": me.name},
    )
    return CommandResult(
        Outcome.APPLIED,
        reply=_reply(
            inbound, "sms_reply_assigned", {"ref": ticket.ref, "engineer_name": target.name}
        ),
        ticket_id=ticket.id,
        decision=ticket_assigned(ticket.state, notify=_some(to_engineer)),
        ticket_update=TicketUpdate(
            engineer_id=target.id, supervisor_id=me.id if ticket.supervisor_id is None else None
        ),
    )


@_command("confirm")
def confirm_ticket(
    inbound: Inbound, facts: Facts, rules: Rules, ticket_id: int | None
) -> CommandResult:
    """CONFIRM/确认: the supervisor confirms a resolved ticket (§4.4.5)."""
    me = inbound.sender
    _require_role(me, SUPERVISOR_ROLES)
    ticket = _pick_ticket(
        ticket_id,
        facts,
        lambda t: t.supervisor_id == me.id and t.state is TicketState.RESOLVED,
    )
    _require_supervisor_of(ticket, me)
    _require_state(ticket, CONFIRM_FROM)
    return CommandResult(
        Outcome.APPLIED,
        reply=_reply(inbound, "sms_reply_confirmed", {"ref": ticket.ref}),
        ticket_id=ticket.id,
        decision=ticket_confirmed(ticket.state),
        ticket_update=TicketUpdate(confirmed_at=inbound.now),
    )


# -- help, free text, consent ------------------------------------------------------------


def usage_reply(inbound: Inbound, usage: str, *, unrecognised: bool = False) -> CommandResult:
    """HELP/帮助, or a message we could not read: the short usage for the sender's role
    (``parsers.sms_commands.usage_text``), never silence."""
    context = {"usage": usage, "role": inbound.sender.role, "unrecognised": unrecognised}
    return CommandResult(Outcome.REPLIED, reply=_reply(inbound, "sms_usage", context))


def unrecognised_text(
    inbound: Inbound, facts: Facts, rules: Rules, text: str, usage: str
) -> CommandResult:
    """Free text from staff: an engineer on a trip today is checking in (the policy asks
    for a daily SMS, not for a keyword); anyone else gets the usage."""
    sender = inbound.sender
    if sender.role in ENGINEER_ROLES and trips_today(sender, facts.trips, inbound.now):
        return record_checkin(inbound, facts, rules, text)
    return usage_reply(inbound, usage, unrecognised=True)


class SmsRoute(StrEnum):
    CONSENT = "consent"  # a carrier keyword: recorded, no ticket
    STAFF_COMMAND = "staff_command"
    CUSTOMER_MESSAGE = "customer_message"  # a new ticket or a message on one


def route_sms(*, sender_is_staff: bool, consent_keyword: bool) -> SmsRoute:
    """What an inbound SMS is. Carrier keywords first, from anyone; only a staff number
    sends commands, so a customer's "OK" is a message on their ticket.

    >>> route_sms(sender_is_staff=False, consent_keyword=False)
    <SmsRoute.CUSTOMER_MESSAGE: 'customer_message'>
    """
    if consent_keyword:
        return SmsRoute.CONSENT
    return SmsRoute.STAFF_COMMAND if sender_is_staff else SmsRoute.CUSTOMER_MESSAGE


@dataclass(frozen=True)
class ConsentChange:
    phone: str
    opted_out: bool
    keyword: str
    changed_at: datetime


@dataclass(frozen=True)
class ConsentResult:
    change: ConsentChange | None  # None for HELP: nothing to record
    reply: Notification | None


def consent_keyword(
    phone: str,
    kind: str,
    keyword: str,
    now: datetime,
    *,
    key: str,
    sender: StaffView | None = None,
    usage: str = "",
) -> ConsentResult:
    """STOP/退订/TD (``opt_out``), START (``opt_in``) or HELP (``help``) from ``phone``.

    The carrier (Twilio's opt-out handling) answers the keywords itself, so we add no
    reply, except the usage for a staff member's HELP, which is what they are after.
    """
    if kind == "help":
        reply = None
        if sender is not None:
            reply = usage_reply(Inbound(sender, now, key), usage).reply
        return ConsentResult(None, reply)
    if kind not in ("opt_out", "opt_in"):
        raise ValueError(f"unknown consent kind {kind!r}")
    return ConsentResult(ConsentChange(phone, kind == "opt_out", keyword, now), None)


def sms_or_email(note: Notification, opted_out: bool, email: str | None) -> Notification | None:
    """A notification as it may go out: an SMS to a number that opted out goes by email
    instead (or not at all, without an address); sending it would fail at the carrier.

    >>> note = Notification("k", "checkin_relay", "sms", "+8613800138000", "zh-CN")
    >>> sms_or_email(note, True, "li@example.com").channel
    'email'
    """
    if note.channel != "sms" or not opted_out:
        return note
    return replace(note, channel="email", recipient=email) if email else None
