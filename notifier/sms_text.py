"""Sizing SMS bodies: GSM-7 or UCS-2 segments, shortening with a notice, no URLs.

An SMS body is GSM-7 when every character is in the GSM 03.38 alphabet (160 characters
in one segment, 153 per part of a longer message; characters of the extension table
count twice), otherwise UCS-2 (70 in one segment, 67 per part, counted in UTF-16 code
units, so an emoji counts twice). Chinese text is always UCS-2.

Twilio's guidelines for mainland China forbid URLs in message bodies, so every body
goes through ``strip_urls`` before it is sized.
"""

from __future__ import annotations

import math
import re

GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = "^{}\\[~]|€\f"
_GSM7 = frozenset(GSM7_BASIC) | frozenset(GSM7_EXTENSION)

SHORTENED_NOTICE = {"zh-CN": "…（内容过长，详见邮件）", "en": "… (shortened; see email)"}

# scheme://…, www.…, and bare host names with a common top-level domain (example.cn/x,
# support.example.com) — but not e-mail addresses, whose "@" comes right before the host.
_TLDS = "com|cn|net|org|info|biz|io|co|me|top|xyz|site|online|app|dev|hk|tw|edu|gov"
# A URL runs over ASCII URL characters and does not end in sentence punctuation; Chinese
# text right after it (no space in between) is not part of it.
_TAIL = r"[\w\-.~:/?#\[\]@!$&'()*+,;=%]*[\w/#=&%~\-]"
_URL = re.compile(
    rf"(?:\b[a-z][a-z0-9+.-]*://{_TAIL}"
    rf"|\bwww\.{_TAIL}"
    rf"|(?<![@\w.-])(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+(?:{_TLDS})\b(?![@\w-])(?:/{_TAIL})?)",
    re.IGNORECASE | re.ASCII,
)


def is_gsm7(text: str) -> bool:
    """Whether the whole text fits the GSM 03.38 alphabet.

    >>> is_gsm7("Ticket SL-000001 received"), is_gsm7("受理编号 SL-000001")
    (True, False)
    """
    return all(ch in _GSM7 for ch in text)


def encoded_length(text: str) -> int:
    """Length in septets (GSM-7) or UTF-16 code units (UCS-2).

    >>> encoded_length("a€"), encoded_length("您好"), encoded_length("😀")
    (3, 2, 2)
    """
    if is_gsm7(text):
        return sum(2 if ch in GSM7_EXTENSION else 1 for ch in text)
    return len(text.encode("utf-16-le")) // 2


def segments(text: str) -> int:
    """How many SMS segments the text is sent as.

    >>> segments("您" * 70), segments("您" * 71), segments("您" * 134), segments("您" * 135)
    (1, 2, 2, 3)
    >>> segments("a" * 160), segments("a" * 161)
    (1, 2)
    """
    length = encoded_length(text)
    single, part = (160, 153) if is_gsm7(text) else (70, 67)
    if length <= single:
        return 1
    return math.ceil(length / part)


def strip_urls(text: str) -> str:
    """Removes URLs (and tidies the spaces they leave); e-mail addresses stay.

    >>> strip_urls("详见 https://example.com/t/1 或 www.example.cn，回复 support@example.com")
    '详见 或，回复 support@example.com'
    """
    stripped = _URL.sub("", text)
    stripped = re.sub(r"[ \t]{2,}", " ", stripped)
    return re.sub(r"[ \t]+([，。,.;；])", r"\1", stripped).strip()


def fit(text: str, max_segments: int, language: str) -> str:
    """The text without URLs, shortened with a notice if over ``max_segments``.

    >>> shortened = fit("您" * 80, 1, "zh-CN")
    >>> segments(shortened), shortened.endswith("…（内容过长，详见邮件）"), len(shortened)
    (1, True, 70)
    """
    text = strip_urls(text)
    if segments(text) <= max_segments:
        return text
    notice = SHORTENED_NOTICE.get(language, SHORTENED_NOTICE["en"])
    low, high = 0, len(text)  # the longest prefix that fits together with the notice
    while low < high:
        middle = (low + high + 1) // 2
        if segments(text[:middle].rstrip() + notice) <= max_segments:
            low = middle
        else:
            high = middle - 1
    return text[:low].rstrip() + notice
