"""What a staff command is handed and what it hands back, and the helpers all commands share.

Engineers and supervisors act by SMS (``parsers.sms_commands`` reads the text) and, in
the clocks issue, by email; both channels call the commands of ``workflow.commands``
(``tickets``, ``trips``, ``sms``), which decide and never write. Each takes:

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

Which ticket a command without a reference means (``pick_ticket``): the single ticket
the command could apply to among the sender's own (an engineer's assigned tickets for
ACCEPT, their open ones for DONE, their trips today for ARRIVED…). None is refused as
``no_ticket``, more than one as ``ambiguous_ticket`` with the references to choose from.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Concatenate, ParamSpec
from zoneinfo import ZoneInfo

from workflow.calendar import BusinessCalendar
from workflow.roles import Role
from workflow.settings import PolicySettings
from workflow.tickets import DeadlineKind, Decision, Notification, StartDeadline, TicketState

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


class CommandOutcome(StrEnum):
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
    outcome: CommandOutcome
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

    >>> from datetime import UTC
    >>> local_date(datetime(2026, 11, 27, 15, 30, tzinfo=UTC), "Asia/Shanghai")
    datetime.date(2026, 11, 27)
    >>> local_date(datetime(2026, 11, 27, 16, 30, tzinfo=UTC), "Asia/Shanghai")
    datetime.date(2026, 11, 28)
    """
    return at.astimezone(ZoneInfo(timezone)).date()


def local_time_text(at: datetime, timezone: str) -> str:
    """``at`` as the person reads it on their clock: ``2026-11-27 23:30``."""
    return at.astimezone(ZoneInfo(timezone)).strftime(LOCAL_FORMAT)


def fold_name(text: str) -> str:
    """A name as compared: NFKC, case-folded, without spaces (``Ｗａｎｇ Qiang`` is
    ``wangqiang``)."""
    return "".join(unicodedata.normalize("NFKC", text).casefold().split())


def person_named_at_start(text: str, people: Collection[StaffView]) -> StaffView | None:
    """The person whose name ``text`` starts with (the longest such name), or None.

    >>> wang = StaffView(1, "王强", "engineer", "zh-CN")
    >>> person_named_at_start("王强 辛苦了", [wang]).name
    '王强'
    >>> person_named_at_start("辛苦了", [wang]) is None
    True
    """
    folded = fold_name(text)
    matches = [p for p in people if fold_name(p.name) and folded.startswith(fold_name(p.name))]
    return max(matches, key=lambda p: len(fold_name(p.name)), default=None)


def notification_to_staff(
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


def reply_to_sender(
    inbound: Inbound, template: str, context: Mapping[str, Any]
) -> Notification | None:
    """The answer to the inbound message, on the channel it came by."""
    return notification_to_staff(
        inbound.sender, f"{inbound.key}:reply", template, context, inbound.channel
    )


def present_notes(*notes: Notification | None) -> tuple[Notification, ...]:
    """The notifications that could be made (``notification_to_staff`` gives None for
    someone we cannot reach)."""
    return tuple(note for note in notes if note is not None)


def supervisor_of(facts: Facts, sender: StaffView, *candidates: int | None) -> StaffView | None:
    """The first known person among ``candidates``, else the sender's own supervisor."""
    for staff_id in (*candidates, sender.supervisor_id):
        person = facts.person(staff_id)
        if person is not None:
            return person
    return None


# -- refusals -----------------------------------------------------------------------------


class CommandRefused(Exception):
    """A rule of the command is broken; ``refusals_as_replies`` tells the sender why."""

    def __init__(self, reason: Refusal, ticket_id: int | None = None, **context: Any) -> None:
        super().__init__(reason.value)
        self.reason, self.ticket_id, self.context = reason, ticket_id, context


P = ParamSpec("P")
Handler = Callable[Concatenate[Inbound, P], CommandResult]


def refusals_as_replies(name: str) -> Callable[[Handler[P]], Handler[P]]:
    """The decorator of every staff command: a ``CommandRefused`` raised anywhere in the
    handler becomes a refusal reply naming the command ``name``, so each rule is one line
    where it applies."""

    def wrap(handler: Handler[P]) -> Handler[P]:
        @functools.wraps(handler)
        def run(inbound: Inbound, /, *args: P.args, **kwargs: P.kwargs) -> CommandResult:
            try:
                return handler(inbound, *args, **kwargs)
            except CommandRefused as refused:
                context = {"command": name, "reason": refused.reason.value, **refused.context}
                return CommandResult(
                    CommandOutcome.REFUSED,
                    reply=reply_to_sender(inbound, "sms_refused", context),
                    refusal=refused.reason,
                    ticket_id=refused.ticket_id,
                )

        return run

    return wrap


def require_role(sender: StaffView, roles: frozenset[str]) -> None:
    if sender.role not in roles:
        raise CommandRefused(Refusal.WRONG_ROLE, role=sender.role)


def require_state(ticket: TicketView, allowed: frozenset[TicketState]) -> None:
    if ticket.state not in allowed:
        raise CommandRefused(
            Refusal.WRONG_STATE, ticket.id, ref=ticket.ref, state=ticket.state.value
        )


def require_engineer_on(ticket: TicketView, sender: StaffView) -> None:
    if ticket.engineer_id != sender.id:
        raise CommandRefused(Refusal.NOT_YOURS, ticket.id, ref=ticket.ref)


def require_supervisor_of(ticket: TicketView, sender: StaffView) -> None:
    # A manager may act on any ticket; a supervisor on their own or unclaimed ones.
    if sender.role == Role.SUPERVISOR and ticket.supervisor_id not in (None, sender.id):
        raise CommandRefused(Refusal.NOT_YOURS, ticket.id, ref=ticket.ref)


def pick_ticket(
    ticket_id: int | None, facts: Facts, implied: Callable[[TicketView], bool]
) -> TicketView:
    """The named ticket, or the only one ``implied`` by the command and the sender."""
    if ticket_id is not None:
        ticket = facts.ticket(ticket_id)
        if ticket is None:
            raise CommandRefused(Refusal.UNKNOWN_TICKET, ticket_id)
        return ticket
    candidates = {t.id: t for t in facts.tickets if implied(t)}
    if len(candidates) == 1:
        return next(iter(candidates.values()))
    if not candidates:
        raise CommandRefused(Refusal.NO_TICKET)
    raise CommandRefused(
        Refusal.AMBIGUOUS_TICKET, refs=[candidates[i].ref for i in sorted(candidates)]
    )
