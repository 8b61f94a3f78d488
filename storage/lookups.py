"""What the intake reads before it decides: the customer file, the threads, our outbox.

Core statements built once, on the intake transaction's connection (the email intake
holds no ORM objects: under a burst of mail the ORM's unit of work cost three times the
SQL it issued).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, bindparam, func, select, text, update

from storage.inserts import insert_many_or_get
from storage.models import Contact, Customer, Machine, Message, OutboxMessage, Ticket
from workflow.intake import BOUNCEABLE_STATUSES, BounceMark, FiledContact, FiledMachine
from workflow.tickets import TicketState

_KNOWN_MODELS = select(Machine.model).distinct().order_by(Machine.model)
_MACHINE_BY_SERIAL = (
    select(Machine.id, Machine.model, Machine.customer_id)
    .where(func.lower(Machine.serial) == bindparam("serial"))
    .limit(1)
)
_CUSTOMER_NAME = select(Customer.name).where(Customer.id == bindparam("customer_id"))
_CONTACT_COLUMNS = (
    Contact.id,
    Contact.customer_id,
    Contact.name,
    Contact.phone,
    Contact.email,
    Contact.language,
)
_CONTACT_BY_EMAIL = select(*_CONTACT_COLUMNS).where(Contact.email == bindparam("email"))
_CONTACT_BY_PHONE = select(*_CONTACT_COLUMNS).where(Contact.phone == bindparam("phone")).limit(1)
_SAME_MESSAGE = (
    select(Message.ticket_id, Message.full_text)
    .where(Message.message_id == bindparam("message_id"), Message.direction == "in")
    .limit(1)
)
_TICKET_EXISTS = select(Ticket.id).where(Ticket.id == bindparam("ticket_id"))
_TICKET_OF_MESSAGE = (
    select(Message.ticket_id).where(Message.message_id == bindparam("message_id")).limit(1)
)
_TICKET_OF_OUTBOX = (
    select(OutboxMessage.ticket_id)
    .where(
        OutboxMessage.message_id == bindparam("message_id"), OutboxMessage.ticket_id.is_not(None)
    )
    .limit(1)
)
_TICKET_CONTACT = select(Ticket.contact_email).where(Ticket.id == bindparam("ticket_id"))
_WROTE_ON_TICKET = (
    select(Message.id)
    .where(Message.ticket_id == bindparam("ticket_id"), Message.sender == bindparam("sender"))
    .limit(1)
)
_LATEST_OPEN_OF_PHONE = (
    select(Ticket.id, Ticket.updated_at)
    .where(
        Ticket.contact_phone == bindparam("phone"),
        Ticket.state != TicketState.CLOSED.value,
    )
    .order_by(Ticket.updated_at.desc(), Ticket.id.desc())
    .limit(1)
)


# -- the customer file ---------------------------------------------------------------


def known_models(connection: Connection) -> tuple[str, ...]:
    """The machine models of the customer file, which intake recognises in mail."""
    return tuple(connection.scalars(_KNOWN_MODELS))


def machine_by_serial(connection: Connection, serial: str) -> FiledMachine | None:
    found = connection.execute(_MACHINE_BY_SERIAL, {"serial": serial.lower()}).first()
    return FiledMachine(*found) if found is not None else None


def customer_name(connection: Connection, customer_id: int) -> str | None:
    return connection.scalar(_CUSTOMER_NAME, {"customer_id": customer_id})


def contact_by_email(
    connection: Connection, email: str, name: str | None, now: datetime
) -> FiledContact:
    """The sender in the customer file, filed as a new contact (with ``name``) if unknown."""
    found = connection.execute(_CONTACT_BY_EMAIL, {"email": email}).first()
    if found is not None:
        return FiledContact(*found)
    new = {"email": email, "name": name, "created_at": now}
    ((contact_id, _created),) = insert_many_or_get(connection, Contact, "email", [new])
    return FiledContact(contact_id, None, name, None, email, None)


def contact_by_phone(connection: Connection, phone: str, now: datetime) -> FiledContact:
    """The texter in the customer file, filed as a new contact (no name yet) if unknown."""
    found = connection.execute(_CONTACT_BY_PHONE, {"phone": phone}).first()
    if found is not None:
        return FiledContact(*found)
    new = {"phone": phone, "name": "", "created_at": now}
    ((contact_id, _created),) = insert_many_or_get(connection, Contact, "phone", [new])
    return FiledContact(contact_id, None, "", phone, None, None)


# -- the threads ---------------------------------------------------------------------


def hold_message_id(connection: Connection, message_id: str) -> None:
    """Makes a second transaction with this Message-ID wait until this one ends.

    Two copies of one message (other routes, other bytes) processed at once by two
    ``serve`` processes on PostgreSQL would each miss the other's uncommitted message;
    a transaction-scoped advisory lock orders them. SQLite has one writer anyway.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:message_id))"),
            {"message_id": message_id},
        )


def ticket_with_message(connection: Connection, message_id: str, full_text: str) -> int | None:
    """The ticket already holding an inbound message of this Message-ID and text."""
    earlier = connection.execute(_SAME_MESSAGE, {"message_id": message_id}).first()
    if earlier is not None and earlier.full_text == full_text:
        return int(earlier.ticket_id)
    return None


def ticket_exists(connection: Connection, ticket_id: int) -> bool:
    return connection.scalar(_TICKET_EXISTS, {"ticket_id": ticket_id}) is not None


def ticket_of_message_ids(connection: Connection, message_ids: Sequence[str]) -> int | None:
    """The ticket of the first Message-ID we know, ours (outbox) or a customer's."""
    for message_id in message_ids:
        known = connection.scalar(_TICKET_OF_MESSAGE, {"message_id": message_id})
        if known is None:
            known = connection.scalar(_TICKET_OF_OUTBOX, {"message_id": message_id})
        if known is not None:
            return int(known)
    return None


def sender_on_ticket(connection: Connection, ticket_id: int, sender: str) -> bool:
    """Whether ``sender`` is the ticket's contact or wrote on it before."""
    contact_email = connection.scalar(_TICKET_CONTACT, {"ticket_id": ticket_id})
    if (contact_email or "").lower() == sender:
        return True
    values = {"ticket_id": ticket_id, "sender": sender}
    return connection.scalar(_WROTE_ON_TICKET, values) is not None


def latest_open_ticket_of_phone(connection: Connection, phone: str) -> tuple[int, datetime] | None:
    """``(id, updated_at)`` of the phone's most recently updated ticket not closed."""
    found = connection.execute(_LATEST_OPEN_OF_PHONE, {"phone": phone}).first()
    return (found.id, found.updated_at) if found is not None else None


# -- our outbox ----------------------------------------------------------------------


def bounceable_outbox_ids(connection: Connection, message_ids: Sequence[str]) -> list[int]:
    """Our outbox rows with these Message-IDs that left (only those can bounce)."""
    return list(
        connection.scalars(
            select(OutboxMessage.id)
            .where(
                OutboxMessage.message_id.in_(message_ids),
                OutboxMessage.status.in_(BOUNCEABLE_STATUSES),
            )
            .order_by(OutboxMessage.id)
        )
    )


def mark_bounced(connection: Connection, outbox_ids: Sequence[int], mark: BounceMark) -> None:
    values = {"last_error": mark.error, "delivery_status": mark.delivery_status}
    if mark.status is not None:
        values["status"] = mark.status
    connection.execute(
        update(OutboxMessage).where(OutboxMessage.id.in_(outbox_ids)).values(**values)
    )
