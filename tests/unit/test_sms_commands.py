"""SMS commands as staff type them: Chinese and English, full-width, with and without refs."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from parsers.sms_commands import (
    Accept,
    Ack,
    Arrived,
    Assign,
    CheckIn,
    Confirm,
    Consent,
    ConsentKind,
    Done,
    Escalate,
    Eta,
    Help,
    SmsCommand,
    Unknown,
    WallTime,
    parse_consent,
    parse_delay,
    parse_sms,
    parse_wall_time,
    usage_text,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # engineers, Chinese
        ("接单 SL-000042", Accept(42)),
        ("接单SL-000042", Accept(42)),
        ("接单：SL-42", Accept(42)),
        ("签到 今天更换了定影器", CheckIn("今天更换了定影器")),
        ("签到：明天调试", CheckIn("明天调试")),
        ("到达", Arrived(None)),
        ("到达 SL-42", Arrived(42)),
        ("预计 SL-42 14:30", Eta(42, "14:30", WallTime(None, 14, 30))),
        ("完成 SL-42 更换主板，已测试", Done(42, "更换主板，已测试")),
        ("完成了 SL-42 更换主板", Done(42, "更换主板")),
        ("上报 SL-42 缺少配件", Escalate(42, "缺少配件")),
        ("帮助", Help()),
        # engineers, English, any case
        ("ACCEPT SL-000042", Accept(42)),
        ("accept sl-42", Accept(42)),
        ("CHECKIN replaced the fuser", CheckIn("replaced the fuser")),
        ("check-in all good", CheckIn("all good")),
        ("Arrived", Arrived(None)),
        ("ARRIVED SL-42", Arrived(42)),
        ("ETA SL-42 3pm", Eta(42, "3pm", WallTime(None, 15, 0))),
        ("done SL-42: replaced the fuser", Done(42, "replaced the fuser")),
        ("ESCALATE SL-42 needs a new board", Escalate(42, "needs a new board")),
        ("help me", Help()),
        # supervisors
        ("收到", Ack(None)),
        ("好", Ack(None)),
        ("好的", Ack(None)),
        ("确认收到", Ack(None)),
        ("收到 王强", Ack(None, "王强")),
        ("OK", Ack(None)),
        ("ack SL-42", Ack(42)),
        ("OK Wang Qiang", Ack(None, "Wang Qiang")),
        ("派 SL-42 王强", Assign(42, "王强")),
        ("ASSIGN SL-42 Li Na", Assign(42, "Li Na")),
        ("确认 SL-42", Confirm(42)),
        ("CONFIRM SL-000042", Confirm(42)),
    ],
)
def test_every_command_in_both_languages(text: str, expected: SmsCommand) -> None:
    assert parse_sms(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ＯＫ", Ack(None)),
        ("ＯＫ　王强", Ack(None, "王强")),
        ("ＡＣＣＥＰＴ　ＳＬ－０００４２", Accept(42)),
        ("接单ＳＬ－０００４２", Accept(42)),
        ("确认：ＳＬ－４２", Confirm(42)),
        ("预计：１４：３０", Eta(None, "１４：３０", WallTime(None, 14, 30))),
        ("\u200bOK", Ack(None)),  # a zero-width space pasted in front
        ("  done   SL-42   fixed ", Done(42, "fixed")),
    ],
)
def test_full_width_letters_digits_spaces_and_colons_read_as_half_width(
    text: str, expected: SmsCommand
) -> None:
    assert parse_sms(text) == expected


@pytest.mark.parametrize(
    "ref", ["SL-000042", "SL-42", "sl42", "SL 42", "#SL-42", "[SL-000042]", "ＳＬ－０００４２"]
)
def test_references_are_read_as_parse_ref_reads_them(ref: str) -> None:
    assert parse_sms(f"ACCEPT {ref}") == Accept(42)
    assert parse_sms(f"完成{ref} 好了") == Done(42, "好了")


def test_a_bare_number_is_not_a_reference() -> None:
    # "42" might be a count, a time or a phone; acting on the wrong ticket is worse.
    assert parse_sms("ACCEPT 42") == Unknown("ACCEPT 42")
    assert parse_sms("DONE 42 fixed") == Done(None, "42 fixed")


def test_free_text_keeps_what_the_sender_typed() -> None:
    text = "签到：今天更换定影器，明天调试😀 <&> ＯＫ"
    assert parse_sms(text) == CheckIn("今天更换定影器，明天调试😀 <&> ＯＫ")
    assert parse_sms("打印机又卡纸了！<b>&</b>") == Unknown("打印机又卡纸了！<b>&</b>")


@pytest.mark.parametrize("text", ["好像坏了", "派出所来电", "OKAYish", "ACCEPT ok", "确认 好的"])
def test_sentences_that_merely_start_like_a_verb_are_not_commands(text: str) -> None:
    assert isinstance(parse_sms(text), Unknown)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("STOP", ConsentKind.OPT_OUT),
        ("stop", ConsentKind.OPT_OUT),
        ("ＳＴＯＰ", ConsentKind.OPT_OUT),
        ("Unsubscribe.", ConsentKind.OPT_OUT),
        ("STOPALL", ConsentKind.OPT_OUT),
        ("cancel", ConsentKind.OPT_OUT),
        ("END", ConsentKind.OPT_OUT),
        ("QUIT", ConsentKind.OPT_OUT),
        ("退订", ConsentKind.OPT_OUT),
        ("TD", ConsentKind.OPT_OUT),
        ("t", ConsentKind.OPT_OUT),
        ("START", ConsentKind.OPT_IN),
        ("yes", ConsentKind.OPT_IN),
        ("UNSTOP", ConsentKind.OPT_IN),
        ("HELP", ConsentKind.HELP),
        ("info", ConsentKind.HELP),
    ],
)
def test_carrier_keywords_are_consent(text: str, kind: ConsentKind) -> None:
    command = parse_sms(text)
    assert isinstance(command, Consent)
    assert command.kind is kind


@pytest.mark.parametrize("text", ["stop by at 3pm", "请不要退订", "yes it works now", "HELP me"])
def test_keywords_inside_a_sentence_are_not_consent(text: str) -> None:
    assert parse_consent(text) is None
    assert not isinstance(parse_sms(text), Consent)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("14:30", WallTime(None, 14, 30)),
        ("14：30", WallTime(None, 14, 30)),
        ("明天10点", WallTime(1, 10, 0)),
        ("明天上午10点半", WallTime(1, 10, 30)),
        ("下午3点", WallTime(None, 15, 0)),
        ("下午三点一刻", WallTime(None, 15, 15)),
        ("晚上8点到", WallTime(None, 20, 0)),
        ("中午12点", WallTime(None, 12, 0)),
        ("今天十点", WallTime(0, 10, 0)),
        ("后天9点", WallTime(2, 9, 0)),
        ("3pm", WallTime(None, 15, 0)),
        ("12am", WallTime(None, 0, 0)),
        ("10:15 a.m. tomorrow", WallTime(1, 10, 15)),
        ("tomorrow 9:00", WallTime(1, 9, 0)),
    ],
)
def test_eta_wall_times(text: str, expected: WallTime) -> None:
    assert parse_wall_time(text) == expected


@pytest.mark.parametrize("text", ["", "soon", "明天", "25:00", "13pm", "+2h"])
def test_eta_without_a_readable_time_of_day(text: str) -> None:
    assert parse_wall_time(text) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("+2h", timedelta(hours=2)),
        ("+1h30m", timedelta(hours=1, minutes=30)),
        ("+90m", timedelta(minutes=90)),
        ("+1.5h", timedelta(minutes=90)),
        ("in 2 hours", timedelta(hours=2)),
        ("in 30 min", timedelta(minutes=30)),
        ("2小时后", timedelta(hours=2)),
        ("两个小时后到", timedelta(hours=2)),
        ("半小时后", timedelta(minutes=30)),
        ("30分钟后", timedelta(minutes=30)),
        ("1小时20分钟后", timedelta(hours=1, minutes=20)),
    ],
)
def test_eta_delays(text: str, expected: timedelta) -> None:
    assert parse_delay(text) == expected


def test_eta_keeps_the_raw_text_with_either_reading() -> None:
    assert parse_sms("预计 明天上午10点到") == Eta(None, "明天上午10点到", WallTime(1, 10, 0))
    assert parse_sms("ETA +2h") == Eta(None, "+2h", None, timedelta(hours=2))
    assert parse_sms("ETA SL-42 soon") == Eta(42, "soon")


def test_assign_reads_a_phone_number_as_e164() -> None:
    assert parse_sms("派 SL-42 138-0013-8000") == Assign(42, "138-0013-8000", "+8613800138000")
    assert parse_sms("ASSIGN SL-42 Wang   Qiang") == Assign(42, "Wang Qiang")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "😀",
        "\x00\x07",
        "SL-000042",
        "ＳＬ",
        "接单" * 500,
        "OK" + "\n" * 3,
        "ETA +99999999999999h",
        "预计 九十九点",
    ],
)
def test_parse_never_raises_and_always_answers(text: str) -> None:
    assert parse_sms(text).verb  # every command has a verb the caller can log


@pytest.mark.parametrize("role", ["engineer", "supervisor", "manager", "sales_assistant"])
@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_usage_is_short_and_has_no_links(role: str, language: str) -> None:
    text = usage_text(role, language)
    assert 0 < len(text) <= 140
    assert not re.search(r"https?://|www\.", text)
    assert bool(re.search(r"[\u4e00-\u9fff]", text)) == (language == "zh-CN")


def test_usage_names_each_roles_commands() -> None:
    assert "接单" in usage_text("engineer", "zh-CN") and "签到" in usage_text("engineer", "zh-CN")
    assert "CHECKIN" in usage_text("engineer", "en")
    assert "收到" in usage_text("supervisor", "zh-CN") and "派" in usage_text("manager", "zh-CN")
    assert "ASSIGN" in usage_text("supervisor", "en")
    assert "ACCEPT" not in usage_text("manager", "en")
