"""The domain as tables: SQLAlchemy 2.0 typed models.

Every table of DESIGN.md "Domain" lives here. The unique constraints are what make a
replay harmless: an inbound message, an outbox row, a check-in for one engineer and local
day, and a report for one kind and period can each exist only once. State names are
plain strings validated by ``workflow``; storage does not interpret them.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from storage.types import UTCDateTime

# Explicit constraint names keep Alembic migrations identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


class Customer(Base):
    """A company in the customer file (客户档案)."""

    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    notes: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]

    contacts: Mapped[list[Contact]] = relationship(back_populates="customer")
    machines: Mapped[list[Machine]] = relationship(back_populates="customer")


class Contact(Base):
    """A person at a customer who writes or texts to support."""

    __tablename__ = "contacts"
    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str | None] = mapped_column(String(320), unique=True)
    phone: Mapped[str | None] = mapped_column(String(20), unique=True)
    language: Mapped[str | None] = mapped_column(String(10))
    created_at: Mapped[datetime]

    customer: Mapped[Customer | None] = relationship(back_populates="contacts")


class Machine(Base):
    """A machine shipped to a customer: model, serial, special product."""

    __tablename__ = "machines"
    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    model: Mapped[str] = mapped_column(String(100))
    serial: Mapped[str | None] = mapped_column(String(100), unique=True)
    shipped_on: Mapped[date | None] = mapped_column(Date)
    special: Mapped[bool] = mapped_column(Boolean, default=False)

    customer: Mapped[Customer] = relationship(back_populates="machines")


class Staff(Base):
    """A member of the department: receiver, engineer, supervisor, manager, sales, quality."""

    __tablename__ = "staff"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    email: Mapped[str] = mapped_column(String(320), unique=True)
    phone: Mapped[str | None] = mapped_column(String(20), unique=True)
    supervisor_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    language: Mapped[str] = mapped_column(String(10))
    timezone: Mapped[str] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    supervisor: Mapped[Staff | None] = relationship(remote_side=[id])


class SmsConsent(Base):
    """STOP/START per phone number (staff and customers alike)."""

    __tablename__ = "sms_consents"
    phone: Mapped[str] = mapped_column(String(20), primary_key=True)
    opted_out: Mapped[bool] = mapped_column(Boolean)
    changed_at: Mapped[datetime]
    keyword: Mapped[str] = mapped_column(String(20))


class Ticket(Base):
    """The intake record (电话接听处理单). Its reference is derived from the id."""

    __tablename__ = "tickets"
    id: Mapped[int] = mapped_column(primary_key=True)
    state: Mapped[str] = mapped_column(String(20), index=True)
    channel: Mapped[str] = mapped_column(String(10))
    subject: Mapped[str] = mapped_column(String(500), default="")
    requester_name: Mapped[str | None] = mapped_column(String(200))  # 诉求人姓名
    identity: Mapped[str | None] = mapped_column(String(200))  # 身份、所在部门
    company: Mapped[str | None] = mapped_column(String(200))
    contact_email: Mapped[str | None] = mapped_column(String(320), index=True)
    contact_phone: Mapped[str | None] = mapped_column(String(20), index=True)  # 联系方式
    problem: Mapped[str] = mapped_column(Text, default="")  # 问题要点
    request: Mapped[str | None] = mapped_column(Text)  # 客户要求
    promises: Mapped[str | None] = mapped_column(Text)  # 承诺
    machine_model: Mapped[str | None] = mapped_column(String(100))
    serial: Mapped[str | None] = mapped_column(String(100))
    fault_type: Mapped[str | None] = mapped_column(String(50))
    language: Mapped[str] = mapped_column(String(10))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"), index=True)
    machine_id: Mapped[int | None] = mapped_column(ForeignKey("machines.id"))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))  # 第一受理人
    engineer_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    supervisor_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    # A subject reference from someone who is not on that ticket opens a new ticket
    # linked to the one it names, instead of attaching to it silently.
    related_ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    created_at: Mapped[datetime] = mapped_column(index=True)
    updated_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    confirmed_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]

    messages: Mapped[list[Message]] = relationship(
        back_populates="ticket", order_by="Message.id", foreign_keys="Message.ticket_id"
    )
    deadlines: Mapped[list[Deadline]] = relationship(
        back_populates="ticket", order_by="Deadline.id"
    )


class InboundMessage(Base):
    """Raw bytes of everything that arrived, committed before we acknowledge it."""

    __tablename__ = "inbound_messages"
    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(10))
    source: Mapped[str] = mapped_column(String(100))  # smtp, imap:<mailbox>, cli, twilio
    # Message-ID + content hash for mail (same id, other bytes → a second row, never a
    # silent drop), the content hash alone without a Message-ID, MessageSid for SMS.
    dedupe_key: Mapped[str] = mapped_column(String(600), unique=True)
    message_id: Mapped[str | None] = mapped_column(String(500), index=True)
    envelope_from: Mapped[str | None] = mapped_column(String(320))
    envelope_to: Mapped[list[Any]] = mapped_column(default=list)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(20), default="pending")
    result: Mapped[str | None] = mapped_column(String(200))
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    processed_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_inbound_messages_state_id", "state", "id"),)


class Message(Base):
    """One message of a ticket's thread, either direction, either channel."""

    __tablename__ = "messages"
    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    direction: Mapped[str] = mapped_column(String(3))  # in, out
    channel: Mapped[str] = mapped_column(String(10))
    sender: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(500), default="")
    body: Mapped[str] = mapped_column(Text)  # what the person wrote (quotes stripped)
    full_text: Mapped[str] = mapped_column(Text, default="")
    message_id: Mapped[str | None] = mapped_column(String(500), index=True)
    inbound_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_messages.id"), index=True)
    outbox_id: Mapped[int | None] = mapped_column(ForeignKey("outbox.id"))
    created_at: Mapped[datetime]

    ticket: Mapped[Ticket] = relationship(back_populates="messages", foreign_keys=[ticket_id])
    attachments: Mapped[list[Attachment]] = relationship(
        back_populates="message", order_by="Attachment.id"
    )


class Attachment(Base):
    __tablename__ = "attachments"
    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    filename: Mapped[str] = mapped_column(String(500))
    content_type: Mapped[str] = mapped_column(String(200))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    content: Mapped[bytes] = mapped_column(LargeBinary)

    message: Mapped[Message] = relationship(back_populates="attachments")


class Deadline(Base):
    """One clock of the policy on a ticket, trip or check-in.

    ``next_stage_at`` is when the tick must next look at it (warning, breach, further
    escalation); the tick selects on it with an index, so its cost grows with what is
    due, not with what is open.
    """

    __tablename__ = "deadlines"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    trip_id: Mapped[int | None] = mapped_column(ForeignKey("trips.id"), index=True)
    checkin_id: Mapped[int | None] = mapped_column(ForeignKey("checkins.id"))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    started_at: Mapped[datetime]
    due_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(20), default="open")  # open, met, breached, stopped
    stages_done: Mapped[int] = mapped_column(Integer, default=0)
    next_stage_at: Mapped[datetime | None]
    lease_until: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]

    ticket: Mapped[Ticket | None] = relationship(back_populates="deadlines")

    __table_args__ = (Index("ix_deadlines_due", "state", "next_stage_at"),)


class Trip(Base):
    """The on-site service record (技术支持现场服务单)."""

    __tablename__ = "trips"
    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    engineer_id: Mapped[int] = mapped_column(ForeignKey("staff.id"), index=True)
    supervisor_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    state: Mapped[str] = mapped_column(String(20), default="planned")
    starts_on: Mapped[date] = mapped_column(Date)
    ends_on: Mapped[date] = mapped_column(Date)
    checklist: Mapped[list[Any]] = mapped_column(default=list)
    site_contacts: Mapped[list[Any]] = mapped_column(default=list)
    eta: Mapped[datetime | None]
    arrived_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    signed_off_by: Mapped[str | None] = mapped_column(String(200))  # 签字盖章
    signed_off_at: Mapped[datetime | None]
    report: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]


class DailyCheckIn(Base):
    """An engineer's daily check-in during a trip, and the supervisor's reply to it."""

    __tablename__ = "checkins"
    id: Mapped[int] = mapped_column(primary_key=True)
    trip_id: Mapped[int] = mapped_column(ForeignKey("trips.id"), index=True)
    engineer_id: Mapped[int] = mapped_column(ForeignKey("staff.id"))
    local_date: Mapped[date] = mapped_column(Date)
    body: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime]
    inbound_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_messages.id"))
    relayed_at: Mapped[datetime | None]
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))

    __table_args__ = (UniqueConstraint("engineer_id", "local_date"),)


class Callback(Base):
    """A sales assistant's call back (回访) or re-check (复查) of a solved ticket."""

    __tablename__ = "callbacks"
    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20), default="callback")
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), index=True)
    due_on: Mapped[date] = mapped_column(Date, index=True)
    state: Mapped[str] = mapped_column(String(20), default="open")
    outcome: Mapped[str | None] = mapped_column(Text)
    satisfaction: Mapped[int | None] = mapped_column(Integer)
    recorded_at: Mapped[datetime | None]

    __table_args__ = (UniqueConstraint("ticket_id", "kind"),)


class OutboxMessage(Base):
    """Everything we send, written in the transaction of the decision that causes it."""

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(300), unique=True)
    channel: Mapped[str] = mapped_column(String(10))  # email, sms
    to_address: Mapped[str] = mapped_column(String(320))
    template: Mapped[str] = mapped_column(String(100))
    language: Mapped[str] = mapped_column(String(10))
    context: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Filled when rendered; a template that fails to render leaves the row queued.
    subject: Mapped[str | None] = mapped_column(String(500))
    body: Mapped[str | None] = mapped_column(Text)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    reply_to_message_id: Mapped[str | None] = mapped_column(String(500))
    references: Mapped[list[Any]] = mapped_column(default=list)
    message_id: Mapped[str | None] = mapped_column(String(500), index=True)
    auto_submitted: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(20), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    lease_until: Mapped[datetime | None]
    provider_id: Mapped[str | None] = mapped_column(String(100), index=True)
    delivery_status: Mapped[str | None] = mapped_column(String(30))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    # Set when an attempt may have reached the provider without us learning the outcome
    # (a timeout or 5xx after the request left, a worker killed mid-send): an SMS is
    # reconciled against the provider's message list before it is sent again.
    in_doubt: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    __table_args__ = (
        Index("ix_outbox_due", "status", "next_attempt_at"),
        # The per-sender limit on automatic replies counts recent rows to one address.
        Index("ix_outbox_recipient_recent", "to_address", "created_at"),
    )


class Report(Base):
    """A generated periodic report (月报), one per kind and period."""

    __tablename__ = "reports"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(30))
    period: Mapped[str] = mapped_column(String(20))  # "2026-11"
    content_html: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime]

    __table_args__ = (UniqueConstraint("kind", "period"),)


class Event(Base):
    """Audit trail: every state change, who made it and through which channel."""

    __tablename__ = "events"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    kind: Mapped[str] = mapped_column(String(50))
    actor: Mapped[str] = mapped_column(String(320))  # "system", an address, a phone
    via: Mapped[str] = mapped_column(String(20))  # email, sms, cli, tick
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ServiceSecret(Base):
    """Secrets the service makes for itself on first run (the reply-token key)."""

    __tablename__ = "service_secrets"
    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]


class ImapCursor(Base):
    """How far one IMAP mailbox has been read: UIDs are only valid within a UIDVALIDITY."""

    __tablename__ = "imap_cursors"
    mailbox: Mapped[str] = mapped_column(String(300), primary_key=True)
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime]


class PhoneFlag(Base):
    """A number the SMS provider called undeliverable (Twilio 21211 invalid, 21614 not
    a mobile): SMS to it fail at once instead of being tried again."""

    __tablename__ = "phone_flags"
    phone: Mapped[str] = mapped_column(String(20), primary_key=True)
    code: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(300))
    flagged_at: Mapped[datetime]
