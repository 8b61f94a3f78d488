"""Phone numbers: whatever a customer or a spreadsheet wrote, in, E.164 out.

Customers write numbers as ``138-0013-8000``, ``(010) 6552 9988``, ``0086 138…``, in
full-width digits from a Chinese input method, or as ``tel:`` links. Everything the
service stores, compares and texts is E.164 (``+8613800138000``), so the same person is
recognised whichever way they wrote it. The rules themselves (which prefixes are valid,
which ranges are mobile) come from libphonenumber's metadata, not from our own regexes,
which would go stale whenever China opens a new mobile range.
"""

from __future__ import annotations

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType

# Some countries' ranges cannot be told apart (the US: any number may be a mobile), so
# libphonenumber answers FIXED_LINE_OR_MOBILE; an SMS may well reach those.
_MOBILE_TYPES = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})


def normalize_phone(raw: str, region: str = "CN", *, mobile_only: bool = False) -> str | None:
    """The E.164 form of a valid number, or None.

    ``region`` is assumed for numbers written without a country code. With
    ``mobile_only`` a valid fixed line is None as well (it cannot receive an SMS).

    >>> normalize_phone("０086 138-0013-8000")
    '+8613800138000'
    >>> normalize_phone("tel:(010) 6552 9988")
    '+861065529988'
    >>> normalize_phone("(010) 6552 9988", mobile_only=True) is None
    True
    >>> normalize_phone("12345") is None
    True
    """
    text = raw.strip()
    # libphonenumber reads RFC 3966 "tel:+86-…" itself, but not "tel:" before a national
    # number, nor an upper-case "TEL:" as some vCards write it.
    if text[:4].lower() == "tel:":
        text = text[4:].strip()
    if not text:
        return None
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    if mobile_only and phonenumbers.number_type(number) not in _MOBILE_TYPES:
        return None
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def find_phones(text: str, region: str = "CN") -> tuple[str, ...]:
    """Valid numbers in free text, E.164, each once, in the order they first appear.

    Only numbers that are valid for their country count, so order numbers, dates and
    serials that merely look like digits are left alone.

    >>> find_phones("请致电 138 0013 8000 或 010-6552 9988，订单号 20240101123")
    ('+8613800138000', '+861065529988')
    """
    found: dict[str, None] = {}  # a dict keeps first-seen order while de-duplicating
    for match in phonenumbers.PhoneNumberMatcher(text, region):
        found.setdefault(phonenumbers.format_number(match.number, PhoneNumberFormat.E164))
    return tuple(found)
