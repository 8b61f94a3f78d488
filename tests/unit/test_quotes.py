"""Quote and signature stripping: what the customer wrote, in the clients they use."""

from __future__ import annotations

import pytest

from parsers.quotes import Line, classify, visible_reply

REPLY = "打印机已经修好了，谢谢。"
QUOTED = "请问打印机型号是多少？"


@pytest.mark.parametrize(
    "history",
    [
        # QQ Mail and Foxmail (Chinese UI)
        '------------------ 原始邮件 ------------------\n发件人: "技术支持"<support@example.com>;\n'
        '发送时间: 2026年11月20日(星期五) 上午10:15\n收件人: "张伟"<zw@qq.com>;\n主题: 打印机\n\n'
        + QUOTED,
        # Foxmail (English UI)
        '------------------ Original ------------------\nFrom:  "技术支持"<support@example.com>;\n'
        "Date:  Fri, Nov 20, 2026 10:15 AM\nTo:  <zw@foxmail.com>;\nSubject:  打印机\n\n" + QUOTED,
        # NetEase 163/126
        '在 2026-11-20 10:15:03，"张伟" <zw@163.com> 写道：\n>' + QUOTED,
        # Gmail zh, on one line and wrapped over two
        "张伟 <zw@gmail.com> 于2026年11月20日周五 上午10:15写道：\n\n> " + QUOTED,
        "张伟 <zw@gmail.com> 于2026年11月20日周五\n上午10:15写道：\n\n> " + QUOTED,
        # Apple Mail zh
        "> 在 2026年11月20日，上午10:15，张伟 <zw@icloud.com> 写道：\n> \n> " + QUOTED,
        # Outlook zh-CN, ASCII and full-width colons
        "发件人: 技术支持 <support@example.com>\n发送时间: 2026年11月20日 10:15\n"
        "收件人: 张伟 <zw@example.cn>\n抄送: 王强\n主题: 回复: 打印机\n\n" + QUOTED,
        "发件人： 技术支持 <support@example.com>\n日期： 2026年11月20日 星期五 10:15\n"
        "收件人： 张伟 <zw@example.cn>\n主题： 回复: 打印机\n\n" + QUOTED,
        # Outlook zh-TW
        "________________________________\n寄件者: 技術支援 <support@example.com>\n"
        "寄件日期: 2026年11月20日 上午 10:15\n收件者: 陳大文 <ctm@example.com.hk>\n主旨: 印表機\n\n"
        + QUOTED,
        # Outlook English
        "-----Original Message-----\nFrom: Support <support@example.com>\n"
        "Sent: Friday, November 20, 2026 10:15 AM\nTo: Zhang Wei\nSubject: Printer\n\n" + QUOTED,
        "-------- 原始邮件 --------\n发件人：技术支持 <support@example.com>\n"
        "日期：2026年11月20日周五 10:15\n"
        "收件人：张伟 <zw@example.cn>\n主题：打印机\n\n" + QUOTED,
        # Gmail English, wrapped
        "On Fri, Nov 20, 2026 at 10:15 AM Support Team <\nsupport@example.com> wrote:\n\n> "
        + QUOTED,
    ],
    ids=[
        "qq",
        "foxmail-en",
        "netease",
        "gmail-zh",
        "gmail-zh-wrapped",
        "apple-zh",
        "outlook-zh-cn",
        "outlook-zh-cn-fullwidth",
        "outlook-zh-tw",
        "outlook-en",
        "thunderbird-zh",
        "gmail-en-wrapped",
    ],
)
def test_quoted_history_of_chinese_and_english_clients_is_removed(history: str) -> None:
    text = f"{REPLY}\n\n{history}\n"
    assert visible_reply(text) == REPLY


@pytest.mark.parametrize(
    "signature",
    [
        "Sent from my iPhone",
        "从我的iPhone发送",
        "從我的 iPhone 傳送",
        "发自我的iPhone",
        "发自网易邮箱大师",
    ],
)
def test_device_signatures_are_removed(signature: str) -> None:
    assert visible_reply(f"{REPLY}\n\n{signature}\n") == REPLY


def test_signature_below_the_rfc3676_delimiter_is_removed() -> None:
    text = f"{REPLY}\n\n-- \n张伟\n某某科技有限公司\n电话 010-12345678\n"
    assert visible_reply(text) == REPLY


def test_a_body_that_is_only_a_quote_is_kept_whole() -> None:
    text = '在 2026-11-20 10:15:03，"张伟" <zw@163.com> 写道：\n> 打印机坏了'
    assert visible_reply(text) == text


def test_an_empty_body_stays_empty() -> None:
    assert visible_reply("") == ""
    assert visible_reply("\n\n  \n") == ""


def test_answers_written_between_quoted_lines_are_kept() -> None:
    text = (
        "请看下面的回答。\n\n"
        "On Fri, Nov 20, 2026 at 10:15 AM Support <support@example.com> wrote:\n"
        "> 型号是多少？\n"
        "LJ-2200\n"
        "> 序列号呢？\n"
        "SN12345\n"
    )
    visible = visible_reply(text)
    assert "LJ-2200" in visible and "SN12345" in visible
    assert "wrote:" not in visible


def test_reply_written_below_the_quote_is_found() -> None:
    text = "On 2026-11-20 10:15, Support wrote:\n> 型号是多少？\n\nLJ-2200，谢谢。"
    assert visible_reply(text) == "LJ-2200，谢谢。"


def test_a_sentence_that_merely_starts_like_a_header_is_kept() -> None:
    text = "From: 我们的实验室\n打印机昨天开始卡纸。\n\n谢谢"
    assert visible_reply(text) == text


def test_a_rule_inside_the_message_is_not_a_signature() -> None:
    text = "故障现象如下：\n----------\n1. 开机报错 E-05\n2. 无法打印\n3. 面板闪红灯\n4. 重启无效"
    text += "\n\n谢谢"
    assert visible_reply(text) == text


def test_crlf_and_cr_line_ends_are_normalised() -> None:
    assert visible_reply("第一行\r\n第二行\r\n") == "第一行\n第二行"
    assert visible_reply("第一行\r第二行\r") == "第一行\n第二行"


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ("", Line.EMPTY),
        ("> 引用", Line.QUOTE),
        ("-- ", Line.SIG_DASH),
        ("_______________", Line.DELIMITER),
        ("发件人：张伟", Line.HEADER),
        ("寄件者: 陳大文", Line.HEADER),
        ("------------------ 原始邮件 ------------------", Line.ATTRIBUTION),
        ("-----Original Message-----", Line.ATTRIBUTION),
        ("打印机卡纸", Line.TEXT),
    ],
)
def test_line_classes(line: str, kind: Line) -> None:
    assert classify(line) is kind
