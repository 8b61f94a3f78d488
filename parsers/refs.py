"""Ticket references: ``SL-000042``, the name people and subjects use for a ticket.

The reference is the ticket's integer id behind a fixed prefix, zero-padded to six
digits so references sort and read alike, and growing past six digits rather than
wrapping. People retype references by hand, often with a Chinese input method that
produces full-width letters, digits and punctuation (``ＳＬ－０００４２``), so reading is
forgiving while writing is strict.

A reply's subject carries the reference in brackets, the convention of ticket systems
that mail clients and people leave alone: ``Re: [SL-000042] 打印机不开机``.
"""

from __future__ import annotations

import re
import unicodedata

PREFIX = "SL"
DIGITS = 6
# Ids come from a 64-bit database column; a longer number cannot be one of ours.
_MAX_ID = 2**63 - 1

# Dashes people (and word processors) type between the prefix and the number. NFKC
# already folds the full-width hyphen-minus; these have no compatibility mapping.
_DASHES = "-\u2010\u2011\u2012\u2013\u2014\u2212\ufe63"
_NUMBER = rf"SL\s*[{_DASHES}]?\s*(\d{{1,19}})"
_WHOLE_REF = re.compile(rf"#?\s*{_NUMBER}", re.IGNORECASE)
# In a subject only a marked reference counts: "[SL-42]", "【SL-42】" or "#SL-42", so a
# product name that happens to start with "SL" is never taken for a ticket.
_SUBJECT_REF = re.compile(
    rf"(?:\[\s*{_NUMBER}\s*\]|【\s*{_NUMBER}\s*】|#\s*{_NUMBER}(?![0-9A-Za-z]))", re.IGNORECASE
)
# Reply and forward markers that mail clients put in front of a subject, in the
# languages our customers' clients use (Outlook in Chinese writes "回复:" and "转发:").
_REPLY_PREFIX = re.compile(
    r"^(?:\s*(?:re|fw|fwd|aw|wg|sv|vs|antw|回复|回覆|答复|转发|轉寄|转寄)\s*(?:\[\d+\])?\s*[:：])+",
    re.IGNORECASE,
)


def _fold(text: str) -> str:
    # NFKC turns full-width letters, digits, "－", "［］" and "＃" into their ASCII twins.
    return unicodedata.normalize("NFKC", text)


def _to_id(digits: str) -> int | None:
    value = int(digits)
    return value if 0 < value <= _MAX_ID else None


def format_ref(ticket_id: int) -> str:
    """The reference of a ticket id.

    >>> format_ref(42)
    'SL-000042'
    >>> format_ref(1234567)
    'SL-1234567'
    """
    if isinstance(ticket_id, bool) or not 0 < ticket_id <= _MAX_ID:
        raise ValueError(f"a ticket id is a positive integer, not {ticket_id!r}")
    return f"{PREFIX}-{ticket_id:0{DIGITS}d}"


def parse_ref(text: str) -> int | None:
    """The ticket id of a reference someone typed, or None if it is not one.

    >>> parse_ref("SL-000042"), parse_ref("sl-42"), parse_ref("ＳＬ－０００４２")
    (42, 42, 42)
    >>> parse_ref("[SL-000042]"), parse_ref("#SL-42")
    (42, 42)
    >>> parse_ref("SL-000000") is None, parse_ref("42") is None
    (True, True)
    """
    # A reference pasted from a subject keeps its brackets: "[SL-000042]".
    match = _WHOLE_REF.fullmatch(_fold(text).strip().strip("[]【】 "))
    return _to_id(match.group(1)) if match else None


def find_subject_ref(subject: str) -> int | None:
    """The ticket id marked in a subject (the first one, if there are several), or None.

    >>> find_subject_ref("Re: [SL-000042] 打印机不开机")
    42
    >>> find_subject_ref("回复：【SL-000042】打印机不开机"), find_subject_ref("about #sl-42")
    (42, 42)
    >>> find_subject_ref("SL-42 toner") is None
    True
    """
    for match in _SUBJECT_REF.finditer(_fold(subject)):
        digits = next(group for group in match.groups() if group is not None)
        ticket_id = _to_id(digits)
        if ticket_id is not None:
            return ticket_id
    return None


def tag_subject(subject: str, ticket_id: int) -> str:
    """The subject with ``[SL-……] `` in front, after any ``Re:``/``Fwd:``, added once.

    A subject whose first marked reference is already this ticket is returned as is,
    so tagging every outgoing reply never piles tags up. Another ticket's reference
    (a forwarded old thread) stays, behind ours, so ``find_subject_ref`` finds ours.

    >>> tag_subject("Re: 打印机不开机", 42)
    'Re: [SL-000042] 打印机不开机'
    >>> tag_subject("Re: [SL-000042] 打印机不开机", 42)
    'Re: [SL-000042] 打印机不开机'
    >>> tag_subject("回复：卡纸", 42)
    '回复：[SL-000042] 卡纸'
    >>> tag_subject("", 42)
    '[SL-000042]'
    """
    tag = f"[{format_ref(ticket_id)}]"
    if find_subject_ref(subject) == ticket_id:
        return subject
    prefix_match = _REPLY_PREFIX.match(subject)
    prefix = prefix_match.group(0).strip() if prefix_match else ""
    rest = subject[prefix_match.end() :].strip() if prefix_match else subject.strip()
    # A full-width colon carries its own spacing: "回复：[SL-000042] 卡纸".
    if prefix and not prefix.endswith("："):
        prefix += " "
    return f"{prefix}{tag} {rest}".rstrip()
