"""Ticket commands: an engineer accepts, resolves or escalates a ticket; a supervisor
(or a manager) assigns it to an engineer and confirms it once resolved.

Each is a staff command of ``workflow.commands.base``: it decides and never writes, and
a rule it breaks is a refusal reply to the sender.
"""

from __future__ import annotations

from workflow.commands.base import (
    ENDED_TRIP_STATES,
    ENGINEER_ROLES,
    SUPERVISOR_ROLES,
    CommandOutcome,
    CommandRefused,
    CommandResult,
    Facts,
    Inbound,
    Refusal,
    Rules,
    StaffView,
    TicketUpdate,
    TripUpdate,
    fold_name,
    local_time_text,
    notification_to_staff,
    pick_ticket,
    present_notes,
    refusals_as_replies,
    reply_to_sender,
    require_engineer_on,
    require_role,
    require_state,
    require_supervisor_of,
    supervisor_of,
)
from workflow.tickets import (
    ACCEPT_FROM,
    ASSIGN_FROM,
    CONFIRM_FROM,
    ESCALATE_FROM,
    RESOLVE_FROM,
    TicketState,
    ticket_accepted,
    ticket_assigned,
    ticket_confirmed,
    ticket_escalated,
    ticket_resolved,
)

# -- engineers ----------------------------------------------------------------------------


@refusals_as_replies("accept")
def accept_ticket(
    inbound: Inbound, facts: Facts, rules: Rules, ticket_id: int | None
) -> CommandResult:
    """ACCEPT/接单: the engineer takes a new, escalated or assigned-to-them ticket; triage
    stops, the handling clock starts (§4.3.2, §4.4.5)."""
    me = inbound.sender
    require_role(me, ENGINEER_ROLES)
    ticket = pick_ticket(
        ticket_id,
        facts,
        lambda t: t.state is TicketState.ASSIGNED and t.engineer_id == me.id,
    )
    if ticket.state is TicketState.ASSIGNED and ticket.engineer_id not in (None, me.id):
        raise CommandRefused(Refusal.NOT_YOURS, ticket.id, ref=ticket.ref)
    require_state(ticket, ACCEPT_FROM)
    decision = ticket_accepted(ticket.state, inbound.now, rules.calendar, rules.policy)
    due = decision.start[0].due_at
    reply = reply_to_sender(
        inbound,
        "sms_reply_accepted",
        {
            "ref": ticket.ref,
            "due_at": due.isoformat(),
            "due_local": local_time_text(due, me.timezone),
        },
    )
    return CommandResult(
        CommandOutcome.APPLIED,
        reply=reply,
        ticket_id=ticket.id,
        decision=decision,
        # Whoever takes a ticket nobody owned yet is its first receiver (第一受理人).
        ticket_update=TicketUpdate(
            engineer_id=me.id, owner_id=me.id if ticket.owner_id is None else None
        ),
    )


@refusals_as_replies("done")
def resolve_ticket(
    inbound: Inbound, facts: Facts, rules: Rules, ticket_id: int | None, summary: str
) -> CommandResult:
    """DONE/完成: solved; the handling clock stops and the supervisor's confirmation
    clock starts (§4.4.5); the supervisor hears the result (§4.5, on-site visits)."""
    me, now = inbound.sender, inbound.now
    require_role(me, ENGINEER_ROLES)
    ticket = pick_ticket(
        ticket_id, facts, lambda t: t.engineer_id == me.id and t.state in RESOLVE_FROM
    )
    require_engineer_on(ticket, me)
    require_state(ticket, RESOLVE_FROM)
    supervisor = supervisor_of(facts, me, ticket.supervisor_id)
    context = {"ref": ticket.ref, "engineer_name": me.name, "summary": summary}
    to_supervisor = notification_to_staff(
        supervisor, f"{inbound.key}:resolved", "ticket_resolved", context
    )
    decision = ticket_resolved(
        ticket.state, now, rules.calendar, rules.policy, notify=present_notes(to_supervisor)
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
        CommandOutcome.APPLIED,
        reply=reply_to_sender(inbound, "sms_reply_done", {"ref": ticket.ref}),
        ticket_id=ticket.id,
        decision=decision,
        ticket_update=TicketUpdate(resolved_at=now, note=summary or None),
        trip_update=(
            TripUpdate(trip.id, state="completed", completed_at=now, report=summary or None)
            if trip
            else None
        ),
    )


@refusals_as_replies("escalate")
def escalate_ticket(
    inbound: Inbound, facts: Facts, rules: Rules, ticket_id: int | None, reason: str
) -> CommandResult:
    """ESCALATE/上报: passed up to the supervisor (§4.3.2), who is told why."""
    me = inbound.sender
    require_role(me, ENGINEER_ROLES)
    ticket = pick_ticket(
        ticket_id, facts, lambda t: t.engineer_id == me.id and t.state in ESCALATE_FROM
    )
    require_engineer_on(ticket, me)
    require_state(ticket, ESCALATE_FROM)
    supervisor = supervisor_of(facts, me, ticket.supervisor_id)
    to_supervisor = notification_to_staff(
        supervisor,
        f"{inbound.key}:escalated",
        "ticket_escalated",
        {"ref": ticket.ref, "engineer_name": me.name, "reason": reason},
    )
    return CommandResult(
        CommandOutcome.APPLIED,
        reply=reply_to_sender(
            inbound,
            "sms_reply_escalated",
            {"ref": ticket.ref, "supervisor_name": supervisor.name if supervisor else ""},
        ),
        ticket_id=ticket.id,
        decision=ticket_escalated(ticket.state, notify=present_notes(to_supervisor)),
        ticket_update=TicketUpdate(
            supervisor_id=supervisor.id if supervisor and ticket.supervisor_id is None else None,
            note=reason or None,
        ),
    )


# -- supervisors and managers -------------------------------------------------------------


def _find_engineer(facts: Facts, name: str, phone: str | None) -> StaffView:
    """The engineer an ASSIGN names: by phone number, else by the whole name, else by
    the only name that starts so."""
    engineers = [s for s in facts.staff if s.role in ENGINEER_ROLES]
    if phone:
        by_phone = [s for s in engineers if s.phone == phone]
        if by_phone:
            return by_phone[0]
    wanted = fold_name(name)
    if not wanted:
        raise CommandRefused(Refusal.UNKNOWN_ENGINEER, engineer=name)
    exact = [s for s in engineers if fold_name(s.name) == wanted]
    # "派 SL-42 王" is fine when only one engineer's name starts so.
    found = exact or [s for s in engineers if fold_name(s.name).startswith(wanted)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise CommandRefused(Refusal.UNKNOWN_ENGINEER, engineer=name)
    raise CommandRefused(Refusal.AMBIGUOUS_ENGINEER, engineer=name, names=[s.name for s in found])


@refusals_as_replies("assign")
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
    require_role(me, SUPERVISOR_ROLES)
    ticket = pick_ticket(
        ticket_id,
        facts,
        lambda t: t.supervisor_id == me.id and t.state in (TicketState.NEW, TicketState.ESCALATED),
    )
    require_supervisor_of(ticket, me)
    require_state(ticket, ASSIGN_FROM)
    target = _find_engineer(facts, engineer, engineer_phone)
    if ticket.engineer_id == target.id and ticket.state in (
        TicketState.ASSIGNED,
        TicketState.ACCEPTED,
    ):
        raise CommandRefused(
            Refusal.ALREADY_ASSIGNED, ticket.id, ref=ticket.ref, engineer_name=target.name
        )
    to_engineer = notification_to_staff(
        target,
        f"{inbound.key}:assigned:{target.id}",
        "ticket_assigned",
        {"ref": ticket.ref, "supervisor_name": me.name},
    )
    return CommandResult(
        CommandOutcome.APPLIED,
        reply=reply_to_sender(
            inbound, "sms_reply_assigned", {"ref": ticket.ref, "engineer_name": target.name}
        ),
        ticket_id=ticket.id,
        decision=ticket_assigned(ticket.state, notify=present_notes(to_engineer)),
        ticket_update=TicketUpdate(
            engineer_id=target.id, supervisor_id=me.id if ticket.supervisor_id is None else None
        ),
    )


@refusals_as_replies("confirm")
def confirm_ticket(
    inbound: Inbound, facts: Facts, rules: Rules, ticket_id: int | None
) -> CommandResult:
    """CONFIRM/确认: the supervisor confirms a resolved ticket (§4.4.5)."""
    me = inbound.sender
    require_role(me, SUPERVISOR_ROLES)
    ticket = pick_ticket(
        ticket_id,
        facts,
        lambda t: t.supervisor_id == me.id and t.state is TicketState.RESOLVED,
    )
    require_supervisor_of(ticket, me)
    require_state(ticket, CONFIRM_FROM)
    return CommandResult(
        CommandOutcome.APPLIED,
        reply=reply_to_sender(inbound, "sms_reply_confirmed", {"ref": ticket.ref}),
        ticket_id=ticket.id,
        decision=ticket_confirmed(ticket.state),
        ticket_update=TicketUpdate(confirmed_at=inbound.now),
    )
