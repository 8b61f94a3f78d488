"""Importing the staff file and the customer file: all rows or none.

Re-importing a file updates what is there (staff by email; customers by name, contacts
by email or phone, machines by serial) instead of adding duplicates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from parsers.roster import CustomerRow, RowError, StaffRow
from storage.models import Contact, Customer, Machine, Staff, Ticket


class ImportRejected(Exception):
    """The file has errors; nothing was imported."""

    def __init__(self, errors: Sequence[RowError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = list(errors)


@dataclass
class ImportCounts:
    created: int = 0
    updated: int = 0
    details: dict[str, int] = field(default_factory=dict)


def import_staff(session: Session, rows: Sequence[StaffRow], now: datetime) -> ImportCounts:
    """Create or update staff; supervisors may be in the file or already stored."""
    counts = ImportCounts()
    existing = {s.email: s for s in session.scalars(select(Staff))}
    by_email: dict[str, Staff] = {}
    for row in rows:
        person = existing.get(row.email)
        if person is None:
            person = Staff(email=row.email, created_at=now)
            session.add(person)
            counts.created += 1
        else:
            counts.updated += 1
        person.name, person.role, person.phone = row.name, row.role, row.phone
        person.language, person.timezone = row.language, row.timezone
        person.active, person.updated_at = True, now
        by_email[row.email] = person
    known = existing | by_email
    errors = []
    for row in rows:
        if row.supervisor_email is None:
            by_email[row.email].supervisor = None
        elif row.supervisor_email == row.email:
            errors.append(RowError(row.line, "a person cannot be their own supervisor"))
        elif row.supervisor_email not in known:
            errors.append(
                RowError(row.line, f"supervisor {row.supervisor_email} is not in the staff list")
            )
        else:
            by_email[row.email].supervisor = known[row.supervisor_email]
    _check_phone_owners(session, rows, errors)
    if errors:
        raise ImportRejected(errors)
    return counts


def _check_phone_owners(session: Session, rows: Sequence[StaffRow], errors: list[RowError]) -> None:
    """A phone number identifies who is texting, so it may belong to one person only."""
    file_emails = {r.email for r in rows}
    stored = {
        s.phone: s.email
        for s in session.scalars(select(Staff).where(Staff.phone.is_not(None)))
        if s.email not in file_emails
    }
    for row in rows:
        owner = stored.get(row.phone) if row.phone else None
        if owner:
            errors.append(RowError(row.line, f"phone {row.phone} already belongs to {owner}"))


def import_customers(session: Session, rows: Sequence[CustomerRow], now: datetime) -> ImportCounts:
    """Create or update customers, their contacts and their machines."""
    counts = ImportCounts(details={"customers": 0, "contacts": 0, "machines": 0})
    customers = {c.name: c for c in session.scalars(select(Customer))}
    errors: list[RowError] = []
    for row in rows:
        customer = customers.get(row.customer)
        if customer is None:
            customer = customers[row.customer] = Customer(name=row.customer, created_at=now)
            session.add(customer)
            counts.details["customers"] += 1
        if row.email or row.phone:
            _upsert_contact(session, customer, row, now, counts, errors)
        if row.model:
            _upsert_machine(session, customer, row, counts)
        session.flush()
    if errors:
        raise ImportRejected(errors)
    counts.created = sum(counts.details.values())
    return counts


def _upsert_contact(
    session: Session,
    customer: Customer,
    row: CustomerRow,
    now: datetime,
    counts: ImportCounts,
    errors: list[RowError],
) -> None:
    by_email = by_phone = None
    if row.email:
        by_email = session.scalars(select(Contact).where(Contact.email == row.email)).first()
    if row.phone:
        by_phone = session.scalars(select(Contact).where(Contact.phone == row.phone)).first()
    contact = by_email or by_phone
    if contact is None:
        contact = Contact(created_at=now)
        session.add(contact)
        counts.details["contacts"] += 1
    for known in {by_email, by_phone} - {None}:
        if known is not None and known.customer not in (None, customer):
            errors.append(
                RowError(
                    row.line, f"{row.email or row.phone} is a contact of {known.customer.name}"
                )
            )
            return
    if by_email is not None and by_phone is not None and by_email is not by_phone:
        # The same person wrote from this address and texted from this phone before the
        # file named them: one contact, with the other's tickets.
        session.execute(
            update(Ticket).where(Ticket.contact_id == by_phone.id).values(contact_id=by_email.id)
        )
        session.delete(by_phone)
        session.flush()
    contact.customer = customer
    contact.name = row.contact or contact.name
    contact.email = row.email or contact.email
    contact.phone = row.phone or contact.phone
    contact.language = row.language or contact.language


def _upsert_machine(
    session: Session, customer: Customer, row: CustomerRow, counts: ImportCounts
) -> None:
    assert row.model is not None
    if row.serial:
        same = Machine.serial == row.serial
    else:  # without a serial, one machine per model and customer
        same = (Machine.customer == customer) & (Machine.model == row.model)
        same &= Machine.serial.is_(None)
    machine = session.scalars(select(Machine).where(same)).first()
    if machine is None:
        machine = Machine(model=row.model, serial=row.serial)
        session.add(machine)
        counts.details["machines"] += 1
    machine.customer = customer
    machine.model = row.model
    machine.shipped_on = row.shipped_on or machine.shipped_on
    machine.special = row.special
