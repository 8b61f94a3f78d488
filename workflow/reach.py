"""How a notification reaches a person who opted out of SMS: the opt-out fallback.

One rule for everything that sends: the intake (replies to staff commands, relays) and
the outbox dispatcher (an SMS refused at the carrier for an opt-out) both ask here.
"""

from __future__ import annotations

from dataclasses import replace

from workflow.tickets import Notification


def fallback_email(staff_email: str | None, contact_email: str | None) -> str | None:
    """The address an SMS goes to instead when its number opted out: the staff member's
    own address first (a number on the staff list is that person's), else the customer
    file's contact with that number.

    >>> fallback_email(None, "li@example.com"), fallback_email("wq@ex.cn", "li@example.com")
    ('li@example.com', 'wq@ex.cn')
    """
    return staff_email or contact_email or None


def sms_or_email(note: Notification, opted_out: bool, email: str | None) -> Notification | None:
    """A notification as it may go out: an SMS to a number that opted out goes by email
    instead (or not at all, without an address); sending it would fail at the carrier.

    >>> note = Notification("k", "checkin_relay", "sms", "+8613800138000", "zh-CN")
    >>> sms_or_email(note, True, "li@example.com").channel
    'email'
    """
    if note.channel != "sms" or not opted_out:
        return note
    return replace(note, channel="email", recipient=email) if email else None
