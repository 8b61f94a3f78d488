"""Where an inbound email goes: a new intake record, a reply on one, or nowhere (and why)."""

from __future__ import annotations

import re
from dataclasses import dataclass
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
