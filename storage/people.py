"""Who a phone number belongs to, as the senders of notifications ask it."""

from __future__ import annotations

from sqlalchemy import Connection, bindparam, select

from storage.models import Contact, SmsConsent, Staff

_STAFF_EMAIL = select(Staff.email).where(Staff.phone == bindparam("phone")).limit(1)
_CONTACT_EMAIL = (
    select(Contact.email)
    .where(Contact.phone == bindparam("phone"), Contact.email.is_not(None))
    .limit(1)
)
_OPTED_OUT = select(SmsConsent.opted_out).where(SmsConsent.phone == bindparam("phone"))


def emails_of_phone(connection: Connection, phone: str) -> tuple[str | None, str | None]:
    """The email addresses known for ``phone``: the staff member's and the contact's."""
    values = {"phone": phone}
    return connection.scalar(_STAFF_EMAIL, values), connection.scalar(_CONTACT_EMAIL, values)


def opted_out_of_sms(connection: Connection, phone: str) -> bool:
    """Whether ``phone`` texted STOP (or 退订) and has not opted in again."""
    return bool(connection.scalar(_OPTED_OUT, {"phone": phone}))
