"""Trips and check-ins: an engineer on a trip reports an ETA, arrives and checks in every
day; the supervisor acknowledges the check-ins relayed to them (§4.5).

Each command is a staff command of ``workflow.commands.base``: it decides and never
writes, and a rule it breaks is a refusal reply to the sender. ``trips_today`` and
``resolve_eta`` are the rules of time these commands share: which trips the day
includes, and which instant an ETA names.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from workflow.commands.base import (
    ENDED_TRIP_STATES,
    ENGINEER_ROLES,
    SUPERVISOR_ROLES,
    Acknowledgement,
    CheckInView,
    CheckInWrite,
    CommandOutcome,
    CommandRefused,
    CommandResult,
    Facts,
    Inbound,
    Refusal,
    Rules,
    StaffView,
    TicketView,
    TripUpdate,
    TripView,
    fold_name,
    local_date,
    local_time_text,
    notification_to_staff,
    person_named_at_start,
    pick_ticket,
    present_notes,
    refusals_as_replies,
    reply_to_sender,
    require_engineer_on,
    require_role,
    require_state,
    supervisor_of,
)
from workflow.roles import Role
from workflow.tickets import (
    ARRIVE_FROM,
    DeadlineKind,
    Decision,
    Notification,
    business_clock,
    engineer_arrived,
)


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
    """The trip (and its ticket) a command means: the sender's earliest open trip on the
    named ticket, or the only one of ``implied``."""
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
            named = pick_ticket(ticket_id, facts, lambda t: False)
            require_engineer_on(named, sender)
            raise CommandRefused(Refusal.NOT_ON_TRIP, ticket_id, ref=named.ref)
        trip = min(trips, key=lambda t: (t.starts_on, t.id))
    elif len(implied) == 1:
        trip = implied[0]
    elif not implied:
        raise CommandRefused(Refusal.NOT_ON_TRIP)
    else:
        raise CommandRefused(Refusal.AMBIGUOUS_TICKET, refs=sorted({t.ticket_ref for t in implied}))
    ticket = facts.ticket(trip.ticket_id)
    if ticket is None:
        raise CommandRefused(Refusal.UNKNOWN_TICKET, trip.ticket_id)
    return trip, ticket


# -- engineers ----------------------------------------------------------------------------


@refusals_as_replies("arrived")
def record_arrival(
    inbound: Inbound, facts: Facts, rules: Rules, ticket_id: int | None, note: str = ""
) -> CommandResult:
    """ARRIVED/到达: the engineer is on site; the supervisor hears first (§4.5, on-site visits).

    Every arrival is relayed (on a trip of several days the engineer arrives each
    morning); the trip keeps the first arrival time."""
    me, now = inbound.sender, inbound.now
    require_role(me, ENGINEER_ROLES)
    trip, ticket = _pick_trip(ticket_id, inbound, facts, trips_today(me, facts.trips, now))
    require_engineer_on(ticket, me)
    require_state(ticket, ARRIVE_FROM)
    supervisor = supervisor_of(facts, me, trip.supervisor_id, ticket.supervisor_id)
    relay = notification_to_staff(
        supervisor,
        f"{inbound.key}:arrival",
        "arrival_relay",
        {
            "ref": ticket.ref,
            "engineer_name": me.name,
            "at_local": local_time_text(now, me.timezone),
            "note": note,
        },
    )
    return CommandResult(
        CommandOutcome.APPLIED,
        reply=reply_to_sender(inbound, "sms_reply_arrived", {"ref": ticket.ref}),
        ticket_id=ticket.id,
        decision=engineer_arrived(ticket.state, notify=present_notes(relay)),
        trip_update=TripUpdate(
            trip.id, state="onsite", arrived_at=now if trip.arrived_at is None else None
        ),
    )


@refusals_as_replies("eta")
def report_eta(
    inbound: Inbound,
    facts: Facts,
    rules: Rules,
    ticket_id: int | None,
    when_text: str,
    at: tuple[int | None, int, int] | None,
    after: timedelta | None = None,
) -> CommandResult:
    """ETA/预计: when the engineer expects to arrive; the customer is told (§4.5)."""
    me, now = inbound.sender, inbound.now
    require_role(me, ENGINEER_ROLES)
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
    require_engineer_on(ticket, me)
    eta = resolve_eta(now, me.timezone, at, after)
    if eta is None:
        raise CommandRefused(Refusal.NO_TIME, ticket.id, ref=ticket.ref, when_text=when_text)
    eta_local = local_time_text(eta, me.timezone)
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
        CommandOutcome.APPLIED,
        reply=reply_to_sender(inbound, "sms_reply_eta", context),
        ticket_id=ticket.id,
        decision=Decision(ticket.state, "eta_reported", notify=present_notes(to_customer)),
        trip_update=TripUpdate(trip.id, eta=eta),
    )


@refusals_as_replies("checkin")
def record_checkin(inbound: Inbound, facts: Facts, rules: Rules, text: str) -> CommandResult:
    """CHECKIN/签到, or free text on a trip: the day's check-in, relayed to the
    supervisor, whose reply is then due (§4.5.10 g).

    The day is the engineer's local date. A second message the same day is appended to
    that day's check-in and relayed too, so the supervisor sees the news."""
    me, now = inbound.sender, inbound.now
    require_role(me, ENGINEER_ROLES)
    trips = trips_today(me, facts.trips, now)
    if not trips:
        raise CommandRefused(Refusal.NOT_ON_TRIP)
    # A check-in is the engineer's day, not a ticket's: with two trips on one day (rare)
    # it hangs on the earliest.
    trip = trips[0]
    today = local_date(now, me.timezone)
    existing = next(
        (c for c in facts.checkins if c.engineer_id == me.id and c.local_date == today), None
    )
    body = "\n".join(part for part in (existing.body if existing else "", text.strip()) if part)
    supervisor = supervisor_of(facts, me, trip.supervisor_id)
    relay = notification_to_staff(
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
    reply = reply_to_sender(
        inbound,
        "sms_reply_checkin",
        {
            "local_date": today.isoformat(),
            "ref": trip.ticket_ref,
            "supervisor_name": supervisor.name if relay and supervisor else "",
        },
    )
    return CommandResult(
        CommandOutcome.APPLIED,
        reply=reply,
        ticket_id=trip.ticket_id,
        checkin=checkin,
        notify=present_notes(relay),
    )


# -- supervisors and managers -------------------------------------------------------------


def _after_name(text: str, name: str) -> str:
    """What follows ``name`` at the start of ``text``, however either was typed.

    >>> _after_name("Ｗａｎｇ  Qiang, thanks", "Wang Qiang")
    ', thanks'
    """
    wanted = fold_name(name)
    for end in range(len(text) + 1):
        if fold_name(text[:end]) == wanted:
            return text[end:]
    return ""


@refusals_as_replies("ack")
def acknowledge_checkins(
    inbound: Inbound, facts: Facts, rules: Rules, ticket_id: int | None, target: str = ""
) -> CommandResult:
    """OK/收到: answers every check-in relayed to the sender that is still unanswered;
    "OK 王强" only that engineer's, "OK SL-42" only that ticket's. Each engineer is told.

    Text after the verb that does not start with an engineer's name is a remark
    ("收到，辛苦了"), passed on to the engineers, not a filter. A manager naming an
    engineer or a ticket may answer check-ins relayed to someone else."""
    me, now = inbound.sender, inbound.now
    require_role(me, SUPERVISOR_ROLES)
    unanswered = [c for c in facts.checkins if not c.acknowledged and c.relayed_to_id]
    mine = [c for c in unanswered if c.relayed_to_id == me.id]
    reachable = unanswered if me.role == Role.MANAGER else mine
    engineers = [s for s in facts.staff if s.role in ENGINEER_ROLES]
    named = None if ticket_id is not None else person_named_at_start(target, engineers)
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
        raise CommandRefused(
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
        note = notification_to_staff(
            engineer,
            f"{inbound.key}:checkin-ack:{engineer_id}",
            "checkin_acknowledged",
            {
                "supervisor_name": me.name,
                "dates": [c.local_date.isoformat() for c in checkins],
                "remark": remark,
            },
        )
        notify.extend(present_notes(note))
    return CommandResult(
        CommandOutcome.APPLIED,
        reply=reply_to_sender(
            inbound, "sms_reply_acknowledged", {"count": len(scope), "engineers": names}
        ),
        ticket_id=ticket_id,
        acknowledgement=Acknowledgement(tuple(sorted(c.id for c in scope)), me.id, now),
        notify=tuple(notify),
    )
