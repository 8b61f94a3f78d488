"""SMS consent and routing, and the command table.

An inbound SMS is a carrier keyword, a staff command or a customer's message
(``route_sms``). A carrier keyword is recorded (``consent_keyword``); a staff member's
HELP, or text we cannot read, is answered with the usage (``usage_reply``,
``unrecognised_text``: free text from an engineer on a trip is a check-in). The command
table (``COMMANDS``, ``run_command``) says which workflow function each parsed staff
command stands for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, fields
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Protocol

from workflow.commands.base import (
    ENGINEER_ROLES,
    CommandOutcome,
    CommandResult,
    Facts,
    Inbound,
    Rules,
    StaffView,
    reply_to_sender,
)
from workflow.commands.tickets import (
    accept_ticket,
    assign_ticket,
    confirm_ticket,
    escalate_ticket,
    resolve_ticket,
)
from workflow.commands.trips import (
    acknowledge_checkins,
    record_arrival,
    record_checkin,
    report_eta,
    trips_today,
)
from workflow.tickets import Notification

# -- help, free text, consent ------------------------------------------------------------


def usage_reply(inbound: Inbound, usage: str, *, unrecognised: bool = False) -> CommandResult:
    """HELP/帮助, or a message we could not read: the short usage for the sender's role
    (``parsers.sms_commands.usage_text``), never silence."""
    context = {"usage": usage, "role": inbound.sender.role, "unrecognised": unrecognised}
    return CommandResult(
        CommandOutcome.REPLIED, reply=reply_to_sender(inbound, "sms_usage", context)
    )


def unrecognised_text(
    inbound: Inbound, facts: Facts, rules: Rules, text: str, usage: str
) -> CommandResult:
    """Free text from staff: an engineer on a trip today is checking in (the policy asks
    for a daily SMS, not for a keyword); anyone else gets the usage."""
    sender = inbound.sender
    if sender.role in ENGINEER_ROLES and trips_today(sender, facts.trips, inbound.now):
        return record_checkin(inbound, facts, rules, text)
    return usage_reply(inbound, usage, unrecognised=True)


class SmsRoute(StrEnum):
    CONSENT = "consent"  # a carrier keyword: recorded, no ticket
    STAFF_COMMAND = "staff_command"
    CUSTOMER_MESSAGE = "customer_message"  # a new ticket or a message on one


def route_sms(*, sender_is_staff: bool, consent_keyword: bool) -> SmsRoute:
    """What an inbound SMS is. Carrier keywords first, from anyone; only a staff number
    sends commands, so a customer's "OK" is a message on their ticket.

    >>> route_sms(sender_is_staff=False, consent_keyword=False)
    <SmsRoute.CUSTOMER_MESSAGE: 'customer_message'>
    """
    if consent_keyword:
        return SmsRoute.CONSENT
    return SmsRoute.STAFF_COMMAND if sender_is_staff else SmsRoute.CUSTOMER_MESSAGE


@dataclass(frozen=True)
class ConsentChange:
    phone: str
    opted_out: bool
    keyword: str
    changed_at: datetime


@dataclass(frozen=True)
class ConsentResult:
    change: ConsentChange | None  # None for HELP: nothing to record
    reply: Notification | None


def consent_keyword(
    phone: str,
    kind: str,
    keyword: str,
    now: datetime,
    *,
    key: str,
    sender: StaffView | None = None,
    usage: str = "",
) -> ConsentResult:
    """STOP/退订/TD (``opt_out``), START (``opt_in``) or HELP (``help``) from ``phone``.

    The carrier (Twilio's opt-out handling) answers the keywords itself, so we add no
    reply, except the usage for a staff member's HELP, which is what they are after.
    """
    if kind == "help":
        reply = None
        if sender is not None:
            reply = usage_reply(Inbound(sender, now, key), usage).reply
        return ConsentResult(None, reply)
    if kind not in ("opt_out", "opt_in"):
        raise ValueError(f"unknown consent kind {kind!r}")
    return ConsentResult(ConsentChange(phone, kind == "opt_out", keyword, now), None)


# -- the command table --------------------------------------------------------------------


class ParsedCommand(Protocol):
    """A staff command as read from the text: a frozen dataclass whose ``verb`` (a class
    attribute, a ``str`` or a ``StrEnum``) names the command and whose fields are its
    arguments, e.g. ``parsers.sms_commands.Done(ticket_id=42, summary="…")``."""

    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]

    @property
    def verb(self) -> str: ...


# The verbs of ``parsers.sms_commands.Verb``. Each function takes the inbound message,
# the facts and the rules, then the command's fields by name; HELP and a carrier keyword
# (CONSENT) stand for the usage, whatever their fields.
COMMANDS: Mapping[str, Callable[..., CommandResult]] = {
    "accept": accept_ticket,
    "checkin": record_checkin,
    "arrived": record_arrival,
    "eta": report_eta,
    "done": resolve_ticket,
    "escalate": escalate_ticket,
    "help": usage_reply,
    "ack": acknowledge_checkins,
    "assign": assign_ticket,
    "confirm": confirm_ticket,
    "consent": usage_reply,
    "unknown": unrecognised_text,
}


def run_command(
    command: ParsedCommand, message: Inbound, facts: Facts, rules: Rules, usage: str
) -> CommandResult:
    """The workflow function a parsed staff command stands for, called with the command's
    fields as its keyword arguments (the email commands of the clocks issue call the same
    functions). ``usage`` is the usage text for the sender's role and language
    (``parsers.sms_commands.usage_text``), for HELP and for text no command matches.

    The table is keyed by verb, not by the parser's command classes, because ``workflow``
    never imports ``parsers`` (dependencies run one way): the verb and the field names are
    the whole contract between the two.
    """
    function = COMMANDS.get(str(command.verb))  # a StrEnum's str is its value
    if function is None:
        raise AssertionError(f"unhandled command {command!r}")
    if function is usage_reply:
        return usage_reply(message, usage)
    arguments = {field.name: getattr(command, field.name) for field in fields(command)}
    if function is unrecognised_text:
        arguments["usage"] = usage
    return function(message, facts, rules, **arguments)
