"""SMS commands from staff, in Chinese and English (DESIGN.md "Channels and their rules").

Engineers and supervisors text short commands from a phone keyboard, often through a
Chinese input method that types full-width letters, digits, colons and spaces
(``ＯＫ``, ``ＳＬ－０００４２``, ``预计：１４：３０``). Matching therefore runs on a folded copy
of the text (NFKC, one original character at a time, zero-width characters dropped)
that remembers where each folded character came from, so free text (a check-in, a
summary, a reason) is cut from the original and keeps the sender's own punctuation.

The grammar (verbs are case-insensitive; a verb may be followed by a space, a colon, or
in Chinese directly by its argument, ``接单SL-000042``; ``了`` after a Chinese verb is
allowed, ``完成了 SL-42``):

=========== ========================= =====================================
who         Chinese / English          arguments
=========== ========================= =====================================
engineer    接单 / ACCEPT              ref
engineer    签到 / CHECKIN             text
engineer    到达 / ARRIVED             [ref] [note]
engineer    预计 / ETA                 [ref] time
engineer    完成 / DONE                [ref] summary
engineer    上报 / ESCALATE            [ref] reason
anyone      帮助 / HELP                —
supervisor  收到, 好, 好的 / OK, ACK   [engineer name or ref] [remark]
supervisor  派 / ASSIGN                [ref] engineer name or phone
supervisor  确认 / CONFIRM             ref
=========== ========================= =====================================

A reference is what ``parsers.refs.parse_ref`` reads — ``SL-000042``, ``SL-42``,
``sl42``, ``SL 42``, ``#SL-42``, ``[SL-000042]``, full-width — at the start of the
arguments. A bare number (``ACCEPT 42``) is *not* a reference: times, phone numbers and
counts are numbers too, and acting on the wrong ticket is worse than asking again.
Who may send what, and which ticket a command without a reference means, is decided by
``workflow.commands``; this module only reads the text. A command's ``verb`` and its
field names are the contract with ``workflow.commands.sms.run_command``: each field is
passed by name to the workflow function of that verb.

Carrier keywords (``STOP``, ``退订``, ``T``, ``START``, ``HELP``…) count only as the whole
message, as carriers and Twilio treat them, so "stop by at 3pm" is not an opt-out. A
bare ``HELP`` is therefore ``Consent(HELP)``, not ``Help``: the carrier answers it for a
customer, and ``workflow.commands.sms.consent_keyword`` adds the usage for staff.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import ClassVar, NamedTuple, TypeAlias

from parsers.phones import normalize_phone
from parsers.refs import parse_ref


class Verb(StrEnum):
    ACCEPT = "accept"
    CHECKIN = "checkin"
    ARRIVED = "arrived"
    ETA = "eta"
    DONE = "done"
    ESCALATE = "escalate"
    HELP = "help"
    ACK = "ack"
    ASSIGN = "assign"
    CONFIRM = "confirm"
    CONSENT = "consent"
    UNKNOWN = "unknown"


class ConsentKind(StrEnum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    HELP = "help"


class WallTime(NamedTuple):
    """A local wall-clock time on a day counted from "today"; the zone is the sender's.

    ``day_offset`` is None when the sender named no day ("ETA 14:30"): the workflow
    takes the occurrence nearest to the time of the message.
    """

    day_offset: int | None
    hour: int
    minute: int


@dataclass(frozen=True)
class Accept:
    verb: ClassVar[Verb] = Verb.ACCEPT
    ticket_id: int | None


@dataclass(frozen=True)
class CheckIn:
    verb: ClassVar[Verb] = Verb.CHECKIN
    text: str


@dataclass(frozen=True)
class Arrived:
    verb: ClassVar[Verb] = Verb.ARRIVED
    ticket_id: int | None
    note: str = ""


@dataclass(frozen=True)
class Eta:
    verb: ClassVar[Verb] = Verb.ETA
    ticket_id: int | None
    when_text: str
    at: WallTime | None = None  # "14:30", "明天10点", "下午3点", "3pm"
    after: timedelta | None = None  # "+2h", "2小时后", "in 30 min"


@dataclass(frozen=True)
class Done:
    verb: ClassVar[Verb] = Verb.DONE
    ticket_id: int | None
    summary: str


@dataclass(frozen=True)
class Escalate:
    verb: ClassVar[Verb] = Verb.ESCALATE
    ticket_id: int | None
    reason: str


@dataclass(frozen=True)
class Help:
    verb: ClassVar[Verb] = Verb.HELP


@dataclass(frozen=True)
class Ack:
    """A supervisor's reply to relayed check-ins; ``target`` is everything after the verb
    (an engineer's name, or a remark such as "辛苦了"), which the workflow interprets."""

    verb: ClassVar[Verb] = Verb.ACK
    ticket_id: int | None
    target: str = ""


@dataclass(frozen=True)
class Assign:
    verb: ClassVar[Verb] = Verb.ASSIGN
    ticket_id: int | None
    engineer: str  # a name as typed (whitespace collapsed), or a phone number
    engineer_phone: str | None = None  # E.164 when ``engineer`` is a valid phone number


@dataclass(frozen=True)
class Confirm:
    verb: ClassVar[Verb] = Verb.CONFIRM
    ticket_id: int | None


@dataclass(frozen=True)
class Consent:
    verb: ClassVar[Verb] = Verb.CONSENT
    kind: ConsentKind
    keyword: str  # as normalised, upper-case: "STOP", "退订"


@dataclass(frozen=True)
class Unknown:
    verb: ClassVar[Verb] = Verb.UNKNOWN
    text: str  # the original message, stripped


SmsCommand: TypeAlias = (
    Accept | CheckIn | Arrived | Eta | Done | Escalate | Help | Ack | Assign | Confirm
    | Consent | Unknown
)  # fmt: skip

# -- folding ----------------------------------------------------------------------------

# Characters input methods and copy-paste leave behind that no one means to type.
_INVISIBLE = frozenset("\u200b\u200c\u200d\u2060\ufeff")


@dataclass(frozen=True)
class _Folded:
    """The NFKC-folded text and, for each folded character, its index in the original."""

    text: str
    origin: tuple[int, ...]
    original: str

    def tail(self, at: int) -> str:
        """The original text from folded index ``at`` on, stripped."""
        start = self.origin[at] if at < len(self.origin) else len(self.original)
        return self.original[start:].strip()


def _fold(text: str) -> _Folded:
    """Folds character by character so every folded index maps back to the original.

    >>> f = _fold("ＯＫ　王强")
    >>> f.text, f.tail(3)
    ('OK 王强', '王强')
    """
    chars: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(text):
        if char in _INVISIBLE:
            continue
        for folded in unicodedata.normalize("NFKC", char):
            chars.append(folded)
            origin.append(index)
    return _Folded("".join(chars), tuple(origin), text)


def _collapse(text: str) -> str:
    """NFKC with runs of whitespace made one space.

    >>> _collapse(" Wang\u3000\u3000Qiang ")
    'Wang Qiang'
    """
    return " ".join(unicodedata.normalize("NFKC", text).split())


# -- carrier keywords -------------------------------------------------------------------

CONSENT_KEYWORDS: dict[str, ConsentKind] = {
    **dict.fromkeys(
        ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "退订", "TD", "T"),
        ConsentKind.OPT_OUT,
    ),
    **dict.fromkeys(("START", "YES", "UNSTOP"), ConsentKind.OPT_IN),
    **dict.fromkeys(("HELP", "INFO"), ConsentKind.HELP),
}
_TRAILING_PUNCTUATION = " .!。！~"


def parse_consent(text: str) -> Consent | None:
    """A carrier keyword, when it is the whole message; None otherwise.

    >>> parse_consent(" ｓｔｏｐ！"), parse_consent("退订")
    (Consent(kind=<ConsentKind.OPT_OUT: 'opt_out'>, keyword='STOP'), \
Consent(kind=<ConsentKind.OPT_OUT: 'opt_out'>, keyword='退订'))
    >>> parse_consent("stop by at 3pm") is None
    True
    """
    keyword = _collapse(text).strip(_TRAILING_PUNCTUATION).upper()
    kind = CONSENT_KEYWORDS.get(keyword)
    return Consent(kind, keyword) if kind else None


# -- verbs ------------------------------------------------------------------------------

# One table: adding a spelling someone uses is a one-line change. Traditional characters
# are listed too: some staff phones are set to them.
VERBS: dict[Verb, tuple[str, ...]] = {
    Verb.ACCEPT: ("接单", "接單", "ACCEPT"),
    Verb.CHECKIN: ("签到", "簽到", "CHECKIN", "CHECK-IN", "CHECK IN"),
    Verb.ARRIVED: ("到达", "到達", "已到达", "ARRIVED", "ARRIVE"),
    Verb.ETA: ("预计", "預計", "ETA"),
    Verb.DONE: ("完成", "已完成", "DONE"),
    Verb.ESCALATE: ("上报", "上報", "ESCALATE"),
    Verb.HELP: ("帮助", "幫助", "HELP"),
    # "确认收到" is an acknowledgement, not CONFIRM followed by junk.
    Verb.ACK: ("确认收到", "已收到", "收到", "好的", "好", "OK", "OKAY", "ACK"),
    Verb.ASSIGN: ("派单", "派單", "指派", "派", "ASSIGN"),
    Verb.CONFIRM: ("确认", "確認", "CONFIRM"),
}
# Single Chinese characters are common at the start of ordinary sentences ("好像…",
# "派出所…"), so they count as verbs only before a space, punctuation, a reference or
# the end. A Latin verb must not run into more letters or digits ("OKAY" is not "OK").
_SHORT_CJK_END = r"(?=$|[\s\W]|SL)"
_LATIN_END = r"(?![A-Za-z0-9])"
# Separators between a verb, a reference and what follows.
_SEPARATORS = re.compile(r"[\s:;,、。.!]*")


def _verb_pattern(spelling: str) -> re.Pattern[str]:
    body = r"\s*".join(re.escape(part) for part in spelling.split(" "))
    if spelling.isascii():
        return re.compile(body + _LATIN_END, re.IGNORECASE)
    if len(spelling) == 1:
        return re.compile(body + _SHORT_CJK_END, re.IGNORECASE)
    return re.compile(body + "了?")  # "完成了", "收到了"


# Longest spelling first, so "确认收到" wins over "确认" and "派单" over "派".
_VERB_PATTERNS: tuple[tuple[re.Pattern[str], Verb], ...] = tuple(
    (_verb_pattern(spelling), verb)
    for spelling, verb in sorted(
        ((s, v) for v, spellings in VERBS.items() for s in spellings), key=lambda sv: -len(sv[0])
    )
)

_REF = re.compile(
    r"[#\[【]?\s*SL\s*[-\u2010\u2011\u2012\u2013\u2014\u2212\ufe63]?\s*\d{1,19}\s*[\]】]?"
    r"(?![A-Za-z0-9])",
    re.IGNORECASE,
)


def _match_verb(text: str) -> tuple[Verb, int] | None:
    start = len(text) - len(text.lstrip())
    for pattern, verb in _VERB_PATTERNS:
        match = pattern.match(text, start)
        if match:
            return verb, match.end()
    return None


def _skip_separators(text: str, at: int) -> int:
    match = _SEPARATORS.match(text, at)
    return match.end() if match else at


def _leading_ref(text: str, at: int) -> tuple[int | None, int]:
    """The ticket id of a reference at ``at`` and where the text after it starts.

    >>> _leading_ref("SL-000042: done", 0), _leading_ref("14:30", 0)
    ((42, 11), (None, 0))
    """
    match = _REF.match(text, at)
    if not match:
        return None, at
    ticket_id = parse_ref(match.group(0))
    if ticket_id is None:  # "SL-0": looks like one, names nothing
        return None, at
    return ticket_id, _skip_separators(text, match.end())


# -- arguments, one small parser per verb -------------------------------------------------


def _ref_only(make: Callable[[int | None], SmsCommand]) -> Callable[[_Folded, int], SmsCommand]:
    """ACCEPT and CONFIRM take a reference and nothing else; "确认 好的" is not a command,
    and guessing the ticket behind it would act on the wrong one."""

    def parse(folded: _Folded, at: int) -> SmsCommand:
        ticket_id, rest = _leading_ref(folded.text, at)
        if ticket_id is None and folded.text[rest:].strip():
            return Unknown(folded.original.strip())
        return make(ticket_id)

    return parse


def _checkin(folded: _Folded, at: int) -> SmsCommand:
    return CheckIn(folded.tail(at))


def _arrived(folded: _Folded, at: int) -> SmsCommand:
    ticket_id, rest = _leading_ref(folded.text, at)
    return Arrived(ticket_id, folded.tail(rest))


def _eta(folded: _Folded, at: int) -> SmsCommand:
    ticket_id, rest = _leading_ref(folded.text, at)
    when_text = folded.tail(rest)
    return Eta(ticket_id, when_text, parse_wall_time(when_text), parse_delay(when_text))


def _done(folded: _Folded, at: int) -> SmsCommand:
    ticket_id, rest = _leading_ref(folded.text, at)
    return Done(ticket_id, folded.tail(rest))


def _escalate(folded: _Folded, at: int) -> SmsCommand:
    ticket_id, rest = _leading_ref(folded.text, at)
    return Escalate(ticket_id, folded.tail(rest))


def _help(folded: _Folded, at: int) -> SmsCommand:
    return Help()


def _ack(folded: _Folded, at: int) -> SmsCommand:
    ticket_id, rest = _leading_ref(folded.text, at)
    return Ack(ticket_id, folded.tail(rest))


def _assign(folded: _Folded, at: int) -> SmsCommand:
    ticket_id, rest = _leading_ref(folded.text, at)
    engineer = _collapse(folded.tail(rest))
    # A name never has seven digits; a phone number always has more.
    phone = normalize_phone(engineer) if sum(c.isdigit() for c in engineer) >= 7 else None
    return Assign(ticket_id, engineer, phone)


_ARGUMENTS: dict[Verb, Callable[[_Folded, int], SmsCommand]] = {
    Verb.ACCEPT: _ref_only(Accept),
    Verb.CHECKIN: _checkin,
    Verb.ARRIVED: _arrived,
    Verb.ETA: _eta,
    Verb.DONE: _done,
    Verb.ESCALATE: _escalate,
    Verb.HELP: _help,
    Verb.ACK: _ack,
    Verb.ASSIGN: _assign,
    Verb.CONFIRM: _ref_only(Confirm),
}


def parse_sms(text: str) -> SmsCommand:
    """What an SMS asks for. Never raises; what it cannot read is ``Unknown``.

    >>> parse_sms("接单SL-000042")
    Accept(ticket_id=42)
    >>> parse_sms("ＯＫ　王强")
    Ack(ticket_id=None, target='王强')
    >>> parse_sms("DONE sl-42: replaced the fuser")
    Done(ticket_id=42, summary='replaced the fuser')
    >>> parse_sms("打印机又卡纸了")
    Unknown(text='打印机又卡纸了')
    """
    consent = parse_consent(text)
    if consent is not None:
        return consent
    folded = _fold(text)
    found = _match_verb(folded.text)
    if found is None:
        return Unknown(text.strip())
    verb, end = found
    return _ARGUMENTS[verb](folded, _skip_separators(folded.text, end))


# -- times ------------------------------------------------------------------------------

_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5,
              "六": 6, "七": 7, "八": 8, "九": 9}  # fmt: skip
_N = r"(?:\d{1,2}|[零〇一二两三四五六七八九十]{1,3})"
_DAYS = {"今天": 0, "今日": 0, "今晚": 0, "today": 0, "tonight": 0,
         "明天": 1, "明日": 1, "明早": 1, "明晚": 1, "tomorrow": 1, "tmrw": 1, "tmr": 1,
         "后天": 2, "後天": 2}  # fmt: skip
_QUARTERS = {"半": 30, "一刻": 15, "三刻": 45}
_MORNING = ("凌晨", "早上", "早晨", "上午", "明早")
_NOON = ("中午",)
_EVENING = ("下午", "傍晚", "晚上", "今晚", "明晚", "晚", "tonight")
_DAY_WORD = re.compile("|".join(sorted(map(re.escape, _DAYS), key=len, reverse=True)))
_PERIOD = re.compile("|".join(sorted(_MORNING + _NOON + _EVENING, key=len, reverse=True)))
_HH_MM = re.compile(r"(?<!\d)(\d{1,2})\s*:\s*(\d{2})(?!\d)\s*(?:([ap])\.?\s*m\b\.?)?")
_H_AMPM = re.compile(r"(?<![\d:])(\d{1,2})\s*([ap])\.?\s*m\b\.?")
_H_ZH = re.compile(rf"({_N})\s*[点點时時](?:\s*(半|一刻|三刻|{_N})\s*分?)?")
_PLUS = re.compile(
    r"(?:\+|\bin\s+)\s*(?:(\d{1,3}(?:\.\d+)?)\s*(?:hours?|hrs?|h)(?![a-z]))?"
    r"\s*(?:(\d{1,4})\s*(?:minutes?|mins?|m)(?![a-z]))?"
)
_ZH_DELAY = re.compile(
    rf"(?:({_N})\s*个?\s*(半)?\s*(?:小时|小時|钟头|鐘頭)|(半)\s*个?\s*(?:小时|小時|钟头))?"
    rf"\s*(?:({_N})\s*分钟?)?\s*(?:以后|之后|后|後)"
)


def _number(text: str) -> int | None:
    """An integer written in ASCII digits or Chinese numerals up to 99.

    >>> _number("12"), _number("十"), _number("二十三"), _number("两"), _number("零五")
    (12, 10, 23, 2, 5)
    """
    if text.isascii():
        return int(text) if text.isdigit() else None
    tens, ten, ones = text.partition("十")
    if ten:
        high = _CN_DIGITS.get(tens) if tens else 1
        low = _CN_DIGITS.get(ones) if ones else 0
        return None if high is None or low is None else high * 10 + low
    value = 0
    for char in text:
        digit = _CN_DIGITS.get(char)
        if digit is None:
            return None
        value = value * 10 + digit
    return value


def _wall_time(hour: int, minute: int, day: int | None, period: str | None) -> WallTime | None:
    if period in ("a", *_MORNING):
        hour = 0 if hour == 12 else hour
    elif period in ("p", *_EVENING):
        hour = hour + 12 if hour < 12 else hour
    elif period in _NOON and hour < 3:
        hour += 12  # 中午1点 is 13:00; 中午12点 stays
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        return None
    return WallTime(day, hour, minute)


def parse_wall_time(text: str) -> WallTime | None:
    """A time of day, optionally with a day; None if there is none or it is not valid.

    >>> parse_wall_time("14:30"), parse_wall_time("明天10点")
    (WallTime(day_offset=None, hour=14, minute=30), WallTime(day_offset=1, hour=10, minute=0))
    >>> parse_wall_time("下午三点半"), parse_wall_time("3pm tomorrow")
    (WallTime(day_offset=None, hour=15, minute=30), WallTime(day_offset=1, hour=15, minute=0))
    >>> parse_wall_time("soon") is None
    True
    """
    folded = _collapse(text).lower()
    day_match = _DAY_WORD.search(folded)
    day = _DAYS[day_match.group(0)] if day_match else None
    period_match = _PERIOD.search(folded)
    period = period_match.group(0) if period_match else None
    match = _HH_MM.search(folded)
    if match:
        hour, minute = int(match.group(1)), int(match.group(2))
        return _wall_time(hour, minute, day, match.group(3) or period)
    match = _H_AMPM.search(folded)
    if match:
        hour = int(match.group(1))
        return _wall_time(hour, 0, day, match.group(2)) if 1 <= hour <= 12 else None
    match = _H_ZH.search(folded)
    if match:
        zh_hour = _number(match.group(1))
        raw_minute = match.group(2) or "0"
        zh_minute = _QUARTERS.get(raw_minute, _number(raw_minute))
        if zh_hour is None or zh_minute is None:
            return None
        return _wall_time(zh_hour, zh_minute, day, period)
    return None


def parse_delay(text: str) -> timedelta | None:
    """A delay from now: "+2h", "+1h30m", "in 30 min", "2小时后", "半小时后".

    >>> parse_delay("+2h"), parse_delay("两个半小时后"), parse_delay("in 45 min")
    (datetime.timedelta(seconds=7200), datetime.timedelta(seconds=9000), \
datetime.timedelta(seconds=2700))
    >>> parse_delay("14:30") is None
    True
    """
    folded = _collapse(text).lower()
    for match in _PLUS.finditer(folded):
        hours, minutes = match.groups()
        if hours or minutes:
            return timedelta(hours=float(hours or 0), minutes=int(minutes or 0))
    for match in _ZH_DELAY.finditer(folded):
        hours_text, half, half_only, minutes_text = match.groups()
        if not (hours_text or half_only or minutes_text):
            continue
        hours = _number(hours_text) if hours_text else 0
        minutes = _number(minutes_text) if minutes_text else 0
        if hours is None or minutes is None:
            return None
        extra = 30 if half or half_only else 0
        return timedelta(hours=hours, minutes=minutes + extra)
    return None


# -- usage ------------------------------------------------------------------------------

_USAGE = {
    ("engineer", "zh-CN"): "命令：接单 单号｜签到 内容｜到达｜预计 14:30｜完成 单号 结果｜"
    "上报 单号 原因｜帮助。单号如SL-000042，只有一单时可省略。出差期间直接回复内容即为当天签到。",
    ("engineer", "en"): "ACCEPT ref | CHECKIN text | ARRIVED | ETA 14:30 | DONE ref summary | "
    "ESCALATE ref reason | HELP (ref: SL-42). On a trip, any text checks in.",
    ("supervisor", "zh-CN"): "命令：收到（回复全部签到）｜收到 姓名｜派 单号 工程师｜"
    "确认 单号｜帮助。单号如SL-000042。",
    ("supervisor", "en"): "Commands: OK (acknowledges all check-ins) | OK name | "
    "ASSIGN ref engineer | CONFIRM ref | HELP. Ref e.g. SL-42.",
    ("other", "zh-CN"): "短信命令供工程师和主管使用。如需帮助请发邮件给技术支持部。",
    ("other", "en"): "SMS commands are for engineers and supervisors. "
    "Please email the support department.",
}
_ROLE_FAMILY = {"engineer": "engineer", "supervisor": "supervisor", "manager": "supervisor"}


def usage_text(role: str, language: str) -> str:
    """The short usage reply for a role (staff file names) in zh-CN or en; no URLs.

    >>> usage_text("manager", "en").startswith("Commands: OK")
    True
    >>> usage_text("engineer", "zh").startswith("命令：接单")
    True
    """
    lang = "zh-CN" if language.lower().startswith("zh") else "en"
    return _USAGE[(_ROLE_FAMILY.get(role, "other"), lang)]
