"""Phone numbers as customers write them, normalised so the same person is recognised."""

from __future__ import annotations

import pytest

from parsers.phones import find_phones, normalize_phone


@pytest.mark.parametrize(
    "raw",
    [
        "13800138000",
        "138 0013 8000",
        "138-0013-8000",
        "+86 138 0013 8000",
        "0086 13800138000",
        "86 13800138000",
        "(+86)13800138000",
        "１３８００１３８０００",  # typed with a Chinese input method
        "tel:+86-138-0013-8000",
        "TEL:13800138000",
    ],
)
def test_every_spelling_of_a_mobile_is_the_same_e164_number(raw: str) -> None:
    assert normalize_phone(raw) == "+8613800138000"


def test_landlines_keep_their_area_code() -> None:
    assert normalize_phone("(010) 6552 9988") == "+861065529988"
    assert normalize_phone("（０２１）６８８８－８８８８") == "+862168888888"
    assert normalize_phone("+86 010 6552 9988") == "+861065529988"  # the 0 many people keep


@pytest.mark.parametrize(
    "raw", ["", "   ", "abc", "12345", "1380013800", "+86138001380001", "95588", "tel:"]
)
def test_invalid_numbers_are_rejected(raw: str) -> None:
    assert normalize_phone(raw) is None


def test_mobile_only_rejects_a_landline_that_cannot_receive_sms() -> None:
    assert normalize_phone("010-6552 9988", mobile_only=True) is None
    assert normalize_phone("138 0013 8000", mobile_only=True) == "+8613800138000"


def test_mobile_only_accepts_numbers_that_may_be_mobile() -> None:
    # US numbers are FIXED_LINE_OR_MOBILE: an SMS may reach them.
    assert normalize_phone("+1 650 253 0000", mobile_only=True) == "+16502530000"


def test_region_is_assumed_only_for_numbers_without_country_code() -> None:
    assert normalize_phone("020 7946 0018", region="GB") == "+442079460018"
    assert normalize_phone("+86 138 0013 8000", region="GB") == "+8613800138000"


def test_find_phones_returns_valid_numbers_in_order_once_each() -> None:
    text = (
        "请联系王工 138-0013-8000，或座机 (010) 6552 9988。"
        "订单号 20240101123，2026年3月5日报修。再次留号：+86 13800138000"
    )
    assert find_phones(text) == ("+8613800138000", "+861065529988")


def test_find_phones_reads_full_width_digits() -> None:
    assert find_phones("电话：０２１－６８８８８８８８") == ("+862168888888",)


def test_find_phones_finds_nothing_in_text_without_numbers() -> None:
    assert find_phones("打印机不开机，请尽快处理。") == ()
    assert find_phones("error code 12345 after 3 tries") == ()
