"""Signed reply addresses: ``support+<token>@domain``.

Every outgoing email carries a reply address whose token names the ticket, the
recipient it was sent to and what the reply may do (its scope), signed with the
deployment's key. A reply to that address is tied to its ticket even when the subject
was mangled, and a staff command by email ("OK", "接单") is accepted only from the person
it was sent to: a forged ``From:`` alone cannot act on a ticket, because the forger
would also need a token minted for that address (the idea of GitHub's ``reply+TOKEN@``
and Zulip's missed-message addresses).

Token layout, before encoding: one header byte (format version, scope), the ticket id
as 8 bytes, and the first 96 bits of HMAC-SHA256 over a context string, the header,
the id and the lower-cased recipient address. The recipient is not in the token; the
reader supplies the reply's sender and the MAC only matches if it is the same address.

Encoding is base32 in lower case without padding: mail systems may lower-case the
local part of an address (RFC 5321 lets them treat it as case-insensitive in practice),
and base32 loses nothing to that, where base64 would. 21 bytes give 34 characters,
well within the 64 allowed for a local part.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from email.utils import parseaddr

SCOPES = ("customer", "staff", "callback")
_SCOPE_CODES = {scope: code for code, scope in enumerate(SCOPES, start=1)}
_VERSION = 1
_CONTEXT = b"supportline/reply-token/v1\x00"
_ID_BYTES = 8
_MAC_BYTES = 12  # 96 bits: guessing one token takes ~2**95 tries on average
_TOKEN_BYTES = 1 + _ID_BYTES + _MAC_BYTES
_TOKEN_CHARS = -(-_TOKEN_BYTES * 8 // 5)  # base32 without padding: 34
_MAX_ID = 2**63 - 1
# A bare addr-spec of the usual characters: parseaddr would return it unchanged.
_BARE_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+")


@dataclass(frozen=True)
class TokenClaim:
    """What a verified token says: the ticket it belongs to and what it may do."""

    ticket_id: int
    scope: str


def _canonical_address(address: str) -> bytes:
    # "Alice <Alice@Example.com>" and "alice@example.com" are the same mailbox for us.
    # Lower-casing the local part is strictly wrong by RFC 5321 but matches every mail
    # system our customers use, and a case-changing relay must not break replies.
    if _BARE_ADDRESS.fullmatch(address):  # what intake passes: no need to parse it
        return address.lower().encode("utf-8")
    _, addr = parseaddr(address)
    return (addr or address).strip().lower().encode("utf-8")


def _mac(key: bytes, header: bytes, recipient: str) -> bytes:
    message = _CONTEXT + header + b"\x00" + _canonical_address(recipient)
    return hmac.new(key, message, hashlib.sha256).digest()[:_MAC_BYTES]


def make_token(key: bytes, ticket_id: int, recipient: str, scope: str) -> str:
    """A token for ``recipient`` to act on ``ticket_id`` within ``scope``.

    >>> token = make_token(b"k" * 32, 42, "alice@example.com", "customer")
    >>> len(token), token == token.lower()
    (34, True)
    >>> read_token(b"k" * 32, token.upper(), "Alice@Example.com")
    TokenClaim(ticket_id=42, scope='customer')
    """
    if not key:
        raise ValueError("the reply-token key is empty")
    if scope not in _SCOPE_CODES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    if isinstance(ticket_id, bool) or not 0 < ticket_id <= _MAX_ID:
        raise ValueError(f"a ticket id is a positive integer, not {ticket_id!r}")
    header = bytes([_VERSION << 4 | _SCOPE_CODES[scope]]) + ticket_id.to_bytes(_ID_BYTES, "big")
    raw = header + _mac(key, header, recipient)
    return base64.b32encode(raw).decode("ascii").rstrip("=").lower()


def read_token(key: bytes, token: str, sender: str) -> TokenClaim | None:
    """The claim of a token if it was made with ``key`` for ``sender``; otherwise None.

    Never raises: a token comes from whoever sent the mail, so anything malformed is
    simply not a valid token.

    >>> read_token(b"k" * 32, "not-a-token", "alice@example.com") is None
    True
    """
    if not key or len(token) != _TOKEN_CHARS:
        return None
    padded = token.upper() + "=" * (-_TOKEN_CHARS % 8)
    try:
        raw = base64.b32decode(padded)
    except ValueError:  # binascii.Error is a ValueError; so are non-ASCII characters
        return None
    # The last character carries two spare bits that decoding ignores; only the one
    # spelling we issue is accepted, so an altered token never passes.
    if base64.b32encode(raw).decode("ascii") != padded:
        return None
    header, mac = raw[: 1 + _ID_BYTES], raw[1 + _ID_BYTES :]
    if header[0] >> 4 != _VERSION:
        return None
    scope = next((s for s, code in _SCOPE_CODES.items() if code == header[0] & 0x0F), None)
    if scope is None:
        return None
    # Compare the whole MAC in constant time so its bytes cannot be found one by one.
    if not hmac.compare_digest(mac, _mac(key, header, sender)):
        return None
    return TokenClaim(ticket_id=int.from_bytes(header[1:], "big"), scope=scope)


def split_plus_address(address: str) -> tuple[str, str | None]:
    """The address without its ``+tag``, and the tag (None if there is none).

    >>> split_plus_address("support+abc@x.com")
    ('support@x.com', 'abc')
    >>> split_plus_address("support@x.com")
    ('support@x.com', None)
    """
    local, at, domain = address.strip().rpartition("@")
    if not at:
        return address.strip(), None
    # Postfix and Exim split at the first delimiter; a tag may itself contain "+".
    base, plus, tag = local.partition("+")
    if not plus or not tag:
        return f"{base}@{domain}", None
    return f"{base}@{domain}", tag


def reply_address(key: bytes, base_address: str, ticket_id: int, recipient: str, scope: str) -> str:
    """The signed reply address for one recipient of one ticket's mail.

    >>> reply_address(b"k" * 32, "support@x.com", 42, "a@b.cn", "customer")[:8]
    'support+'
    """
    base, _ = split_plus_address(base_address)
    local, at, domain = base.rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"{base_address!r} is not an email address")
    return f"{local}+{make_token(key, ticket_id, recipient, scope)}@{domain}"
