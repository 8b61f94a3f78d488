"""Bytes to text for mail: charset labels as clients really use them, never an exception.

Mail clients in China label GBK text `gb2312` (a subset that lacks about 14,000 of GBK's
characters), Hong Kong and Taiwan clients send HKSCS characters under `big5`, and Outlook
labels Korean `ks_c_5601-1987`. We map those labels to the superset codec the sender
really used (as the WHATWG Encoding Standard does), and when bytes still fail under the
declared charset we fall back through UTF-8, then statistical detection, then
replacement characters. Every fallback is reported as a note so the caller can record
what was recovered.

>>> decode_text("打印机".encode("gbk"), "gb2312")
Decoded(text='打印机', note=None)
"""

from __future__ import annotations

import base64
import binascii
import codecs
import quopri
import re
from dataclasses import dataclass

import charset_normalizer

# Labels whose real encoding is a superset (WHATWG Encoding Standard, "gbk" and "big5"
# sections; Microsoft's code page 949 for the Korean label).
_SUPERSETS: dict[str, str] = {
    "gb2312": "gb18030",
    "gb_2312": "gb18030",
    "gb_2312-80": "gb18030",
    "csgb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "cp936": "gb18030",
    "ms936": "gb18030",
    "windows-936": "gb18030",
    "euc-cn": "gb18030",
    "x-euc-cn": "gb18030",
    "chinese": "gb18030",
    "iso-ir-58": "gb18030",
    "gb18030": "gb18030",
    "big5": "big5hkscs",
    "big-5": "big5hkscs",
    "x-big5": "big5hkscs",
    "cn-big5": "big5hkscs",
    "csbig5": "big5hkscs",
    "big5-hkscs": "big5hkscs",
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "ks_c_5601-1989": "cp949",
    "ksc5601": "cp949",
    "euc-kr": "cp949",
    "x-windows-949": "cp949",
    "windows-949": "cp949",
    "iso-2022-jp": "iso2022_jp_ext",
    # RFC 2046 §4.1.2: the default (and an 8-bit-clean client's mislabel) is US-ASCII;
    # decoding it as UTF-8 gives the same text for ASCII and recovers the rest.
    "us-ascii": "utf-8",
    "ascii": "utf-8",
    "ansi_x3.4-1968": "utf-8",
    "utf8": "utf-8",
    "unicode-1-1-utf-8": "utf-8",
}

# Tried before general detection: this is a Chinese support desk, and a general
# detector reads short GBK text as Korean (cp949) more often than not.
_CHINESE_CODECS = ["gb18030", "big5hkscs"]

# Double-byte codecs a detector confuses with each other on short text.
_EAST_ASIAN = {
    "cp949",
    "euc_kr",
    "johab",
    "shift_jis",
    "cp932",
    "euc_jp",
    "euc_jis_2004",
    "big5",
    "big5hkscs",
    "cp950",
    "gb2312",
    "gbk",
    "gb18030",
    "hz",
}
_SINGLE_BYTE_LATIN = {"latin_1", "iso8859-1", "cp1252", "iso8859-15"}


@dataclass(frozen=True)
class Decoded:
    text: str
    note: str | None


def codec_for(label: str | None) -> str | None:
    """The Python codec for a MIME charset label, or None if unknown.

    >>> codec_for("X-GBK"), codec_for("ks_c_5601-1987"), codec_for("x-unknown")
    ('gb18030', 'cp949', None)
    """
    if not label:
        return None
    name = label.strip().strip("\"'").lower()
    if name in _SUPERSETS:
        return _SUPERSETS[name]
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return None
    # "base64", "rot13", "zlib" are codecs too, but not text encodings.
    if not getattr(info, "_is_text_encoding", True):
        return None
    return info.name


def detect(data: bytes) -> str | None:
    """Guess the encoding of bytes that are not UTF-8, preferring the Chinese codecs."""
    try:
        chinese = charset_normalizer.from_bytes(data, cp_isolation=_CHINESE_CODECS).best()
        general = charset_normalizer.from_bytes(data).best()
    except Exception:  # the detector is a heuristic; it must not break parsing
        return None
    if chinese is not None and (
        general is None or general.encoding in _EAST_ASIAN or chinese.chaos <= general.chaos
    ):
        return str(chinese.encoding)
    return str(general.encoding) if general is not None else None


def decode_text(data: bytes, label: str | None, *, what: str = "body") -> Decoded:
    """Decode bytes declared as `label`; fall back, never raise.

    The order is: the declared charset (mapped to its superset), UTF-8, detection,
    and as a last resort the declared charset (or UTF-8) with replacement characters.
    """
    codec = codec_for(label)
    shown = (label or "").strip() or "none"
    if codec is not None:
        try:
            text = data.decode(codec)
        except (UnicodeDecodeError, LookupError):
            pass
        else:
            # A body labelled Latin-1 that is valid UTF-8 with multi-byte sequences is
            # UTF-8 in practice: random Latin-1 text is almost never valid UTF-8.
            if codec in _SINGLE_BYTE_LATIN and _is_multibyte_utf8(data):
                return Decoded(data.decode("utf-8"), f"{what} charset {shown!r} was UTF-8")
            return Decoded(text, None)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        note = None if label is None else f"{what} charset {shown!r} decoded as utf-8"
        return Decoded(text, note)
    guess = detect(data)
    if guess is not None:
        try:
            text = data.decode(guess)
        except (UnicodeDecodeError, LookupError):
            pass
        else:
            return Decoded(text, f"{what} charset {shown!r} decoded as {guess} by detection")
    return Decoded(
        data.decode(codec or "utf-8", errors="replace"),
        f"{what} charset {shown!r} undecodable: replacement characters used",
    )


def _is_multibyte_utf8(data: bytes) -> bool:
    if data.isascii():
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# RFC 2047 §2: encoded-word = "=?" charset ["*" language] "?" encoding "?" text "?="
_ENCODED_WORD = re.compile(r"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([bBqQ])\?([^?\s]*)\?=")
_FOLD = re.compile(r"\r?\n[ \t]")


def recover_bytes(value: str) -> bytes:
    """The original bytes of a header the stdlib read as ASCII with surrogateescape."""
    return value.encode("utf-8", errors="surrogateescape")


def _decode_word_payload(encoding: str, payload: str) -> bytes:
    if encoding in "bB":
        cleaned = re.sub(r"[^A-Za-z0-9+/]", "", payload)
        cleaned += "=" * (-len(cleaned) % 4)
        try:
            return base64.b64decode(cleaned)
        except (binascii.Error, ValueError):
            return payload.encode("ascii", errors="replace")
    # RFC 2047 §4.2: "_" is a space in the Q encoding.
    return quopri.decodestring(payload.replace("_", " ").encode("ascii", errors="replace"))


# A byte the stdlib could not decode, kept as a lone surrogate (surrogateescape).
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


def decode_header(value: str) -> tuple[str, tuple[str, ...]]:
    """Decode a raw header value: RFC 2047 encoded-words and 8-bit raw bytes.

    Adjacent encoded-words in the same charset are joined as bytes before decoding:
    clients split multi-byte characters across words (RFC 2047 §5 forbids it; QQ Mail
    and older Outlook do it anyway). Whitespace between encoded-words is dropped
    (RFC 2047 §6.2); folding is undone (RFC 5322 §2.2.3).

    >>> decode_header("=?gb2312?B?tPLTobv6?= =?utf-8?Q?_OK?=")[0]
    '打印机 OK'
    """
    value = _FOLD.sub(" ", value)
    if value.isascii() and "=?" not in value:  # most headers: nothing to decode
        return value.replace("\r", "").replace("\n", " "), ()
    notes: list[str] = []
    if _ESCAPED_BYTE.search(value):
        decoded = decode_text(recover_bytes(value), None, what="8-bit header")
        if decoded.note:
            notes.append(decoded.note)
        value = decoded.text
    out: list[str] = []
    pending: bytes = b""
    pending_charset: str | None = None
    pos = 0

    def flush() -> None:
        nonlocal pending, pending_charset
        if pending_charset is not None:
            decoded = decode_text(pending, pending_charset, what="header")
            if decoded.note:
                notes.append(decoded.note)
            out.append(decoded.text)
        pending, pending_charset = b"", None

    for match in _ENCODED_WORD.finditer(value):
        between = value[pos : match.start()]
        if between and not (pending_charset is not None and between.isspace()):
            flush()
            out.append(between)
        charset = match.group(1).lower()
        if pending_charset is not None and charset != pending_charset:
            flush()
        pending_charset = charset
        pending += _decode_word_payload(match.group(2), match.group(3))
        pos = match.end()
    flush()
    out.append(value[pos:])
    text = "".join(out).replace("\r", "").replace("\n", " ")
    return text, tuple(notes)
