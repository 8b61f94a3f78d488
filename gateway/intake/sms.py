"""A stored inbound SMS applied to the database: consent, a staff command, or a customer.

Runs inside the intake transaction of ``gateway.intake.runner`` (one per message): whatever the
workflow decides (state change, deadlines, check-in, replies) commits together.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from gateway.bootstrap import Services
from gateway.channels.store import InboundRow
from parsers.intake import extract_intake
from parsers.phones import normalize_phone
from parsers.refs import format_ref
from parsers.sms_commands import (
    Accept,
    Ack,
    Arrived,
    Assign,
    CheckIn,
    Confirm,
    Consent,
    Done,
    Escalate,
    Eta,
    Help,
    SmsCommand,
    Unknown,
    parse_consent,
    parse_sms,
    usage_text,
)
from storage.apply import apply_decision, meet_deadlines, new_deadline
from storage.models import (
    CheckIn as CheckInRow,
)
from storage.models import (
    Contact,
    Deadline,
    Event,
    Message,
    SmsConsent,
    Staff,
    Ticket,
    Trip,
)
from storage.outbox import automatic_replies_last_hour, enqueue
from workflow.intake import acknowledgement_refusal, customer_language
from workflow.staff_commands import (
    CheckInView,
    CommandResult,
    Facts,
    Inbound,
    Rules,
    SmsRoute,
    StaffView,
    TicketView,
    TripView,
    accept_ticket,
    acknowledge_checkins,
    assign_ticket,
    confirm_ticket,
    consent_keyword,
    escalate_ticket,
    local_date,
    record_arrival,
    record_checkin,
    report_eta,
    resolve_ticket,
    route_sms,
    sms_or_email,
    unrecognised_text,
    usage_reply,
)
from workflow.tickets import (
    Decision,
    Notification,
    TicketState,
    customer_replied,
    open_ticket,
)

CLOSED_STATES = (TicketState.CLOSED.value,)
ACK_TEMPLATE = "ticket_ack"


def run_command(command: SmsCommand, message: Inbound, facts: Facts, rules: Rules) -> CommandResult:
    """The workflow function a parsed staff command stands for (the email commands of the
    clocks issue call the same ones)."""
    usage = usage_text(message.sender.role, message.sender.language)
    match command:
        case Accept(ticket_id):
            return accept_ticket(message, facts, rules, ticket_id)
        case CheckIn(body):
            return record_checkin(message, facts, rules, body)
        case Arrived(ticket_id, note):
            return record_arrival(message, facts, rules, ticket_id, note)
        case Eta(ticket_id, when_text, at, after):
            return report_eta(message, facts, rules, ticket_id, when_text, at, after)
        case Done(ticket_id, summary):
            return resolve_ticket(message, facts, rules, ticket_id, summary)
        case Escalate(ticket_id, reason):
            return escalate_ticket(message, facts, rules, ticket_id, reason)
        case Ack(ticket_id, target):
            return acknowledge_checkins(message, facts, rules, ticket_id, target)
        case Assign(ticket_id, engineer, phone):
            return assign_ticket(message, facts, rules, ticket_id, engineer, phone)
        case Confirm(ticket_id):
            return confirm_ticket(message, facts, rules, ticket_id)
        case Help() | Consent():
            return usage_reply(message, usage)
        case Unknown(body):
            return unrecognised_text(message, facts, rules, body, usage)
    raise AssertionError(f"unhandled command {command!r}")


def _staff_view(person: Staff) -> StaffView:
    return StaffView(
        id=person.id,
        name=person.name,
        role=person.role,
        language=person.language,
        timezone=person.timezone,
        phone=person.phone,
        email=person.email,
        supervisor_id=person.supervisor_id,
    )


def _ticket_view(ticket: Ticket) -> TicketView:
    return TicketView(
        id=ticket.id,
        ref=format_ref(ticket.id),
        state=TicketState(ticket.state),
        engineer_id=ticket.engineer_id,
        supervisor_id=ticket.supervisor_id,
        owner_id=ticket.owner_id,
        language=ticket.language,
        contact_phone=ticket.contact_phone,
        contact_email=ticket.contact_email,
    )


class SmsIntake:
    """One stored SMS, inside the caller's transaction."""

    def __init__(
        self, services: Services, session: Session, row: InboundRow, now: datetime
    ) -> None:
        self.services, self.session, self.row, self.now = services, session, row, now
        self.form = dict(parse_qsl(row.raw.decode("utf-8", "replace"), keep_blank_values=True))
        raw_from = self.form.get("From", "")
        self.phone = normalize_phone(raw_from) or raw_from
        self.body = self.form.get("Body", "")
        self.key = f"sms:{row.id}"

    def run(self) -> tuple[int | None, str]:
        staff = self.session.scalars(
            select(Staff).where(Staff.phone == self.phone, Staff.active.is_(True))
        ).first()
        consent = parse_consent(self.body)
        route = route_sms(sender_is_staff=staff is not None, consent_keyword=consent is not None)
        if route is SmsRoute.CONSENT:
            assert consent is not None
            return None, self._consent(consent, staff)
        if route is SmsRoute.STAFF_COMMAND:
            assert staff is not None
            return self._staff_command(staff)
        return self._customer_message()

    # -- consent ------------------------------------------------------------------------

    def _consent(self, consent: Consent, staff: Staff | None) -> str:
        sender = _staff_view(staff) if staff else None
        usage = usage_text(staff.role, staff.language) if staff else ""
        result = consent_keyword(
            self.phone,
            consent.kind.value,
            consent.keyword,
            self.now,
            key=self.key,
            sender=sender,
            usage=usage,
        )
        if result.change is not None:
            row = self.session.get(SmsConsent, self.phone)
            if row is None:
                row = SmsConsent(phone=self.phone)
                self.session.add(row)
            row.opted_out, row.keyword = result.change.opted_out, result.change.keyword
            row.changed_at = result.change.changed_at
        self._send(result.reply, None)
        self._event(None, "sms_consent", {"keyword": consent.keyword, "kind": consent.kind.value})
        return f"consent: {consent.kind.value} ({consent.keyword})"

    # -- staff --------------------------------------------------------------------------

    def _staff_command(self, staff: Staff) -> tuple[int | None, str]:
        command = parse_sms(self.body)
        sender = _staff_view(staff)
        facts = self._facts(staff, getattr(command, "ticket_id", None))
        rules = Rules(self.services.calendar(), self.services.settings.policy)
        result = run_command(command, Inbound(sender, self.now, self.key), facts, rules)
        ticket = self.session.get(Ticket, result.ticket_id) if result.ticket_id else None
        if ticket is not None:
            self._thread_message(ticket)
        if result.decision is not None and ticket is not None:
            self._apply(ticket, result.decision, command=command.verb.value)
        self._apply_updates(result, ticket)
        for note in (result.reply, *result.notify):
            self._send(note, ticket)
        verb = command.verb.value
        if result.refusal is not None:
            outcome = f"refused ({result.refusal.value})"
        else:
            outcome = result.outcome.value
        where = f" on {format_ref(ticket.id)}" if ticket is not None else ""
        if ticket is None:
            self._event(None, f"sms_{verb}", {"outcome": outcome})
        return (ticket.id if ticket else None), f"staff {verb} by {staff.name}{where}: {outcome}"

    def _facts(self, staff: Staff, named_ticket: int | None) -> Facts:
        today = local_date(self.now, staff.timezone)
        trips = self.session.scalars(
            select(Trip).where(
                or_(Trip.engineer_id == staff.id, Trip.supervisor_id == staff.id),
                Trip.ends_on >= today - timedelta(days=1),
                Trip.state.not_in(("completed", "cancelled")),
            )
        ).all()
        ticket_ids = {t.ticket_id for t in trips}
        if named_ticket is not None:
            ticket_ids.add(named_ticket)
        tickets = self.session.scalars(
            select(Ticket).where(
                or_(
                    Ticket.id.in_(ticket_ids),
                    Ticket.engineer_id == staff.id,
                    Ticket.supervisor_id == staff.id,
                ),
                Ticket.state.not_in(CLOSED_STATES),
            )
        ).all()
        if named_ticket is not None and all(t.id != named_ticket for t in tickets):
            named = self.session.get(Ticket, named_ticket)
            tickets = [*tickets, named] if named is not None else tickets
        trip_of = {t.id: t for t in trips}
        return Facts(
            tickets=tuple(_ticket_view(t) for t in tickets),
            trips=tuple(
                TripView(
                    id=t.id,
                    ticket_id=t.ticket_id,
                    ticket_ref=format_ref(t.ticket_id),
                    engineer_id=t.engineer_id,
                    supervisor_id=t.supervisor_id,
                    starts_on=t.starts_on,
                    ends_on=t.ends_on,
                    state=t.state,
                    arrived_at=t.arrived_at,
                )
                for t in trips
            ),
            checkins=self._checkins(staff, today, trip_of),
            staff=tuple(
                _staff_view(p) for p in self.session.scalars(select(Staff).where(Staff.active))
            ),
        )

    def _checkins(
        self, staff: Staff, today: date, trip_of: dict[int, Trip]
    ) -> tuple[CheckInView, ...]:
        """The engineer's own check-in of today, and the unanswered ones relayed to them."""
        rows = self.session.scalars(
            select(CheckInRow).where(
                or_(
                    (CheckInRow.engineer_id == staff.id) & (CheckInRow.local_date == today),
                    CheckInRow.acknowledged_at.is_(None) & CheckInRow.relayed_at.is_not(None),
                )
            )
        ).all()
        views = []
        for row in rows:
            trip = trip_of.get(row.trip_id) or self.session.get_one(Trip, row.trip_id)
            relayed_to = trip.supervisor_id
            if row.engineer_id != staff.id and relayed_to != staff.id and staff.role != "manager":
                continue
            views.append(
                CheckInView(
                    id=row.id,
                    trip_id=row.trip_id,
                    ticket_id=trip.ticket_id,
                    engineer_id=row.engineer_id,
                    local_date=row.local_date,
                    body=row.body,
                    relayed_to_id=relayed_to,
                    acknowledged=row.acknowledged_at is not None,
                )
            )
        return tuple(views)

    def _apply_updates(self, result: CommandResult, ticket: Ticket | None) -> None:
        if result.ticket_update is not None and ticket is not None:
            update = result.ticket_update
            for column in (
                "engineer_id",
                "supervisor_id",
                "owner_id",
                "resolved_at",
                "confirmed_at",
            ):
                value = getattr(update, column)
                if value is not None:
                    setattr(ticket, column, value)
        if result.trip_update is not None:
            trip = self.session.get_one(Trip, result.trip_update.trip_id)
            for column in ("state", "eta", "arrived_at", "completed_at", "report"):
                value = getattr(result.trip_update, column)
                if value is not None:
                    setattr(trip, column, value)
        if result.checkin is not None:
            self._write_checkin(result)
        if result.acknowledgement is not None:
            ack = result.acknowledgement
            for row in self.session.scalars(
                select(CheckInRow).where(CheckInRow.id.in_(ack.checkin_ids))
            ):
                row.acknowledged_at, row.acknowledged_by_id = ack.at, ack.by_id
            self.session.flush()
            meet_deadlines(
                self.session.connection(),
                Deadline.checkin_id.in_(ack.checkin_ids),
                ack.stops,
                self.now,
            )

    def _write_checkin(self, result: CommandResult) -> None:
        write = result.checkin
        assert write is not None
        row = self.session.get(CheckInRow, write.checkin_id) if write.checkin_id else None
        if row is None:
            row = self.session.scalars(
                select(CheckInRow).where(
                    CheckInRow.engineer_id == write.engineer_id,
                    CheckInRow.local_date == write.local_date,
                )
            ).first()
        if row is None:
            row = CheckInRow(
                trip_id=write.trip_id, engineer_id=write.engineer_id, local_date=write.local_date
            )
            self.session.add(row)
        row.body, row.received_at, row.inbound_id = write.body, write.received_at, self.row.id
        row.relayed_at = write.relayed_at
        row.acknowledged_at, row.acknowledged_by_id = None, None
        self.session.flush()
        meet_deadlines(
            self.session.connection(), Deadline.trip_id == write.trip_id, write.meets, self.now
        )
        if write.reply_clock is not None:
            self.session.add(
                new_deadline(
                    write.reply_clock,
                    trip_id=write.trip_id,
                    checkin_id=row.id,
                    owner_id=write.relayed_to_id,
                )
            )

    # -- customers ----------------------------------------------------------------------

    def _customer_message(self) -> tuple[int, str]:
        window = timedelta(days=self.services.settings.sms.thread_window_days)
        ticket = self.session.scalars(
            select(Ticket)
            .where(
                Ticket.contact_phone == self.phone,
                Ticket.state.not_in(CLOSED_STATES),
                Ticket.updated_at >= self.now - window,
            )
            .order_by(Ticket.updated_at.desc(), Ticket.id.desc())
        ).first()
        if ticket is not None:
            self._thread_message(ticket)
            self._apply(ticket, customer_replied(TicketState(ticket.state)))
            return ticket.id, f"reply on {format_ref(ticket.id)} (open ticket of {self.phone})"
        return self._open_ticket()

    def _open_ticket(self) -> tuple[int, str]:
        settings = self.services.settings
        contact = self.session.scalars(select(Contact).where(Contact.phone == self.phone)).first()
        if contact is None:
            contact = Contact(phone=self.phone, created_at=self.now)
            self.session.add(contact)
            self.session.flush()
        fields = extract_intake(
            "",
            self.body,
            from_name=contact.name,
            fault_types=settings.policy.fault_types,
        )
        language = customer_language(contact.language, self.body, settings.language)
        first_line = self.body.strip().splitlines()[0] if self.body.strip() else "(SMS)"
        ticket = Ticket(
            state=TicketState.NEW.value,
            channel="sms",
            subject=first_line[:80],
            requester_name=fields.requester_name or contact.name or None,
            identity=fields.department,
            company=fields.company or (contact.customer.name if contact.customer else None),
            contact_email=contact.email,
            contact_phone=self.phone,
            problem=fields.problem or self._media_note(),
            request=fields.request,
            machine_model=fields.machine_model,
            serial=fields.serial,
            fault_type=fields.fault_type,
            language=language,
            customer_id=contact.customer_id,
            contact_id=contact.id,
            created_at=self.now,
            updated_at=self.now,
        )
        self.session.add(ticket)
        self.session.flush()
        self._thread_message(ticket)
        refusal = acknowledgement_refusal(
            self.phone,
            (),
            automatic_replies_last_hour(self.session.connection(), self.phone, self.now),
            settings.email.auto_replies_per_sender_per_hour,
        )
        ack = None
        if refusal is None:
            ack = Notification(
                key="ack",
                template=ACK_TEMPLATE,
                channel="sms",
                recipient=self.phone,
                language=language,
                context={
                    "ref": format_ref(ticket.id),
                    "subject": ticket.subject,
                    "requester_name": ticket.requester_name or "",
                    "problem": ticket.problem[:500],
                    "reply_to": "",
                },
            )
        decision = open_ticket(self.now, self.services.calendar(), settings.policy, ack)
        self._apply(ticket, decision, **({"no_acknowledgement": refusal} if refusal else {}))
        result = f"ticket {format_ref(ticket.id)} opened"
        return ticket.id, result + (f"; no acknowledgement: {refusal}" if refusal else "")

    # -- shared -------------------------------------------------------------------------

    def _media_note(self) -> str:
        count = int(self.form.get("NumMedia", "0") or 0)
        urls = [self.form.get(f"MediaUrl{i}", "") for i in range(count)]
        return "\n".join([f"[{count} media attachment(s)]", *filter(None, urls)]) if count else ""

    def _thread_message(self, ticket: Ticket) -> None:
        body = self.body.strip() or self._media_note()
        self.session.add(
            Message(
                ticket_id=ticket.id,
                direction="in",
                channel="sms",
                sender=self.phone,
                body=body,
                full_text=self.body,
                message_id=self.form.get("MessageSid") or None,
                inbound_id=self.row.id,
                created_at=self.now,
            )
        )

    def _apply(self, ticket: Ticket, decision: Decision, **detail: Any) -> None:
        """Writes a workflow decision, its SMS rerouted for numbers that opted out."""
        reachable = (self._reachable(note) for note in decision.notify)
        decision = replace(decision, notify=tuple(note for note in reachable if note))
        apply_decision(
            self.session,
            ticket,
            decision,
            self.now,
            actor=self.phone,
            via="sms",
            detail={"inbound_id": self.row.id, **detail},
        )

    def _reachable(self, note: Notification) -> Notification | None:
        """The notification as it may go: an SMS to a number that opted out goes by email."""
        if note.channel != "sms":
            return note
        consent = self.session.get(SmsConsent, note.recipient)
        email = (
            self.session.scalars(select(Staff.email).where(Staff.phone == note.recipient)).first()
            or self.session.scalars(
                select(Contact.email).where(Contact.phone == note.recipient)
            ).first()
        )
        return sms_or_email(note, bool(consent and consent.opted_out), email)

    def _send(self, note: Notification | None, ticket: Ticket | None) -> None:
        note = self._reachable(note) if note is not None else None
        if note is None:
            return
        enqueue(
            self.session.connection(),
            key=note.key,
            channel=note.channel,
            to=note.recipient,
            template=note.template,
            language=note.language,
            context=dict(note.context),
            now=self.now,
            ticket_id=ticket.id if ticket else None,
            auto_submitted=note.auto_submitted,
        )

    def _event(self, ticket_id: int | None, kind: str, detail: dict[str, Any]) -> None:
        self.session.add(
            Event(
                at=self.now,
                ticket_id=ticket_id,
                kind=kind,
                actor=self.phone,
                via="sms",
                detail={"inbound_id": self.row.id, **detail},
            )
        )
