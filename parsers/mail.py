"""Raw RFC 5322 bytes to a `ParsedEmail`: the one entry point for inbound mail.

`parse_email` never raises. Mail arrives from every client and MTA in the world, and a
message we cannot fully understand must still become a ticket (or be quarantined by the
caller with our notes), never an exception that stops a batch.

Parsing is the list of small steps in `STEPS`, each reading and filling a `_Draft`:
decode headers, walk the MIME tree (pick the body, find attachments), HTML to text, strip
quotes and signature, classify auto-replies and bounces.

The stdlib parses with its `compat32` policy: it only splits the message into headers and
MIME parts, four to five times faster than `email.policy.default`, which builds a header
object for every header it is asked for. We read raw header strings (`raw_items()`) and
decode them ourselves: the default policy's header parser raises on some malformed headers
and decodes encoded-words with the declared charset only (gb2312-labelled GBK becomes
replacement characters). Bodies likewise: we take the transfer-decoded bytes
(`get_payload(decode=True)`, which accepts any Content-Transfer-Encoding) and apply our
own charset chain, where `get_content()` would raise or guess.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import hashlib
import mimetypes
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from pathlib import PurePosixPath, PureWindowsPath
from urllib.parse import unquote_to_bytes

from parsers.autoreply import Bounce, MessageFacts, classify
from parsers.charsets import decode_header, decode_text, recover_bytes
from parsers.html_text import html_to_text, tidy_text
from parsers.quotes import visible_reply

__all__ = ["MailAttachment", "Bounce", "ParsedEmail", "parse_email"]


@dataclass(frozen=True)
class MailAttachment:
    filename: str  # decoded (RFC 2047 / RFC 2231), "" → a generated "attachment-1.bin"
    content_type: str  # "image/png"
    size: int
    sha256: str  # hex of the decoded payload
    content: bytes = field(repr=False)
    inline: bool = False


@dataclass(frozen=True)
class ParsedEmail:
    message_id: str | None  # "<abc@host>" with angle brackets, or None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    subject: str  # decoded, whitespace collapsed, "" if none
    from_name: str  # decoded display name, "" if none
    from_address: str | None  # lower-cased addr-spec, None if missing or unparseable
    reply_to: str | None
    to: tuple[str, ...]  # lower-cased addresses
    cc: tuple[str, ...]
    date: datetime | None  # timezone-aware, or None
    text: str  # the whole body as plain text, \n line ends
    visible_text: str  # text without quoted reply, forwarded history and signature
    html: str | None  # the raw HTML part decoded to str, if any
    attachments: tuple[MailAttachment, ...]
    auto_reply: str | None  # why it is an automatic message, or None
    bounce: Bounce | None
    notes: tuple[str, ...]  # what went wrong but was recovered


@dataclass
class _Draft:
    """The message being parsed; each step reads what earlier steps filled."""

    message: Message
    notes: list[str] = field(default_factory=list)
    headers: list[tuple[str, str]] = field(default_factory=list)  # decoded, in order
    message_id: str | None = None
    in_reply_to: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    subject: str = ""
    from_name: str = ""
    from_address: str | None = None
    from_raw_address: str | None = None  # "mailer-daemon" has no domain, still telling
    reply_to: str | None = None
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    date: datetime | None = None
    plain_parts: list[str] = field(default_factory=list)
    html_parts: list[str] = field(default_factory=list)
    text: str = ""
    visible_text: str = ""
    attachments: list[MailAttachment] = field(default_factory=list)
    report_type: str = ""
    delivery_status: list[str] = field(default_factory=list)
    returned_headers: list[str] = field(default_factory=list)
    auto_reply: str | None = None
    bounce: Bounce | None = None

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


# ---------------------------------------------------------------- header helpers

_MSGID = re.compile(r"<[^<>\s]+>")
_WSP = re.compile(r"\s+")
_ADDR_SPEC = re.compile(r"[^\s<>@,;:\"()\[\]]+@[^\s<>@,;:\"()\[\]]+")


def raw_header(part: Message, name: str) -> str | None:
    """The raw (undecoded, unparsed) value of the first `name` header, or None."""
    wanted = name.lower()
    for key, value in part.raw_items():
        if key.lower() == wanted:
            return str(value)
    return None


def _decoded(draft: _Draft, value: str) -> str:
    text, notes = decode_header(value)
    for note in notes:
        draft.note(note)
    return _WSP.sub(" ", text).strip()


def _message_ids(value: str | None) -> tuple[str, ...]:
    return tuple(dict.fromkeys(_MSGID.findall(value or "")))


def _addresses(draft: _Draft, name: str, value: str) -> list[tuple[str, str]]:
    """(decoded display name, addr-spec) pairs of an address header (RFC 5322 §3.4)."""
    try:
        pairs = email.utils.getaddresses([value])
    except Exception:  # the stdlib parser on hostile input
        pairs = []
    result = [(n, a) for n, a in pairs if a]
    if not result:
        found = _ADDR_SPEC.findall(recover_bytes(value).decode("utf-8", "replace"))
        if found:
            draft.note(f"malformed header {name}: addresses found by pattern")
        result = [("", a) for a in found]
    return [(_decoded(draft, n), a.strip().lower()) for n, a in result]


def _valid_address(address: str) -> str | None:
    return address if _ADDR_SPEC.fullmatch(address) else None


# ------------------------------------------------------------------------ steps


def decode_headers(draft: _Draft) -> None:
    """Message-ID, threading, subject, addresses and date, each read on its own guard."""
    msg = draft.message
    draft.headers = [(str(k), _decoded(draft, str(v))) for k, v in msg.raw_items()]

    raw_id = raw_header(msg, "Message-ID")
    if raw_id is not None:
        ids = _message_ids(raw_id)
        bare = raw_id.strip()
        if ids:
            draft.message_id = ids[0]
        elif bare and " " not in bare:
            draft.message_id = f"<{bare}>"
            draft.note("malformed header Message-ID: angle brackets added")
    draft.in_reply_to = _message_ids(raw_header(msg, "In-Reply-To"))
    draft.references = _message_ids(raw_header(msg, "References"))
    draft.subject = _decoded(draft, raw_header(msg, "Subject") or "")

    raw_from = raw_header(msg, "From")
    if raw_from is not None:
        pairs = _addresses(draft, "From", raw_from)
        if pairs:
            draft.from_name, draft.from_raw_address = pairs[0]
            draft.from_address = _valid_address(pairs[0][1])
        else:
            draft.from_name = _decoded(draft, raw_from)
        if draft.from_address is None:
            draft.note("malformed header From")
    raw_reply_to = raw_header(msg, "Reply-To")
    if raw_reply_to:
        valid = [a for _, a in _addresses(draft, "Reply-To", raw_reply_to) if _valid_address(a)]
        draft.reply_to = valid[0] if valid else None
    for name in ("To", "Cc"):
        values = [v for k, v in msg.raw_items() if k.lower() == name.lower()]
        found = [a for v in values for _, a in _addresses(draft, name, str(v))]
        setattr(draft, name.lower(), tuple(dict.fromkeys(a for a in found if _valid_address(a))))

    raw_date = raw_header(msg, "Date")
    if raw_date is not None:
        try:
            date = email.utils.parsedate_to_datetime(raw_date.strip())
        except (TypeError, ValueError, IndexError, OverflowError):
            draft.note("malformed header Date")
        else:
            if date.tzinfo is None:
                # RFC 5322 §3.3: "-0000" means the zone is unknown; UTC is the safe reading.
                date = date.replace(tzinfo=UTC)
                draft.note("header Date has no time zone: read as UTC")
            draft.date = date


def walk_parts(draft: _Draft) -> None:
    """Pick the body parts and the attachments from the MIME tree (RFC 2045-2049)."""
    _walk(draft, draft.message, top=True)


def convert_html(draft: _Draft) -> None:
    """The text of the message: text/plain parts, else the HTML rendered as text."""
    if draft.plain_parts:
        draft.text = tidy_text("\n\n".join(draft.plain_parts))
    elif draft.html_parts:
        draft.text = html_to_text("\n".join(draft.html_parts))


def strip_quotes_and_signature(draft: _Draft) -> None:
    """What the sender wrote for this message (see `parsers.quotes`)."""
    draft.visible_text = visible_reply(draft.text) if draft.text else ""


def classify_automatic(draft: _Draft) -> None:
    """Auto-reply (RFC 3834) or bounce (RFC 3464), never both."""
    facts = MessageFacts(
        headers=draft.headers,
        subject=draft.subject,
        from_address=draft.from_raw_address,
        from_name=draft.from_name,
        content_type=_content_type(draft, draft.message)[0],
        report_type=draft.report_type,
        delivery_status="\n".join(draft.delivery_status),
        returned_headers="\n".join(draft.returned_headers),
        body=draft.text,
        own_message_id=draft.message_id,
    )
    draft.auto_reply, draft.bounce = classify(facts)


STEPS: tuple[Callable[[_Draft], None], ...] = (
    decode_headers,
    walk_parts,
    convert_html,
    strip_quotes_and_signature,
    classify_automatic,
)


# ------------------------------------------------------------------ MIME walking

_PARAM = re.compile(
    r"""([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)""",
)
_RFC2231_NAME = re.compile(r"^([^*]+)(?:\*(\d+))?(\*)?$")


def parse_params(draft: _Draft, value: str) -> tuple[str, dict[str, str]]:
    """Split a Content-Type or Content-Disposition value into (main value, parameters).

    Parameter values are decoded: RFC 2231 (`filename*=gb2312''%B4%F2`, continuations
    `name*0*`, `name*1*`) and the RFC 2047 encoded-words that many clients put in
    quoted values anyway (RFC 2047 §5 forbids them there; Outlook and QQ Mail do it).
    """
    head, _, rest = value.partition(";")
    params: dict[str, str] = {}
    pieces: dict[str, list[tuple[int, bool, str]]] = {}
    for match in _PARAM.finditer(rest):
        key, raw = match.group(1).lower(), match.group(2).strip()
        if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        extended = _RFC2231_NAME.match(key) if "*" in key else None
        if extended:
            name, index, encoded = extended.groups()
            pieces.setdefault(name, []).append((int(index or 0), bool(encoded), raw))
        elif key not in params:
            params[key] = raw
    for name, parts in pieces.items():
        parts.sort(key=lambda p: p[0])
        charset: str | None = None
        data = b""
        for position, (_, encoded, raw) in enumerate(parts):
            if encoded and position == 0 and raw.count("'") >= 2:
                charset, _, raw = raw.split("'", 2)
            data += unquote_to_bytes(raw) if encoded else recover_bytes(raw)
        decoded = decode_text(data, charset or None, what=f"parameter {name}")
        if decoded.note:
            draft.note(decoded.note)
        params[name] = decoded.text  # RFC 2231 wins over the plain parameter
    for name in ("name", "filename"):
        if name in params and name not in pieces:
            params[name] = _decoded(draft, params[name])
    return head.strip().lower(), params


def _content_type(draft: _Draft, part: Message) -> tuple[str, dict[str, str]]:
    raw = raw_header(part, "Content-Type")
    if raw is None:
        return part.get_default_type(), {}
    ctype, params = parse_params(draft, raw)
    if not re.fullmatch(r"[\w.+-]+/[\w.+-]+", ctype):
        # RFC 2045 §5.2: an invalid Content-Type is read as text/plain.
        draft.note(f"malformed header Content-Type {ctype[:40]!r}: read as text/plain")
        return "text/plain", params
    return ctype, params


def _disposition(draft: _Draft, part: Message) -> tuple[str, dict[str, str]]:
    raw = raw_header(part, "Content-Disposition")
    return parse_params(draft, raw) if raw is not None else ("", {})


def _payload_bytes(draft: _Draft, part: Message) -> bytes:
    cte = (raw_header(part, "Content-Transfer-Encoding") or "").strip().lower()
    known = {"7bit", "8bit", "binary", "base64", "quoted-printable"}
    known |= {"x-uuencode", "uuencode", "uue", "x-uue"}  # get_payload decodes these too
    if cte and cte not in known:
        draft.note(f"unknown Content-Transfer-Encoding {cte[:40]!r}: read as 8bit")
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        payload = None
    if isinstance(payload, bytes):
        return payload
    raw = part.get_payload()
    if isinstance(raw, str):
        return recover_bytes(raw)
    return b""


def _filename(name: str) -> str:
    """The last path component, without control characters: a name, never a path."""
    name = PureWindowsPath(PurePosixPath(name).name).name
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    return "" if set(name) <= {"."} else name


def _serialise(draft: _Draft, part: Message) -> bytes:
    payload = part.get_payload()
    inner = payload[0] if isinstance(payload, list) and payload else None
    try:
        if isinstance(inner, Message):
            return inner.as_bytes(policy=email.policy.compat32)
        return part.as_bytes(policy=email.policy.compat32)
    except Exception:
        draft.note("embedded message could not be serialised")
        return b""


def _add_attachment(
    draft: _Draft, part: Message, ctype: str, params: dict[str, str], content: bytes
) -> None:
    disposition, dparams = _disposition(draft, part)
    name = _filename(dparams.get("filename") or params.get("name") or "")
    if not name:
        extension = ".eml" if ctype == "message/rfc822" else mimetypes.guess_extension(ctype)
        name = f"attachment-{len(draft.attachments) + 1}{extension or '.bin'}"
    inline = disposition == "inline" or (
        not disposition and raw_header(part, "Content-ID") is not None
    )
    draft.attachments.append(
        MailAttachment(
            filename=name,
            content_type=ctype,
            size=len(content),
            sha256=hashlib.sha256(content).hexdigest(),
            content=content,
            inline=inline,
        )
    )


def _header_block(part: Message) -> str:
    return "\n".join(f"{k}: {v}" for k, v in part.raw_items())


def _text_of(draft: _Draft, part: Message, params: dict[str, str], what: str) -> str:
    decoded = decode_text(_payload_bytes(draft, part), params.get("charset"), what=what)
    if decoded.note:
        draft.note(decoded.note)
    return decoded.text


_SIGNATURES = {"application/pgp-signature", "application/pkcs7-signature"}
_SIGNATURES |= {"application/x-pkcs7-signature"}


def _walk(draft: _Draft, part: Message, top: bool = False) -> None:
    ctype, params = _content_type(draft, part)
    maintype = ctype.split("/")[0]
    children = part.get_payload() if part.is_multipart() else None

    if ctype == "multipart/report" and not draft.report_type:
        draft.report_type = params.get("report-type", "").strip().strip('"').lower()
    if maintype == "multipart" and isinstance(children, list):
        if ctype == "multipart/signed":
            # RFC 1847 §2.1: the first part is the content, the second the signature.
            children = children[:1]
        if ctype == "multipart/alternative":
            _walk_alternative(draft, [c for c in children if isinstance(c, Message)])
            return
        for child in children:
            if isinstance(child, Message):
                _walk(draft, child)
        return
    if maintype == "multipart":
        draft.note(f"{ctype} without parts: read as text")
        ctype, maintype = "text/plain", "text"

    if ctype in {"message/rfc822", "message/global"}:
        # A forwarded or returned message is an attachment, never the body.
        inner = children[0] if isinstance(children, list) and children else None
        if isinstance(inner, Message):
            draft.returned_headers.append(_header_block(inner))
        _add_attachment(draft, part, ctype, params, _serialise(draft, part))
        return
    if ctype in {"message/delivery-status", "message/global-delivery-status"}:
        blocks = part.get_payload()
        if isinstance(blocks, list):
            text = "\n\n".join(_header_block(b) for b in blocks if isinstance(b, Message))
        else:
            text = _text_of(draft, part, params, "delivery-status")
        draft.delivery_status.append(text)
        _add_attachment(draft, part, ctype, params, text.encode("utf-8"))
        return
    if ctype in _SIGNATURES:
        return

    disposition, dparams = _disposition(draft, part)
    named = bool(dparams.get("filename") or params.get("name"))
    if ctype in {"text/plain", "text/html"} and disposition != "attachment" and not named:
        text = _text_of(draft, part, params, "body")
        (draft.plain_parts if ctype == "text/plain" else draft.html_parts).append(text)
        return
    if ctype == "text/rfc822-headers":
        draft.returned_headers.append(_text_of(draft, part, params, "returned headers"))
    _add_attachment(draft, part, ctype, params, _payload_bytes(draft, part))


def _walk_alternative(draft: _Draft, children: list[Message]) -> None:
    """RFC 2046 §5.1.4: pick one alternative; we prefer the plain text one."""
    best: _Draft | None = None
    trials: list[_Draft] = []
    for child in children:
        if not isinstance(child, Message):
            continue
        trial = _Draft(message=draft.message)
        trials.append(trial)
        _walk(trial, child)
        draft.attachments.extend(trial.attachments)  # related images of any alternative
        for note in trial.notes:
            draft.note(note)
        draft.delivery_status.extend(trial.delivery_status)
        draft.returned_headers.extend(trial.returned_headers)
        draft.report_type = draft.report_type or trial.report_type
        better_text = trial.plain_parts and (best is None or not best.plain_parts)
        if better_text or (trial.html_parts and best is None):
            best = trial
    if best is not None:
        draft.plain_parts.extend(best.plain_parts)
    # The HTML alternative is kept as `html` even when the text comes from text/plain.
    html = next((t.html_parts for t in trials if t.html_parts), [])
    draft.html_parts.extend(html)
    # Renumber generated names so they stay unique across the alternatives.
    seen: set[str] = set()
    for index, attachment in enumerate(draft.attachments):
        if attachment.filename in seen and attachment.filename.startswith("attachment-"):
            suffix = attachment.filename.rsplit(".", 1)[-1]
            name = f"attachment-{index + 1}.{suffix}"
            draft.attachments[index] = MailAttachment(
                name,
                attachment.content_type,
                attachment.size,
                attachment.sha256,
                attachment.content,
                attachment.inline,
            )
        seen.add(draft.attachments[index].filename)


# ------------------------------------------------------------------ entry point


def _finish(draft: _Draft) -> ParsedEmail:
    html = "\n".join(draft.html_parts) if draft.html_parts else None
    visible = draft.visible_text or draft.text
    return ParsedEmail(
        message_id=draft.message_id,
        in_reply_to=draft.in_reply_to,
        references=draft.references,
        subject=draft.subject,
        from_name=draft.from_name,
        from_address=draft.from_address,
        reply_to=draft.reply_to,
        to=draft.to,
        cc=draft.cc,
        date=draft.date,
        text=draft.text,
        visible_text=visible,
        html=html,
        attachments=tuple(draft.attachments),
        auto_reply=draft.auto_reply,
        bounce=draft.bounce,
        notes=tuple(draft.notes),
    )


def _unparseable(raw: bytes, error: BaseException) -> ParsedEmail:
    text = tidy_text(decode_text(raw, None).text)
    return ParsedEmail(
        message_id=None,
        in_reply_to=(),
        references=(),
        subject="",
        from_name="",
        from_address=None,
        reply_to=None,
        to=(),
        cc=(),
        date=None,
        text=text,
        visible_text=text,
        html=None,
        attachments=(),
        auto_reply=None,
        bounce=None,
        notes=(f"unparseable message ({type(error).__name__}): kept as plain text",),
    )


def parse_email(raw: bytes) -> ParsedEmail:
    """Parse one message. Never raises, for any input bytes.

    >>> parse_email(b"Subject: =?gb2312?B?tPLTobv6?=\\r\\n\\r\\nHi").subject
    '打印机'
    """
    raw = bytes(raw)
    try:
        message = email.message_from_bytes(raw, policy=email.policy.compat32)
        draft = _Draft(message=message)
        for step in STEPS:
            try:
                step(draft)
            except Exception as error:  # one broken step must not lose the others' work
                draft.note(f"step {step.__name__} failed: {type(error).__name__}: {error}"[:200])
        return _finish(draft)
    except Exception as error:
        return _unparseable(raw, error)
