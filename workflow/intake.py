"""The intake's rules: where an inbound message goes, whom a new ticket is filed under,
whether it is acknowledged, and what a bounce marks.

Pure functions over plain values; ``gateway/intake/`` loads the facts, asks here, and
writes what comes back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class Route(StrEnum):
    NEW_TICKET = "new_ticket"
    REPLY = "reply"
    AUTO_REPLY = "auto_reply"
    BOUNCE = "bounce"
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class Routing:
    route: Route
    ticket_id: int | None = None  # the ticket replied to
    related_ticket_id: int | None = None  # a ticket a new one refers to
    reason: str = ""


@dataclass(frozen=True)
class ThreadClues:
    """What ties a message to a ticket, strongest first (each a ticket id or None)."""

    token_ticket: int | None = None  # signed reply address, verified for this sender
    header_ticket: int | None = None  # In-Reply-To / References to a message we know
    subject_ticket: int | None = None  # [SL-000042] in the subject
    sender_on_subject_ticket: bool = False


def route_email(
    *, bounce: bool, auto_reply: str | None, duplicate_of: int | None, clues: ThreadClues
) -> Routing:
    """Decides what a parsed email is; RFC 3834 messages never open a ticket.

    >>> route_email(bounce=False, auto_reply=None, duplicate_of=None,
    ...             clues=ThreadClues(subject_ticket=7)).route
    <Route.NEW_TICKET: 'new_ticket'>
    """
    if bounce:
        return Routing(Route.BOUNCE, reason="delivery status notification")
    if auto_reply:
        return Routing(Route.AUTO_REPLY, reason=auto_reply)
    if duplicate_of is not None:
        return Routing(
            Route.DUPLICATE, ticket_id=duplicate_of, reason="Message-ID already on ticket"
        )
    if clues.token_ticket is not None:
        return Routing(Route.REPLY, ticket_id=clues.token_ticket, reason="signed reply address")
    if clues.header_ticket is not None:
        return Routing(Route.REPLY, ticket_id=clues.header_ticket, reason="In-Reply-To/References")
    if clues.subject_ticket is not None:
        if clues.sender_on_subject_ticket:
            return Routing(Route.REPLY, ticket_id=clues.subject_ticket, reason="subject reference")
        # Anyone can type a reference into a subject; a stranger's message must not
        # land on someone else's ticket, so it opens its own, linked to that one.
        return Routing(
            Route.NEW_TICKET,
            related_ticket_id=clues.subject_ticket,
            reason="subject reference from a sender who is not on that ticket",
        )
    return Routing(Route.NEW_TICKET, reason="new request")


def sms_thread(
    latest_open: tuple[int, datetime] | None, now: datetime, window_days: int
) -> int | None:
    """The ticket a customer's text joins: their most recently updated open ticket
    (``(id, updated_at)``), if it moved within ``window_days``; None opens a new one.
    A text carries no thread headers, so recency is the only clue.

    >>> from datetime import UTC
    >>> now = datetime(2026, 11, 25, tzinfo=UTC)
    >>> sms_thread((7, now - timedelta(days=3)), now, 14)
    7
    >>> sms_thread((7, now - timedelta(days=15)), now, 14) is None
    True
    """
    if latest_open is None:
        return None
    ticket_id, updated_at = latest_open
    return ticket_id if updated_at >= now - timedelta(days=window_days) else None


@dataclass(frozen=True)
class FiledContact:
    """The sender as the customer file knows them (filed on first contact)."""

    id: int
    customer_id: int | None
    name: str | None
    phone: str | None
    email: str | None
    language: str | None


@dataclass(frozen=True)
class FiledMachine:
    """A machine of the customer file, found by the serial number a message gave."""

    id: int
    model: str
    customer_id: int | None


def customer_of(contact: FiledContact | None, machine: FiledMachine | None) -> int | None:
    """The customer a new ticket is filed under: the sender's own company, else the
    owner of the machine whose serial the message gave.

    >>> customer_of(None, FiledMachine(3, "TS-300", 12))
    12
    """
    if contact is not None and contact.customer_id is not None:
        return contact.customer_id
    return machine.customer_id if machine is not None else None


def company_of(stated: str | None, customer_name: str | None) -> str | None:
    """The company on the intake record: as the customer wrote it, else the customer
    file's name for the customer the ticket is filed under.

    >>> company_of("", "华东机械厂"), company_of("东方电子", "华东机械厂")
    ('华东机械厂', '东方电子')
    """
    return stated or customer_name or None


@dataclass(frozen=True)
class BounceMark:
    """What a delivery report sets on the outbox rows it names."""

    status: str | None  # None: the row keeps its status
    delivery_status: str
    error: str


# Only what already left can bounce: a report naming a row still queued or being sent
# (a forgery, or a mix-up) must not stop it from going out.
BOUNCEABLE_STATUSES = ("sent", "bounced")


def bounce_mark(reason: str, permanent: bool, failed_recipients: tuple[str, ...]) -> BounceMark:
    """A permanent failure (5.x.x) marks the message bounced; a delay (4.x.x) only says
    it is still in transit somewhere, with nothing to undo (RFC 3464).

    >>> bounce_mark("mailbox full", False, ()).status is None
    True
    """
    recipients = ", ".join(failed_recipients)
    error = f"bounce: {reason}" + (f" ({recipients})" if recipients else "")
    if permanent:
        return BounceMark("bounced", "bounced", error)
    return BounceMark(None, "delayed", error)


def acknowledgement_refusal(
    sender: str | None, own_domains: tuple[str, ...], sent_last_hour: int, hourly_limit: int
) -> str | None:
    """Why no automatic reply may go to ``sender``, or None when one may.

    Replying to ourselves would loop; more than ``hourly_limit`` replies an hour to one
    address is how two auto-responders flood each other (RFC 3834 §2).
    """
    if not sender:
        return "no sender address"
    domain = sender.rpartition("@")[2].lower()
    if domain in {d.lower() for d in own_domains}:
        return "sender is one of our own addresses"
    if sent_last_hour >= hourly_limit:
        return f"{sent_last_hour} automatic replies to {sender} in the last hour"
    return None


_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def customer_language(known: str | None, text: str, default: str) -> str:
    """The customer's language: as filed, else Chinese if they wrote Chinese, else English.

    >>> customer_language(None, "打印机不开机", "en"), customer_language(None, "No power", "zh-CN")
    ('zh-CN', 'en')
    """
    if known:
        return known
    if _CJK.search(text):
        return "zh-CN"
    if re.search(r"[A-Za-z]{3,}", text):
        return "en"
    return default
