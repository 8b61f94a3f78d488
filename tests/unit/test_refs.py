"""Ticket references as people type them and as subjects carry them."""

from __future__ import annotations

import pytest

from parsers.refs import find_subject_ref, format_ref, parse_ref, tag_subject


def test_format_ref_pads_to_six_digits_and_grows_beyond() -> None:
    assert format_ref(42) == "SL-000042"
    assert format_ref(999999) == "SL-999999"
    assert format_ref(1234567) == "SL-1234567"


@pytest.mark.parametrize("bad", [0, -1])
def test_format_ref_refuses_ids_that_are_not_ticket_ids(bad: int) -> None:
    with pytest.raises(ValueError):
        format_ref(bad)


@pytest.mark.parametrize(
    "typed",
    ["SL-000042", "sl-42", "Sl-0042", "ＳＬ－０００４２", "SL42", "SL 000042", "SL–000042",
     " SL-000042 ", "[SL-000042]", "#SL-000042"],
)  # fmt: skip
def test_parse_ref_reads_what_people_type(typed: str) -> None:
    assert parse_ref(typed) == 42


@pytest.mark.parametrize(
    "typed",
    ["", "42", "SL-", "SL-abc", "XL-000042", "SL-000000", "SL-42 please", "SL-1" + "0" * 30],
)
def test_parse_ref_rejects_what_is_not_a_reference(typed: str) -> None:
    assert parse_ref(typed) is None


def test_parse_ref_round_trips_format_ref() -> None:
    for ticket_id in (1, 42, 999999, 1000000, 2**40):
        assert parse_ref(format_ref(ticket_id)) == ticket_id


@pytest.mark.parametrize(
    "subject",
    [
        "[SL-000042] 打印机不开机",
        "Re: [SL-000042] 打印机不开机",
        "回复：【SL-000042】打印机不开机",
        "RE: FW: printer down [sl-000042]",
        "Follow-up on #SL-000042",
        "答复：［ＳＬ－０００４２］卡纸",  # full-width brackets and letters
    ],
)
def test_find_subject_ref_finds_the_marked_reference(subject: str) -> None:
    assert find_subject_ref(subject) == 42


@pytest.mark.parametrize(
    "subject",
    ["打印机不开机", "SL-000042 without brackets", "Model SL-2000 toner", "[SL-] empty", "#SL-42x"],
)
def test_find_subject_ref_ignores_unmarked_numbers(subject: str) -> None:
    assert find_subject_ref(subject) is None


def test_find_subject_ref_takes_the_first_of_several() -> None:
    assert find_subject_ref("Re: [SL-000043] Fwd: [SL-000042] old thread") == 43


def test_tag_subject_adds_the_reference_after_reply_prefixes() -> None:
    assert tag_subject("打印机不开机", 42) == "[SL-000042] 打印机不开机"
    assert tag_subject("Re: 打印机不开机", 42) == "Re: [SL-000042] 打印机不开机"
    assert tag_subject("RE: FW: printer down", 42) == "RE: FW: [SL-000042] printer down"
    assert tag_subject("回复：卡纸", 42) == "回复：[SL-000042] 卡纸"


def test_tag_subject_is_idempotent() -> None:
    once = tag_subject("Re: 打印机不开机", 42)
    assert tag_subject(once, 42) == once
    assert tag_subject(tag_subject(once, 42), 42) == once
    assert tag_subject("Re: 【SL-000042】打印机不开机", 42) == "Re: 【SL-000042】打印机不开机"


def test_tag_subject_puts_our_ticket_before_another_ones_reference() -> None:
    tagged = tag_subject("Fwd: [SL-000041] old problem is back", 42)
    assert tagged == "Fwd: [SL-000042] [SL-000041] old problem is back"
    assert find_subject_ref(tagged) == 42


def test_tag_subject_of_an_empty_subject_is_the_tag() -> None:
    assert tag_subject("", 42) == "[SL-000042]"
    assert tag_subject("   ", 42) == "[SL-000042]"
