"""Quoted replies, forwarded history and signatures: what the sender actually wrote.

The approach follows discourse/email_reply_trimmer: give every line a class, then cut on
the pattern of classes rather than on any single line, because one line ("From: ...",
"> ...") is ambiguous on its own while a block of them is not. The patterns cover the
clients our customers use: Gmail, Outlook, Apple Mail, Thunderbird in English and in
Chinese (QQ Mail, Foxmail, NetEase 163/126, Gmail zh, Outlook zh-CN and zh-TW).

>>> visible_reply('打印机已修好。\\n\\n在 2026-11-20 10:15，"张伟" <zw@163.com> 写道：\\n> 坏了')
'打印机已修好。'
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from enum import Enum


class Line(Enum):
    EMPTY = "e"
    TEXT = "t"
    QUOTE = "q"  # "> quoted"
    ATTRIBUTION = "b"  # "On ... wrote:", "-----Original Message-----", "在 ... 写道："
    HEADER = "h"  # one field of a quoted header block: "From: ...", "发件人：..."
    SIGNATURE = "s"  # a device sign-off line: "Sent from my iPhone", "发自我的iPhone"
    DELIMITER = "d"  # a rule of ASCII punctuation: "_____", "=====", "ᐧ"
    SIG_DASH = "x"  # RFC 3676 §4.3 signature separator "-- "


_COLON = r"\s*[:：]"

# Attributions that may be wrapped by the client over several lines: we join up to
# _MAX_JOIN following non-empty lines and match the whole.
_ATTRIBUTIONS = [
    # English: "On Mon, Apr 2, 2012 at 6:26 PM, Megan <x@y.com> wrote:", "At 6/16/2016 ..."
    r"(?:On|At)\s.{1,300}?\b(?:wrote|writes|said|says)" + _COLON + r"?",
    r"In message .{1,300}? writes" + _COLON + r"?",
    r".{1,120}\bwrote\s+on\b.{1,120}:",
    r".{1,120} via .{1,120} (?:wrote|schrieb)" + _COLON + r"?",
    r".{0,200}\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b.{0,80}\bwrote" + _COLON + r"?",
    r"Posted by .{1,80} on \d{1,2}/\d{1,2}/\d{4}",
    # French, German, Dutch, Italian, Polish, Portuguese, Spanish, Scandinavian
    r"Le\s.{1,300}?\s(?:a\s+écrit|nous\s+a\s+dit)" + _COLON + r"?",
    r"Am\s.{1,300}?\s(?:schrieb|geschrieben|schrieben\s+Sie).{0,200}?" + _COLON + r"?",
    r".{1,120}\bschrieb\s+am\b.{1,120}:",
    r"Op\s.{1,300}?\s(?:schreef|geschreven).{0,200}?" + _COLON + r"?",
    r"Il\s.{1,300}?\sha\s+scritto" + _COLON + r"?",
    r"(?:Dnia|Dňa)\s.{1,300}?\snapisał(?:\(a\))?" + _COLON + r"?",
    r".{0,40}\d{4}.{1,200}?napisał(?:\(a\))?" + _COLON,
    r"Em\s.{1,300}?\sescreveu" + _COLON + r"?",
    r"El\s.{1,300}?\sescribió" + _COLON + r"?",
    r"(?:Den|\w{2,4}\.)\s.{1,200}?\sskrev\s.{1,200}" + _COLON,
    # Russian and Ukrainian: "6 октября 2014 г. пользователь lidel написал:"
    r".{0,60}\d{4}.{1,250}?(?:написал[аи]?|пише)" + _COLON,
    # Chinese: NetEase "在 2026-11-20 10:15:03，"张伟" <zw@163.com> 写道：", Gmail zh
    # "张伟 <zw@gmail.com> 于2026年11月20日周五 上午10:15写道：", Apple Mail zh "在 ...，... 写道："
    r".{0,250}?[\d@].{0,250}?(?:写道|寫道|寫了)" + _COLON + r"?",
    # "2016-03-03 17:21 GMT+01:00 Some One" (Gmail without the address)
    r"20\d\d-\d\d-\d\d \d\d?:\d\d GMT[+-]\d\d:\d\d [\w ]+",
    # A date and an address, nothing after: "26.06.2014, 14:41, "Alex" <a@b.ru>:",
    # "2013/7/20 sam via Discourse Meta <info@discourse.org>"
    r".{0,40}\d{4}.{1,160}<\s*[^<>@\s]+@[^<>\s]+\s*>" + _COLON + r"?",
]
_ATTRIBUTION = re.compile(
    r"^[\s\-<>*]*(?:" + "|".join(_ATTRIBUTIONS) + r")[\s\-.>*]*$", re.IGNORECASE
)
_ATTRIBUTION_END = re.compile(
    r"(?:[:：]|wrote|writes|写道|寫道|>|GMT[+-]\d\d:\d\d [\w ]+|\d{4})[\s\-.>*]*$", re.IGNORECASE
)
_MAX_JOIN = 4
# How attributions begin, in the languages above (and a date: "2016-03-03 ...").
_STARTER = re.compile(
    r"^[\s\-<>*]*(?:On|At|Le|Am|Op|Il|Em|El|Den|Dnia|Dňa|在|\d)(?:\s|\d)", re.IGNORECASE
)

# Separators that introduce a copy of another message.
_FORWARD_MARKERS = re.compile(
    r"^[\s>*_]*(?:"
    r"-{2,}\s*(?:Forwarded|Original|Reply)\s+Message\s*-{2,}"
    r"|-{2,}\s*(?:Original|Forwarded message|Mensaje original|Ursprüngliche Nachricht"
    r"|Message transféré|Messaggio originale|Oorspronkelijk bericht|Opprinnelig melding"
    r"|Ursprungligt meddelande|Исходное сообщение|Пересылаемое сообщение"
    r"|原始邮件|原始郵件|原始信件|转发邮件|轉寄郵件|已转发邮件|轉寄的郵件|转发邮件信息|回复的原邮件"
    r"|邮件原文)\s*-{2,}"
    r"|Begin forwarded message\s*:"
    r"|Début du message transféré\s*:"
    r")[\s\-*_]*$",
    re.IGNORECASE,
)

# Fields of a quoted header block (Outlook, Hotmail, Yahoo, QQ Mail, Foxmail, 163).
_FROM_FIELDS = (
    "From|De|Von|Van|Da|Från|Fra|От|Від|Od|Kimden|Expéditeur"
    "|发件人|發件人|寄件者|寄件人|发信人|發信人|差出人"
)
_OTHER_FIELDS = (
    "Sent|Sent by|Date|To|Cc|Bcc|Reply-To|Subject"
    "|Envoyé|À|A|Objet|Répondre à|Destinataire"
    "|Gesendet|Datum|An|Betreff|Kopie|Antwort an"
    "|Enviado|Enviada em|Fecha|Para|Asunto|Assunto|Data|CC|Inviato|Oggetto|Risposta"
    "|Verzonden|Aan|Onderwerp|Beantwoorden - Aan|Skickat|Till|Ämne|Kopia"
    "|Sendt|Til|Emne|Kopi|Отправлено|Дата|Кому|Копия|Тема"
    "|发送时间|發送時間|时间|時間|日期|发送日期|收件人|收件者|抄送|副本|主题|主題|主旨|寄件日期"
)
_HEADER_FIELD = re.compile(
    r"^\**\s*(?P<name>" + _FROM_FIELDS + "|" + _OTHER_FIELDS + r")\s*\**\s*[:：]", re.IGNORECASE
)

_QUOTE = re.compile(r"^\s*(?:[A-Z][A-Za-z]{0,9})?>")
_DELIMITER = re.compile(r"^\s*(?:[-_=+~#*,]{2,}|[ᐧ])\s*$")
_MARKDOWN_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")

# Device sign-offs (one line each). RFC-less convention, collected from the clients.
_SIGNATURES = re.compile(
    r"^[\s(<]*(?:"
    r"sent (?:from|via|with|by|using) .{1,70}"
    r"|\w+ from mobile"
    r"|from my (?:iphone|ipad|android|mobile|phone|samsung|galaxy|blackberry|huawei)\b.{0,20}"
    r"|get outlook for .{1,60}"
    r"|envoyé depuis (?:mon|yahoo mail).{0,60}"
    r"|von meinem .{1,60} gesendet\.?"
    r"|diese nachricht wurde von .{1,80} gesendet\.?"
    r"|inviato da .{1,60}|sendt fra min .{1,60}|enviado (?:do|desde) (?:meu|mi) .{1,60}"
    r"|verzonden met .{1,60}|verstuurd vanaf mijn .{1,60}|(?:skickat )?från min .{1,60}"
    r"|отправлено с .{1,60}"
    r"|(?:从|從)我的\s*.{1,30}?\s*(?:发送|發送|傳送|传送)"
    r"|(?:发自|發自|来自|來自)我的\s*.{1,30}"
    r"|(?:发自|發自|来自|來自)(?:网易邮箱大师|网易邮箱|QQ邮箱|手机QQ邮箱|Outlook|华为|小米).{0,30}"
    r")[\s)>.]*$",
    re.IGNORECASE,
)


def classify(line: str) -> Line:
    """The class of one line of a plain-text body.

    >>> [classify(s).value for s in ["", "> hi", "Sent from my iPhone", "发件人：张伟", "Hi"]]
    ['e', 'q', 's', 'h', 't']
    """
    stripped = line.strip()
    if not stripped:
        return Line.EMPTY
    if line.rstrip() == "--" or line.rstrip("\n") == "-- ":
        return Line.SIG_DASH
    if _QUOTE.match(line):
        return Line.QUOTE
    if _DELIMITER.match(line):
        return Line.DELIMITER
    if _FORWARD_MARKERS.match(stripped):
        return Line.ATTRIBUTION
    if _SIGNATURES.match(_MARKDOWN_LINK.sub(r"\1", stripped)):
        return Line.SIGNATURE
    if _HEADER_FIELD.match(stripped):
        return Line.HEADER
    return Line.TEXT


def _classify_all(lines: Sequence[str]) -> list[Line]:
    kinds = [classify(line) for line in lines]
    # Fenced code (```) is the sender's text, whatever its lines look like.
    fenced = False
    for i, line in enumerate(lines):
        if line.strip().startswith("```"):
            fenced = not fenced
            kinds[i] = Line.TEXT
        elif fenced and kinds[i] is not Line.EMPTY:
            kinds[i] = Line.TEXT
    _mark_attributions(lines, kinds)
    return kinds


def _mark_attributions(lines: Sequence[str], kinds: list[Line]) -> None:
    """Mark "On ... wrote:" lines, joining the lines a client wrapped it over.

    Each candidate ends on a line that ends like an attribution; we grow it upwards one
    non-empty line at a time and keep the shortest span that matches, so the sender's
    own last sentence is never swallowed into the attribution. Then we extend it over
    a line above that was clearly cut short ("... Meta <") or that starts like one.
    """
    for end in range(len(lines)):
        kind = kinds[end]
        tail = lines[end].strip(" >\t")
        if kind is Line.QUOTE and (len(tail) > 12 or not re.search(r"[:：]|[^\W\d_]", tail)):
            continue  # only a short tail like "> wrote:" or ">:" may end an attribution
        if kind not in (Line.TEXT, Line.QUOTE) or not _ATTRIBUTION_END.search(lines[end]):
            continue
        members = _attribution_span(lines, kinds, end)
        for m in members:
            kinds[m] = Line.ATTRIBUTION


def _attribution_span(lines: Sequence[str], kinds: Sequence[Line], end: int) -> list[int]:
    members = [end]
    found = False
    start = end
    while True:
        if kinds[start] is not Line.QUOTE:
            joined = " ".join(lines[m].strip() for m in members)
            if len(joined) <= 400 and _ATTRIBUTION.match(joined):
                found = True
            elif found:
                members.pop(0)
                return members
            if found:
                above = _previous_text(kinds, start)
                if above is None or not _continues(lines[above]):
                    return members
        above = _previous_text(kinds, start)
        if above is None or end - above > _MAX_JOIN + 3 or len(members) > _MAX_JOIN:
            return members if found else []
        start = above
        members.insert(0, start)


_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def _continues(line: str) -> bool:
    """Is this line the head of an attribution wrapped onto the next line?"""
    stripped = line.rstrip()
    if stripped.endswith("<") or _STARTER.match(line):
        return True
    # "张伟 <zw@gmail.com> 于2026年11月20日周五" + "上午10:15写道："
    return bool(_EMAIL.search(line)) and not stripped.endswith(tuple(".!?。！？"))


def _previous_text(kinds: Sequence[Line], index: int) -> int | None:
    i = index - 1
    while i >= 0 and kinds[i] is Line.EMPTY:
        i -= 1
    # An attribution already marked may be the head of a longer one ending below.
    return i if i >= 0 and kinds[i] in (Line.TEXT, Line.ATTRIBUTION) else None


def _header_blocks(kinds: list[Line]) -> list[tuple[int, int]]:
    """Runs of header fields that form a quoted message's header: (start, end) pairs.

    A run has at least three fields (two could be the sender's prose); a text line
    between fields is a wrapped value (a long "Subject:").
    """
    blocks: list[tuple[int, int]] = []
    i = 0
    while i < len(kinds):
        if kinds[i] is not Line.HEADER:
            i += 1
            continue
        end = i
        fields = 1
        j = i + 1
        while j < len(kinds) and kinds[j] in (Line.HEADER, Line.TEXT):
            if kinds[j] is Line.HEADER:
                fields += 1
                end = j
            elif j - end > 2:
                break
            j += 1
        if fields >= 3:
            blocks.append((i, end))
        i = end + 1
    return blocks


def _next_significant(kinds: Sequence[Line], start: int) -> int:
    i = start
    while i < len(kinds) and kinds[i] is Line.EMPTY:
        i += 1
    return i


def _is_interleaved(kinds: Sequence[Line], after: int) -> bool:
    """Does a quote follow position `after`, with the sender's own text after that quote?"""
    i = _next_significant(kinds, after)
    if i >= len(kinds) or kinds[i] is not Line.QUOTE:
        return False
    while i < len(kinds) and kinds[i] in (Line.QUOTE, Line.EMPTY):
        i += 1
    return i < len(kinds) and kinds[i] is Line.TEXT


def _attribution_end(kinds: Sequence[Line], start: int) -> int:
    end = start
    while end + 1 < len(kinds) and kinds[end + 1] in (Line.ATTRIBUTION, Line.EMPTY):
        if kinds[end + 1] is Line.ATTRIBUTION:
            end += 1
        elif (
            _next_significant(kinds, end + 1) < len(kinds)
            and kinds[_next_significant(kinds, end + 1)] is Line.ATTRIBUTION
            and _next_significant(kinds, end + 1) - end <= 3
        ):
            end = _next_significant(kinds, end + 1)
        else:
            break
    return end


def _drop(lines: list[str], kinds: list[Line], start: int, end: int) -> None:
    del lines[start : end + 1]
    del kinds[start : end + 1]


def _strip_leading_history(lines: list[str], kinds: list[Line]) -> None:
    """A reply written below the quote (bottom-posting), or a bare forward: drop the top."""
    while True:
        top = _next_significant(kinds, 0)
        if top >= len(kinds):
            return
        blocks = {start: end for start, end in _header_blocks(kinds)}
        if top in blocks:
            _drop(lines, kinds, 0, blocks[top])
            continue
        if kinds[top] is not Line.ATTRIBUTION:
            return
        end = _attribution_end(kinds, top)
        after = _next_significant(kinds, end + 1)
        blocks = {start: stop for start, stop in _header_blocks(kinds)}
        if after in blocks:
            end = blocks[after]
        elif after < len(kinds) and kinds[after] is Line.QUOTE:
            end = after
            while end + 1 < len(kinds) and kinds[end + 1] in (Line.QUOTE, Line.EMPTY):
                end += 1
            if _next_significant(kinds, end + 1) >= len(kinds):
                return  # nothing but the quote: leave it to the caller's fallback
        _drop(lines, kinds, 0, end)


def _cut_history(lines: list[str], kinds: list[Line]) -> None:
    """Cut at the first attribution or header block that follows the sender's text."""
    seen_text = False
    i = 0
    blocks = {start: end for start, end in _header_blocks(kinds)}
    while i < len(kinds):
        kind = kinds[i]
        if kind is Line.TEXT:
            seen_text = True
        elif seen_text and i in blocks:
            del lines[i:], kinds[i:]
            return
        elif seen_text and kind is Line.ATTRIBUTION:
            end = _attribution_end(kinds, i)
            if not _is_interleaved(kinds, end + 1):
                del lines[i:], kinds[i:]
                return
            # An inline answer below a quote: keep the quote, lose the attribution.
            _drop(lines, kinds, i, end)
            blocks = {start: stop for start, stop in _header_blocks(kinds)}
            continue
        i += 1


def _cut_signature_dash(lines: list[str], kinds: list[Line]) -> None:
    """RFC 3676 §4.3: everything below "-- " is the signature."""
    seen_text = False
    for i, kind in enumerate(kinds):
        if kind is Line.TEXT:
            seen_text = True
        elif kind is Line.SIG_DASH and seen_text:
            del lines[i:], kinds[i:]
            return


_MAX_SIGNATURE_LINES = 3


def _cut_trailing_signature_block(lines: list[str], kinds: list[Line]) -> None:
    """A rule ("_____") followed by at most a few lines at the very end is a signature."""
    seen_text = False
    for i, kind in enumerate(kinds):
        if kind is Line.TEXT:
            seen_text = True
        elif kind is Line.DELIMITER and seen_text:
            rest = [k for k in kinds[i + 1 :] if k not in (Line.EMPTY, Line.DELIMITER)]
            if len(rest) <= _MAX_SIGNATURE_LINES:
                del lines[i:], kinds[i:]
                return


def _drop_device_signatures(lines: list[str], kinds: list[Line]) -> None:
    for i in reversed(range(len(kinds))):
        if kinds[i] is Line.SIGNATURE:
            _drop(lines, kinds, i, i)


def _drop_trailing_quotes(lines: list[str], kinds: list[Line]) -> None:
    if Line.TEXT not in kinds:
        return
    while kinds and kinds[-1] in (Line.QUOTE, Line.EMPTY, Line.DELIMITER, Line.ATTRIBUTION):
        _drop(lines, kinds, len(kinds) - 1, len(kinds) - 1)


# The steps, in order. Each takes the lines and their classes and edits both in place.
STEPS = (
    _strip_leading_history,
    _cut_signature_dash,
    _cut_history,
    _drop_device_signatures,
    _cut_trailing_signature_block,
    _drop_trailing_quotes,
)


def visible_reply(text: str) -> str:
    """The part of a plain-text body the sender wrote for this message.

    Quoted replies, forwarded history and signatures are removed. If that leaves nothing
    (a message that is only a quote or only a forward), the whole text is returned: an
    empty ticket message would lose what the customer sent.
    """
    normalised = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = normalised.split("\n")
    kinds = _classify_all(lines)
    for step in STEPS:
        step(lines, kinds)
    visible = "\n".join(lines).strip()
    return visible if visible else normalised.strip()
