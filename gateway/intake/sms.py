"""One stored SMS, inside the intake transaction: consent, a staff command, or a customer.

Load the facts, ask ``workflow`` (``workflow.commands`` for staff, ``workflow.intake``
for customers), write what it decided: tickets through ``gateway/intake/tickets.py``,
the same as email; trips and check-ins as ORM objects of the transaction's session.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from gateway.intake.service import Intake
from gateway.intake.tickets import (
    Author,
    acknowledgement,
    filed_company,
    open_ticket_from,
    reach,
    record_on_ticket,
    reply_on_ticket,
)
from parsers.phones import normalize_phone
from parsers.record_fields import extract_record_fields
from parsers.refs import format_ref
from parsers.sms_commands import Consent, parse_consent, parse_sms, usage_text
from storage.apply import insert_deadline, meet_deadlines, record_event
from storage.inbound import InboundRow
from storage.lookups import (
    contact_by_phone,
    latest_open_ticket_of_phone,
    ticket_exists,
)
from storage.models import DailyCheckIn, Deadline, SmsConsent, Staff, Ticket, Trip
from storage.outbox import automatic_replies_last_hour, enqueue
from storage.tickets import add_message, set_ticket_state, ticket_state, update_ticket
from workflow.commands.base import (
    CheckInView,
    CommandResult,
    Facts,
    Inbound,
    Rules,
    StaffView,
    TicketView,
    TripView,
    local_date,
)
from workflow.commands.sms import SmsRoute, consent_keyword, route_sms, run_command
from workflow.intake import (
    acknowledgement_refusal,
    customer_language,
    customer_of,
    sms_thread,
)
from workflow.tickets import Notification, TicketState

_TICKET_VIEW_COLUMNS = (
    Ticket.id,
    Ticket.state,
    Ticket.engineer_id,
    Ticket.supervisor_id,
    Ticket.owner_id,
    Ticket.language,
    Ticket.contact_phone,
    Ticket.contact_email,
)
# Ticket columns a staff command may set besides the state (workflow's TicketUpdate).
_TICKET_UPDATE_COLUMNS = ("engineer_id", "supervisor_id", "owner_id", "resolved_at", "confirmed_at")
_TRIP_UPDATE_COLUMNS = ("state", "eta", "arrived_at", "completed_at", "report")


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


def _ticket_view(row: Any) -> TicketView:
    return TicketView(
        id=row.id,
        ref=format_ref(row.id),
        state=TicketState(row.state),
        engineer_id=row.engineer_id,
        supervisor_id=row.supervisor_id,
        owner_id=row.owner_id,
        language=row.language,
        contact_phone=row.contact_phone,
        contact_email=row.contact_email,
    )


class SmsIntake:
    """One stored SMS, inside the caller's transaction.

    Tickets are read and written with Core statements only (no Ticket objects in the
    session, so none goes stale for the next message of the batch); trips, check-ins
    and consent stay ORM objects, flushed before any Core statement reads them.
    """

    def __init__(self, intake: Intake, session: Session, row: InboundRow, now: datetime) -> None:
        self.intake, self.session, self.row, self.now = intake, session, row, now
        self.db = session.connection()
        self.form = dict(parse_qsl(row.raw.decode("utf-8", "replace"), keep_blank_values=True))
        raw_from = self.form.get("From", "")
        self.phone = normalize_phone(raw_from) or raw_from
        self.body = self.form.get("Body", "")
        self.key = f"sms:{row.id}"
        self.author = Author(self.phone, "sms", row.id)

    def run(self) -> tuple[int | None, str]:
        staff = self.session.scalars(
            select(Staff).where(Staff.phone == self.phone, Staff.active.is_(True))
        ).first()
        consent = parse_consent(self.body)
        route = route_sms(sender_is_staff=staff is not None, consent_keyword=consent is not None)
        if route is SmsRoute.CONSENT:
            assert consent is not None
            outcome: tuple[int | None, str] = (None, self._consent(consent, staff))
        elif route is SmsRoute.STAFF_COMMAND:
            assert staff is not None
            outcome = self._staff_command(staff)
        else:
            outcome = self._customer_message()
        self.session.flush()  # the next message of the batch reads with Core statements
        return outcome

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
        rules = Rules(self.intake.calendar, self.intake.policy)
        usage = usage_text(staff.role, staff.language)
        result = run_command(command, Inbound(sender, self.now, self.key), facts, rules, usage)
        ticket_id = result.ticket_id
        if ticket_id is not None and not ticket_exists(self.db, ticket_id):
            ticket_id = None
        if ticket_id is not None:
            self._thread_message(ticket_id)
        if result.decision is not None and ticket_id is not None:
            # Recorded with the owner as it stood before this command: its assignment
            # (_apply_updates) is written after.
            _state, owner_id = ticket_state(self.db, ticket_id)
            set_ticket_state(self.db, ticket_id, result.decision.state.value, self.now)
            record_on_ticket(
                self.db, self.author, ticket_id, owner_id, result.decision, self.now,
                command=command.verb.value,
            )  # fmt: skip
        self._apply_updates(result, ticket_id)
        for note in (result.reply, *result.notify):
            self._send(note, ticket_id)
        verb = command.verb.value
        if result.refusal is not None:
            outcome = f"refused ({result.refusal.value})"
        else:
            outcome = result.outcome.value
        where = f" on {format_ref(ticket_id)}" if ticket_id is not None else ""
        if ticket_id is None:
            self._event(None, f"sms_{verb}", {"outcome": outcome})
        return ticket_id, f"staff {verb} by {staff.name}{where}: {outcome}"

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
        tickets = list(
            self.db.execute(
                select(*_TICKET_VIEW_COLUMNS).where(
                    or_(
                        Ticket.id.in_(ticket_ids),
                        Ticket.engineer_id == staff.id,
                        Ticket.supervisor_id == staff.id,
                    ),
                    Ticket.state != TicketState.CLOSED.value,
                )
            )
        )
        if named_ticket is not None and all(t.id != named_ticket for t in tickets):
            # A closed ticket named by reference: the command is refused with its state.
            tickets += self.db.execute(
                select(*_TICKET_VIEW_COLUMNS).where(Ticket.id == named_ticket)
            ).all()
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
            select(DailyCheckIn).where(
                or_(
                    (DailyCheckIn.engineer_id == staff.id) & (DailyCheckIn.local_date == today),
                    DailyCheckIn.acknowledged_at.is_(None) & DailyCheckIn.relayed_at.is_not(None),
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

    def _apply_updates(self, result: CommandResult, ticket_id: int | None) -> None:
        if result.ticket_update is not None and ticket_id is not None:
            changes = {
                column: getattr(result.ticket_update, column)
                for column in _TICKET_UPDATE_COLUMNS
                if getattr(result.ticket_update, column) is not None
            }
            update_ticket(self.db, ticket_id, changes)
        if result.trip_update is not None:
            trip = self.session.get_one(Trip, result.trip_update.trip_id)
            for column in _TRIP_UPDATE_COLUMNS:
                value = getattr(result.trip_update, column)
                if value is not None:
                    setattr(trip, column, value)
        if result.checkin is not None:
            self._write_checkin(result)
        if result.acknowledgement is not None:
            ack = result.acknowledgement
            for row in self.session.scalars(
                select(DailyCheckIn).where(DailyCheckIn.id.in_(ack.checkin_ids))
            ):
                row.acknowledged_at, row.acknowledged_by_id = ack.at, ack.by_id
            self.session.flush()
            meet_deadlines(self.db, Deadline.checkin_id.in_(ack.checkin_ids), ack.stops, self.now)

    def _write_checkin(self, result: CommandResult) -> None:
        write = result.checkin
        assert write is not None
        row = self.session.get(DailyCheckIn, write.checkin_id) if write.checkin_id else None
        if row is None:
            row = self.session.scalars(
                select(DailyCheckIn).where(
                    DailyCheckIn.engineer_id == write.engineer_id,
                    DailyCheckIn.local_date == write.local_date,
                )
            ).first()
        if row is None:
            row = DailyCheckIn(
                trip_id=write.trip_id, engineer_id=write.engineer_id, local_date=write.local_date
            )
            self.session.add(row)
        row.body, row.received_at, row.inbound_id = write.body, write.received_at, self.row.id
        row.relayed_at = write.relayed_at
        row.acknowledged_at, row.acknowledged_by_id = None, None
        self.session.flush()
        meet_deadlines(self.db, Deadline.trip_id == write.trip_id, write.meets, self.now)
        if write.reply_clock is not None:
            insert_deadline(
                self.db,
                write.reply_clock,
                trip_id=write.trip_id,
                checkin_id=row.id,
                owner_id=write.relayed_to_id,
            )

    # -- customers ----------------------------------------------------------------------

    def _customer_message(self) -> tuple[int, str]:
        ticket_id = sms_thread(
            latest_open_ticket_of_phone(self.db, self.phone),
            self.now,
            self.intake.sms.thread_window_days,
        )
        if ticket_id is not None:
            reply_on_ticket(self.db, self.author, ticket_id, self._message(), self.now)
            return ticket_id, f"reply on {format_ref(ticket_id)} (open ticket of {self.phone})"
        return self._open_ticket()

    def _open_ticket(self) -> tuple[int, str]:
        intake = self.intake
        contact = contact_by_phone(self.db, self.phone, self.now)
        fields = extract_record_fields(
            "", self.body, from_name=contact.name or "", fault_types=intake.policy.fault_types
        )
        customer_id = customer_of(contact, None)
        first_line = self.body.strip().splitlines()[0] if self.body.strip() else "(SMS)"
        record: dict[str, Any] = {
            "channel": "sms",
            "subject": first_line[:80],
            "requester_name": fields.requester_name or contact.name or None,
            "identity": fields.department,
            "company": filed_company(self.db, fields.company, customer_id),
            "contact_email": contact.email,
            "contact_phone": self.phone,
            "problem": fields.problem or self._media_note(),
            "request": fields.request,
            "machine_model": fields.machine_model,
            "serial": fields.serial,
            "fault_type": fields.fault_type,
            "language": customer_language(contact.language, self.body, intake.language),
            "customer_id": customer_id,
            "contact_id": contact.id,
        }
        refusal = acknowledgement_refusal(
            self.phone,
            (),
            automatic_replies_last_hour(self.db, self.phone, self.now),
            intake.sms.auto_replies_per_number_per_hour,
        )

        def acknowledge(ticket_id: int) -> Notification:
            return acknowledgement(ticket_id, record, "sms", self.phone, record["subject"])

        ticket_id = open_ticket_from(
            self.db,
            intake,
            self.author,
            self.now,
            record,
            self._message(),
            acknowledge=None if refusal else acknowledge,
            detail={"no_acknowledgement": refusal} if refusal else None,
        )
        result = f"ticket {format_ref(ticket_id)} opened"
        return ticket_id, result + (f"; no acknowledgement: {refusal}" if refusal else "")

    # -- shared -------------------------------------------------------------------------

    def _media_note(self) -> str:
        count = int(self.form.get("NumMedia", "0") or 0)
        urls = [self.form.get(f"MediaUrl{i}", "") for i in range(count)]
        return "\n".join([f"[{count} media attachment(s)]", *filter(None, urls)]) if count else ""

    def _message(self) -> dict[str, Any]:
        return {
            "direction": "in",
            "channel": "sms",
            "sender": self.phone,
            "body": self.body.strip() or self._media_note(),
            "full_text": self.body,
            "message_id": self.form.get("MessageSid") or None,
            "inbound_id": self.row.id,
        }

    def _thread_message(self, ticket_id: int) -> None:
        add_message(self.db, ticket_id, self._message(), self.now)

    def _send(self, note: Notification | None, ticket_id: int | None) -> None:
        self.session.flush()  # a consent just changed must be seen by reach()
        note = reach(self.db, note) if note is not None else None
        if note is None:
            return
        enqueue(
            self.db,
            key=note.key,
            channel=note.channel,
            to=note.recipient,
            template=note.template,
            language=note.language,
            context=dict(note.context),
            now=self.now,
            ticket_id=ticket_id,
            auto_submitted=note.auto_submitted,
        )

    def _event(self, ticket_id: int | None, kind: str, detail: dict[str, Any]) -> None:
        record_event(
            self.db,
            ticket_id,
            kind,
            self.now,
            actor=self.phone,
            via="sms",
            detail={"inbound_id": self.row.id, **detail},
        )
