"""Signed reply addresses: a reply reaches its ticket; a forger or a tamperer gets nothing."""

from __future__ import annotations

import re

import pytest

from parsers.reply_tokens import (
    TokenClaim,
    make_token,
    read_token,
    reply_address,
    split_plus_address,
)

KEY = bytes.fromhex("8f3a" * 16)
OTHER_KEY = bytes.fromhex("11aa" * 16)
ALICE = "alice@customer.example.cn"


def test_a_token_reads_back_as_its_ticket_and_scope() -> None:
    token = make_token(KEY, 42, ALICE, "customer")
    assert read_token(KEY, token, ALICE) == TokenClaim(ticket_id=42, scope="customer")


def test_a_token_is_short_and_safe_in_a_local_part() -> None:
    token = make_token(KEY, 2**62, ALICE, "callback")
    assert len(token) <= 40
    assert re.fullmatch(r"[a-z2-7]+", token)


def test_a_token_survives_a_mail_system_changing_the_case() -> None:
    address = reply_address(KEY, "support@support.example.com", 42, ALICE, "customer")
    for mangled in (address.lower(), address.upper()):
        _, token = split_plus_address(mangled)
        assert token is not None
        assert read_token(KEY, token, ALICE) == TokenClaim(42, "customer")


def test_the_sender_is_compared_case_insensitively_and_without_display_name() -> None:
    token = make_token(KEY, 42, "Alice@Customer.Example.CN", "staff")
    assert read_token(KEY, token, ALICE) == TokenClaim(42, "staff")
    assert read_token(KEY, token, f"Alice Wang <{ALICE}>") == TokenClaim(42, "staff")


def test_a_reply_from_another_sender_is_not_authenticated() -> None:
    token = make_token(KEY, 42, "supervisor@support.example.com", "staff")
    assert read_token(KEY, token, "intruder@example.com") is None
    assert read_token(KEY, token, "supervisor@support.example.co") is None


def test_a_token_made_with_another_key_is_rejected() -> None:
    token = make_token(OTHER_KEY, 42, ALICE, "customer")
    assert read_token(KEY, token, ALICE) is None


def test_every_altered_character_is_detected() -> None:
    token = make_token(KEY, 42, ALICE, "customer")
    for position, char in enumerate(token):
        replacement = "a" if char != "a" else "b"
        tampered = token[:position] + replacement + token[position + 1 :]
        assert read_token(KEY, tampered, ALICE) is None, position


def test_a_token_cannot_be_moved_to_another_ticket_or_scope() -> None:
    customer = make_token(KEY, 42, ALICE, "customer")
    staff = make_token(KEY, 42, ALICE, "staff")
    other_ticket = make_token(KEY, 43, ALICE, "customer")
    assert len({customer, staff, other_ticket}) == 3
    # Splice the header of one token onto the signature of another.
    assert read_token(KEY, staff[:15] + customer[15:], ALICE) is None
    assert read_token(KEY, other_ticket[:15] + customer[15:], ALICE) is None


@pytest.mark.parametrize("junk", ["", "abc", "x" * 34, "!" * 34, "é" * 34, "0" * 34, "a" * 200])
def test_junk_is_rejected_without_raising(junk: str) -> None:
    assert read_token(KEY, junk, ALICE) is None


def test_a_truncated_token_is_rejected() -> None:
    token = make_token(KEY, 42, ALICE, "customer")
    assert read_token(KEY, token[:-1], ALICE) is None
    assert read_token(KEY, token[:20], ALICE) is None
    assert read_token(KEY, token + "a", ALICE) is None


def test_an_empty_key_signs_nothing_and_accepts_nothing() -> None:
    token = make_token(KEY, 42, ALICE, "customer")
    assert read_token(b"", token, ALICE) is None
    with pytest.raises(ValueError):
        make_token(b"", 42, ALICE, "customer")


def test_unknown_scopes_and_bad_ids_are_refused_when_signing() -> None:
    with pytest.raises(ValueError, match="scope"):
        make_token(KEY, 42, ALICE, "admin")
    with pytest.raises(ValueError):
        make_token(KEY, 0, ALICE, "customer")


def test_split_plus_address() -> None:
    assert split_plus_address("support+abc@x.com") == ("support@x.com", "abc")
    assert split_plus_address("support@x.com") == ("support@x.com", None)
    assert split_plus_address("support+@x.com") == ("support@x.com", None)
    assert split_plus_address("support+a+b@x.com") == ("support@x.com", "a+b")
    assert split_plus_address(" support+abc@x.com ") == ("support@x.com", "abc")


def test_reply_address_replaces_an_existing_tag_and_keeps_the_domain() -> None:
    address = reply_address(KEY, "support+old@support.example.com", 7, ALICE, "callback")
    base, token = split_plus_address(address)
    assert base == "support@support.example.com"
    assert token is not None and token != "old"
    assert read_token(KEY, token, ALICE) == TokenClaim(7, "callback")


def test_reply_address_needs_an_address() -> None:
    with pytest.raises(ValueError):
        reply_address(KEY, "support", 7, ALICE, "customer")
