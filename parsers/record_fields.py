"""The intake record's fields (电话接听处理单) from what a customer wrote.

Customers who know the form write labelled lines, in Chinese or English, one per line
or several on a line (``型号：LX-3000，序列号：A1B2C3，联系电话：138…``); others just
describe the problem. Labelled values win; without labels the phone is the first valid
number in the text, the model a known model mentioned in the subject or text, the name
the sender's display name, and the fault type the taxonomy entry whose keywords occur
most. Whatever is not found stays None for the receiver to fill in; ``problem`` (the
policy's 问题要点) is always the visible text.

Matching runs on a copy of the text with full-width ASCII folded to half-width, which
keeps every character in place, so free-text values (names, companies) are cut from the
original and keep their Chinese punctuation, while codes (models, serials) come from
the folded copy and read ``LX-3000`` even if typed ``ＬＸ－３０００``.
"""

from __future__ import annotations

import functools
import re
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from parsers.phones import find_phones, normalize_phone

PROBLEM_MAX_CHARS = 2000

# One table of labels per field: adding a label a customer used is a one-line change.
# Longer labels are tried first, so "公司名称" is not read as "公司" + "名称：…".
LABELS: Mapping[str, tuple[str, ...]] = types.MappingProxyType({
    "requester_name": (
        "name", "full name", "your name", "contact name", "contact person",
        "姓名", "联系人", "聯絡人", "联络人", "聯繫人", "诉求人", "诉求人姓名", "报修人",
        "客户姓名",
    ),
    "company": (
        "company", "company name", "organization", "organisation",
        "公司", "单位", "公司名称", "单位名称", "客户名称", "公司名稱", "客戶名稱",
    ),
    "department": ("department", "dept", "部门", "部門", "所在部门", "科室"),
    "phone": (
        "phone", "phone number", "phone no", "tel", "telephone", "mobile", "mobile phone",
        "cell", "电话", "手机", "联系电话", "聯絡電話", "聯繫電話", "电话号码", "手机号",
        "手机号码", "電話", "手機", "联系方式",
    ),
    "machine_model": (
        "model", "machine model", "printer model", "model no",
        "型号", "机型", "機型", "型號", "机器型号", "设备型号", "機器型號",
    ),
    "serial": (
        "serial", "serial number", "serial no", "s/n", "sn",
        "序列号", "序號", "序列號", "机身号", "機身號", "编号", "机器编号", "出厂编号", "機器編號",
    ),
    "request": ("request", "requirement", "要求", "客户要求", "客戶要求", "诉求"),
    # Labels of things we do not extract. They end the value before them, and they keep
    # "订单编号：" from being read as the serial label "编号：" or "传真电话：" as a phone.
    "": (
        "order no", "order number", "invoice", "fax", "email", "e-mail", "address",
        "problem", "description", "issue", "date",
        "订单号", "订单编号", "工单号", "合同号", "合同编号", "发票号", "快递单号", "传真",
        "传真电话", "邮箱", "电子邮箱", "地址", "问题", "问题描述", "故障描述", "故障现象",
        "日期", "时间",
    ),
})  # fmt: skip

# Full-width ASCII (what a Chinese input method types) to half-width, one character for
# one, so offsets in the folded copy are offsets in the original.
_FOLD = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: 0x20, 0x2019: 0x27}
# Trimmed from both ends of a value; "。" is not, it ends the customer's sentence.
_SEPARATORS = " \t\r\n\u3000,;:|，；：、"
# Values that mean "I don't know" rather than a value.
_BLANK_VALUES = frozenset({"", "-", "无", "不详", "不清楚", "未知", "n/a", "na", "none", "unknown"})
_LIMITS = {"requester_name": 80, "company": 200, "department": 100, "machine_model": 80,
           "serial": 64, "request": 1000}  # fmt: skip
# Fields whose value is a code: read from the folded copy. The others keep the original.
_CODE_FIELDS = frozenset({"phone", "machine_model", "serial"})
# Values that may hold digits which are not the customer's phone number.
_NOT_PHONE_FIELDS = frozenset({"machine_model", "serial", ""})
# A serial is one code, possibly printed in digit groups ("HT90 5521"); what follows it
# on the line ("，已过保修期") is not part of it.
_SERIAL = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9._/-]*[A-Za-z0-9])?(?: \d[A-Za-z0-9-]*(?=\s|$|[,;.]))*"
)
# A model ends at punctuation, or where Chinese prose starts after a space:
# "型号：XP-3000 打印机不开机" names the model XP-3000.
_MODEL_END = re.compile(r"[,;。、(]|\s+(?=[\u3400-\u9fff])")
_NAME_END = re.compile(r"[\s,;/]*(?:\+?\d[\d\s()-]{5,}|\S+@\S+)")
_EMPTY_TAXONOMY: Mapping[str, Sequence[str]] = types.MappingProxyType({})


@dataclass(frozen=True)
class RecordFields:
    """The intake record's fields found in one message; None where nothing was found."""

    requester_name: str | None
    company: str | None
    department: str | None
    phone: str | None
    machine_model: str | None
    serial: str | None
    fault_type: str | None
    request: str | None
    problem: str


def _label_key(label: str) -> str:
    return " ".join(label.lower().rstrip(".").split())


def _build_label_table() -> tuple[re.Pattern[str], dict[str, str]]:
    field_of: dict[str, str] = {}
    for field, labels in LABELS.items():
        for label in labels:
            if field_of.setdefault(_label_key(label), field) != field:
                raise ValueError(f"intake label {label!r} is listed for two fields")
    alternatives = []
    for label in sorted(field_of, key=len, reverse=True):
        body = r"\s+".join(re.escape(word) for word in label.split())
        # English labels must start a word ("Hotel:" is not "Tel:"); Chinese has no
        # word breaks, and "打印机型号：" is a perfectly good model label.
        alternatives.append(rf"(?<![a-z0-9]){body}" if label.isascii() else body)
    pattern = re.compile(rf"({'|'.join(alternatives)})\s*\.?\s*:", re.IGNORECASE)
    return pattern, field_of


_LABEL_RE, _FIELD_OF_LABEL = _build_label_table()


def _clean(value: str, limit: int = PROBLEM_MAX_CHARS) -> str | None:
    value = value.strip(_SEPARATORS)
    if value.lower() in _BLANK_VALUES:
        return None
    return value[:limit].strip() or None


def _labelled_values(
    original: str, folded: str
) -> tuple[dict[str, list[str]], list[tuple[int, int]]]:
    """Every labelled value by field, in text order, and the spans of non-phone values."""
    values: dict[str, list[str]] = {}
    masked: list[tuple[int, int]] = []
    lines = folded.splitlines(keepends=True)
    offset = 0
    for index, line in enumerate(lines):
        if ":" not in line:  # every label ends with one (full-width ones are folded)
            offset += len(line)
            continue
        matches = list(_LABEL_RE.finditer(line))
        for position, match in enumerate(matches):
            field = _FIELD_OF_LABEL[_label_key(match.group(1))]
            end = matches[position + 1].start() if position + 1 < len(matches) else len(line)
            start = match.end()
            if not line[start:end].strip(_SEPARATORS) and position + 1 == len(matches):
                # A form laid out as a table puts the value on the line below the label.
                below = lines[index + 1] if index + 1 < len(lines) else ""
                if below.strip() and not _LABEL_RE.search(below):
                    start, end = len(line), len(line) + len(below)
            source = folded if field in _CODE_FIELDS else original
            values.setdefault(field, []).append(source[offset + start : offset + end])
            if field in _NOT_PHONE_FIELDS:
                masked.append((offset + start, offset + end))
        offset += len(line)
    return values, masked


def _first(values: dict[str, list[str]], field: str) -> str | None:
    for value in values.get(field, ()):
        cleaned = _clean(value, _LIMITS.get(field, PROBLEM_MAX_CHARS))
        if cleaned is not None:
            return cleaned
    return None


def _model_pattern(known_models: Sequence[str]) -> re.Pattern[str] | None:
    models = sorted({m.strip() for m in known_models if m.strip()}, key=len, reverse=True)
    if not models:
        return None
    alternatives = "|".join(r"\s+".join(map(re.escape, m.split())) for m in models)
    # Word-bounded on ASCII letters and digits only: "LX-3000" must not match inside
    # "ALX-30001", yet must match in "我司LX-3000打印机", where \b would fail.
    return re.compile(rf"(?<![A-Za-z0-9])(?:{alternatives})(?![A-Za-z0-9])", re.IGNORECASE)


def _find_model(
    pattern: re.Pattern[str] | None, known_models: Sequence[str], *texts: str
) -> str | None:
    if pattern is None:
        return None
    canonical = {" ".join(m.lower().split()): m.strip() for m in known_models}
    for text in texts:
        match = pattern.search(text)
        if match:
            return canonical[" ".join(match.group(0).lower().split())]
    return None


def _keyword_count(keyword: str, text: str) -> int:
    needle, pattern = _keyword_matcher(keyword)
    if not needle or needle not in text:  # most keywords, most messages: no regex run
        return 0
    return text.count(needle) if pattern is None else len(pattern.findall(text))


@functools.lru_cache(maxsize=4096)
def _keyword_matcher(keyword: str) -> tuple[str, re.Pattern[str] | None]:
    """How a keyword is searched: a substring every occurrence contains, and for ASCII
    keywords the word-bounded pattern (Chinese is counted as the substring itself). The
    taxonomy is fixed for a run, so each is built once."""
    keyword = keyword.translate(_FOLD).lower().strip()
    if not keyword or not keyword.isascii():
        return keyword, None
    words = keyword.split()
    body = r"\s+".join(map(re.escape, words))
    # Whole words only ("ink" is not in "printing"); a plural "s" still counts.
    return words[0], re.compile(rf"(?<![a-z0-9]){body}(?:e?s)?(?![a-z0-9])")


def classify_fault(text: str, fault_types: Mapping[str, Sequence[str]]) -> str | None:
    """The fault type whose keywords occur most in ``text``; ties go to the first type.

    >>> taxonomy = {"error_code": ("报错",), "paper_jam": ("卡纸",)}
    >>> classify_fault("卡纸了，还报错 E-102，一直卡纸", taxonomy)
    'paper_jam'
    >>> classify_fault("hello", {"paper_jam": ("jam",)}) is None
    True
    """
    folded = text.translate(_FOLD).lower()
    best, best_count = None, 0
    for fault_type, keywords in fault_types.items():
        count = sum(_keyword_count(keyword, folded) for keyword in keywords)
        if count > best_count:  # strictly more: an equal count keeps the earlier type
            best, best_count = fault_type, count
    return best


def _phone(values: dict[str, list[str]], region: str) -> str | None:
    for value in values.get("phone", ()):
        phone = normalize_phone(value, region)
        if phone is None:
            # "王先生 138 0013 8000" or two numbers on one line: the first valid one.
            phone = next(iter(find_phones(value, region)), None)
        if phone is not None:
            return phone
    return None


def _name(labelled: str | None, from_name: str) -> str | None:
    if labelled is not None:
        # "联系人：王强 138 0013 8000": the number is the phone, not part of the name.
        # Searched in the folded copy (full-width digits too), cut from the original.
        end = _NAME_END.search(labelled.translate(_FOLD))
        return _clean(labelled[: end.start()] if end else labelled)
    fallback = from_name.strip().strip("\"'")
    # Some clients put the bare address in the display name; that is not a name.
    return _clean(fallback, _LIMITS["requester_name"]) if "@" not in fallback else None


def _problem(subject: str, text: str) -> str:
    problem = text.strip() or subject.strip()
    if len(problem) > PROBLEM_MAX_CHARS:
        problem = problem[: PROBLEM_MAX_CHARS - 1].rstrip() + "…"
    return problem


def extract_record_fields(
    subject: str,
    text: str,
    *,
    from_name: str = "",
    known_models: Sequence[str] = (),
    fault_types: Mapping[str, Sequence[str]] = _EMPTY_TAXONOMY,
    region: str = "CN",
) -> RecordFields:
    """The record fields of a message's subject and visible text (quotes and signature
    already removed).

    >>> text = "型号：LX-3000，序列号：A1B2C3，联系电话：138 0013 8000"
    >>> fields = extract_record_fields("打印机报错", text)
    >>> fields.machine_model, fields.serial, fields.phone
    ('LX-3000', 'A1B2C3', '+8613800138000')
    """
    folded = text.translate(_FOLD)
    values, not_phone_spans = _labelled_values(text, folded)

    phone = _phone(values, region)
    if phone is None:
        # Blank out serials, models and order numbers first: a serial can be a valid
        # phone number by accident, and the customer did not offer it as one.
        chars = list(folded)
        for start, end in not_phone_spans:
            chars[start:end] = " " * (end - start)
        phone = next(iter(find_phones("".join(chars), region)), None)

    pattern = _model_pattern(known_models)
    model = _first(values, "machine_model")
    if model is not None:
        # Prefer the catalogue's spelling of a known model over the customer's; an
        # unknown one ends where a remark starts: "XP-77（去年买的），一直报警".
        model = _find_model(pattern, known_models, model) or _clean(_MODEL_END.split(model)[0])
    else:
        model = _find_model(pattern, known_models, subject.translate(_FOLD), folded)

    serial = _first(values, "serial")
    if serial is not None:
        code = _SERIAL.search(serial)
        serial = code.group(0) if code else serial

    return RecordFields(
        requester_name=_name(_first(values, "requester_name"), from_name),
        company=_first(values, "company"),
        department=_first(values, "department"),
        phone=phone,
        machine_model=model,
        serial=serial,
        fault_type=classify_fault(f"{subject}\n{text}", fault_types),
        request=_first(values, "request"),
        problem=_problem(subject, text),
    )
