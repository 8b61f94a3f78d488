"""parse_email: headers, charsets, bodies, attachments, and our Chinese client fixtures."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from parsers.charsets import codec_for, decode_header, decode_text
from parsers.html_text import html_to_text
from parsers.mail import STEPS, parse_email

DATA = Path(__file__).resolve().parents[1] / "data" / "mail"
CST = timezone(timedelta(hours=8))


def _fixture(name: str) -> bytes:
    return (DATA / name).read_bytes()


def _b64(text: str, codec: str) -> str:
    return base64.b64encode(text.encode(codec)).decode()


# ---------------------------------------------------------------- charsets


@pytest.mark.parametrize(
    ("label", "codec"),
    [
        ("gb2312", "gb18030"),
        ("GBK", "gb18030"),
        ("x-gbk", "gb18030"),
        ("cp936", "gb18030"),
        ("euc-cn", "gb18030"),
        ("big5", "big5hkscs"),
        ("ks_c_5601-1987", "cp949"),
        ("x-unknown", None),
        ("base64", None),  # a Python codec, but not a text encoding
    ],
)
def test_charset_labels_map_to_the_superset_really_used(label: str, codec: str | None) -> None:
    assert codec_for(label) == codec


def test_gbk_characters_under_a_gb2312_label_decode() -> None:
    decoded = decode_text("王喆".encode("gbk"), "gb2312")
    assert decoded.text == "王喆"
    assert decoded.note is None


def test_hkscs_characters_under_a_big5_label_decode() -> None:
    assert decode_text("𨋢".encode("big5hkscs"), "big5").text == "𨋢"


def test_unknown_charset_falls_back_to_utf8_with_a_note() -> None:
    decoded = decode_text("打印机".encode(), "x-unknown")
    assert decoded.text == "打印机"
    assert decoded.note == "body charset 'x-unknown' decoded as utf-8"


def test_wrong_charset_falls_back_to_detection_with_a_note() -> None:
    body = "打印机无法开机，屏幕显示错误代码，请尽快安排工程师上门处理。".encode("gbk")
    decoded = decode_text(body, "utf-8")
    assert decoded.text == body.decode("gb18030")
    assert decoded.note is not None and "by detection" in decoded.note


def test_undecodable_bytes_become_replacement_characters_not_an_exception() -> None:
    decoded = decode_text(b"\xff\xfe\xfa", "us-ascii")
    assert decoded.text  # something to show
    assert decoded.note is not None


def test_encoded_words_split_inside_a_multibyte_character_are_joined() -> None:
    raw = "打印机".encode()
    first, second = base64.b64encode(raw[:4]).decode(), base64.b64encode(raw[4:]).decode()
    value = f"=?utf-8?B?{first}?= =?utf-8?B?{second}?="
    assert decode_header(value)[0] == "打印机"


def test_encoded_word_labelled_gb2312_with_gbk_bytes() -> None:
    assert decode_header(f"=?gb2312?B?{_b64('王喆', 'gbk')}?=")[0] == "王喆"


# ---------------------------------------------------------------- headers


def test_headers_are_decoded_and_normalised() -> None:
    raw = (
        b"Message-ID:   abc@host\r\n"
        b"In-Reply-To: <t1@support.example.com>\r\n"
        b"References: <t0@support.example.com>\r\n <t1@support.example.com>\r\n"
        b"From: =?utf-8?B?5byg5Lyf?= <ZW@Example.COM>\r\n"
        b"Reply-To: Help <Help@Example.com>\r\n"
        b"To: A <A@Example.com>, b@example.com\r\n"
        b"Cc: C@Example.com\r\n"
        b"Subject: =?utf-8?Q?=E6=89=93=E5=8D=B0=E6=9C=BA?=\r\n   broken\t\tagain\r\n"
        b"Date: Fri, 20 Nov 2026 10:30:00 +0800\r\n\r\nbody\r\n"
    )
    parsed = parse_email(raw)
    assert parsed.message_id == "<abc@host>"
    assert parsed.in_reply_to == ("<t1@support.example.com>",)
    assert parsed.references == ("<t0@support.example.com>", "<t1@support.example.com>")
    assert parsed.from_name == "张伟"
    assert parsed.from_address == "zw@example.com"
    assert parsed.reply_to == "help@example.com"
    assert parsed.to == ("a@example.com", "b@example.com")
    assert parsed.cc == ("c@example.com",)
    assert parsed.subject == "打印机 broken again"
    assert parsed.date == datetime(2026, 11, 20, 10, 30, tzinfo=CST)


def test_eight_bit_gbk_subject_is_decoded() -> None:
    raw = "Subject: 复印机报错 E-05（陈堃）\r\n\r\nHi".encode("gbk")
    assert parse_email(raw).subject == "复印机报错 E-05（陈堃）"


def test_malformed_date_is_noted_not_raised() -> None:
    parsed = parse_email(b"Date: the day after tomorrow\r\nFrom: a@b.example\r\n\r\nHi")
    assert parsed.date is None
    assert "malformed header Date" in parsed.notes


def test_date_without_zone_is_read_as_utc() -> None:
    parsed = parse_email(b"Date: Fri, 20 Nov 2026 10:30:00 -0000\r\n\r\nHi")
    assert parsed.date == datetime(2026, 11, 20, 10, 30, tzinfo=UTC)


def test_missing_headers_give_empty_values() -> None:
    parsed = parse_email(b"\r\nJust a body")
    assert (parsed.message_id, parsed.subject, parsed.from_address, parsed.date) == (
        None,
        "",
        None,
        None,
    )
    assert parsed.text == "Just a body"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe garbage \x80\x81",
        b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain",
        b"From: <<<@@@>>>\r\nTo: ,,,;;;\r\nDate: 99 Foo 99999 99:99:99 +9999\r\n\r\nx",
        b"Content-Type: text/plain; charset*0*=utf-8''%E6%89; charset*1*=%93\r\n\r\nx",
        b"Content-Type: message/rfc822\r\n\r\nnot a message",
        b"Subject: =?utf-8?B?####?= =?x?Q?=ZZ?=\r\n\r\n",
        b'Content-Type: multipart/alternative; boundary="b"\r\n\r\n--b\r\n\r\n--b--',
        b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!",
        b"Content-Type: multipart/mixed; boundary=a\r\n\r\n"
        + b"--a\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n" * 200,
    ],
)
def test_parse_email_never_raises(raw: bytes) -> None:
    parsed = parse_email(raw)
    assert isinstance(parsed.notes, tuple)


def test_the_parsing_steps_are_listed_in_order() -> None:
    assert [step.__name__ for step in STEPS] == [
        "decode_headers",
        "walk_parts",
        "convert_html",
        "strip_quotes_and_signature",
        "classify_automatic",
    ]


# ---------------------------------------------------------------- bodies


def _multipart(*parts: str, subtype: str = "mixed") -> bytes:
    body = "".join(f"--b\r\n{part}\r\n" for part in parts)
    return (
        f'MIME-Version: 1.0\r\nContent-Type: multipart/{subtype}; boundary="b"\r\n\r\n'
        f"{body}--b--\r\n"
    ).encode()


def test_plain_text_is_preferred_to_html() -> None:
    raw = _multipart(
        "Content-Type: text/plain; charset=utf-8\r\n\r\n纯文本",
        "Content-Type: text/html; charset=utf-8\r\n\r\n<p>网页</p>",
        subtype="alternative",
    )
    parsed = parse_email(raw)
    assert parsed.text == "纯文本"
    assert parsed.html == "<p>网页</p>"


def test_html_only_body_is_converted_without_invisible_parts() -> None:
    html = (
        "<html><head><title>标题</title><style>p{color:red}</style></head><body>"
        "<p>第一段</p><div style='display: none'>预览</div><p hidden>隐藏</p>"
        "<script>alert(1)</script><p>第二段</p></body></html>"
    )
    assert html_to_text(html) == "第一段\n\n第二段"


def test_text_attachment_is_not_the_body() -> None:
    raw = _multipart(
        "Content-Type: text/plain\r\n\r\nThe body",
        "Content-Type: text/plain\r\n"
        'Content-Disposition: attachment; filename="log.txt"\r\n\r\nLOG',
    )
    parsed = parse_email(raw)
    assert parsed.text == "The body"
    assert [a.filename for a in parsed.attachments] == ["log.txt"]
    assert parsed.attachments[0].content == b"LOG"


def test_forwarded_message_is_an_attachment_not_the_body() -> None:
    inner = "From: x@example.com\r\nSubject: inner\r\n\r\nInner body"
    raw = _multipart(
        "Content-Type: text/plain\r\n\r\nSee the forward.",
        f"Content-Type: message/rfc822\r\n\r\n{inner}",
    )
    parsed = parse_email(raw)
    assert parsed.text == "See the forward."
    assert [(a.filename, a.content_type) for a in parsed.attachments] == [
        ("attachment-1.eml", "message/rfc822")
    ]
    assert b"Inner body" in parsed.attachments[0].content


def test_pgp_signed_message_body_without_the_signature() -> None:
    raw = _multipart(
        "Content-Type: text/plain\r\n\r\nSigned text",
        "Content-Type: application/pgp-signature\r\n\r\n-----BEGIN PGP SIGNATURE-----",
        subtype='signed; micalg=pgp-sha256; protocol="application/pgp-signature"',
    )
    parsed = parse_email(raw)
    assert parsed.text == "Signed text"
    assert parsed.attachments == ()


def test_unknown_transfer_encoding_is_read_as_8bit_with_a_note(corpus_dir: Path) -> None:
    raw = (corpus_dir / "php-imap/tests/messages/unknown_encoding.eml").read_bytes()
    parsed = parse_email(raw)
    assert parsed.text == "MyPlain"
    assert "unknown Content-Transfer-Encoding 'foobar': read as 8bit" in parsed.notes


def test_empty_body_with_attachment(corpus_dir: Path) -> None:
    path = corpus_dir / "django-helpdesk/helpdesk/tests/test_files/blank-body-with-attachment.eml"
    parsed = parse_email(path.read_bytes())
    assert parsed.attachments
    assert parsed.visible_text == parsed.text


# ---------------------------------------------------------------- attachments


def test_attachment_names_rfc2231_and_rfc2047_and_generated() -> None:
    raw = _multipart(
        "Content-Type: text/plain\r\n\r\nHi",
        "Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
        "Content-Disposition: attachment;\r\n filename*0*=utf-8''%E6%8A%A5%E5%91%8A;\r\n"
        " filename*1=.pdf\r\n\r\n" + base64.b64encode(b"%PDF-1.4").decode(),
        f'Content-Type: image/png; name="=?gb2312?B?{_b64("照片.png", "gbk")}?="\r\n\r\nPNG',
        "Content-Type: application/octet-stream\r\n\r\nBIN",
        'Content-Type: text/plain\r\nContent-Disposition: attachment; filename="../../etc/passwd"'
        "\r\n\r\nx",
    )
    parsed = parse_email(raw)
    names = [a.filename for a in parsed.attachments]
    assert names == ["报告.pdf", "照片.png", "attachment-3.bin", "passwd"]
    pdf = parsed.attachments[0]
    assert (pdf.content, pdf.size, pdf.content_type) == (b"%PDF-1.4", 8, "application/pdf")
    assert pdf.sha256 == hashlib.sha256(b"%PDF-1.4").hexdigest()


def test_inline_image_is_marked_inline() -> None:
    raw = _multipart(
        "Content-Type: text/html\r\n\r\n<img src='cid:p1'>Hi",
        "Content-Type: image/png\r\nContent-ID: <p1>\r\n\r\nPNG",
        subtype="related",
    )
    (image,) = parse_email(raw).attachments
    assert image.inline


# ---------------------------------------------------------------- Chinese clients


def test_qq_mail_gb18030_base64() -> None:
    parsed = parse_email(_fixture("qq_mail_gb18030_base64.eml"))
    assert parsed.subject == "回复：打印机卡纸"
    assert (parsed.from_name, parsed.from_address) == ("张伟", "zw@qq.com")
    assert parsed.in_reply_to == ("<ticket-42@support.example.com>",)
    assert parsed.visible_text == "您好，机器还是卡纸，型号 LJ-2200，序列号 SN12345。"
    assert "请问机器型号是多少" in parsed.text
    assert [a.filename for a in parsed.attachments] == ["故障照片.png"]
    assert parsed.html is not None and "原始邮件" in parsed.html
    assert parsed.auto_reply is None and parsed.bounce is None


def test_foxmail_gb2312_label_with_gbk_characters_and_8bit_headers() -> None:
    parsed = parse_email(_fixture("foxmail_gb2312_8bit.eml"))
    assert parsed.subject == "复印机报错 E-05（陈堃）"
    assert parsed.from_name == "陈堃"
    assert parsed.visible_text == "王喆您好：\n复印机开机报错 E-05，麻烦安排工程师。\n\n陈堃"
    assert [a.filename for a in parsed.attachments] == ["报错截图（喆）.txt"]
    assert parsed.attachments[0].content.decode("gbk") == "错误代码 E-05"


def test_netease_163_utf8_quoted_printable() -> None:
    parsed = parse_email(_fixture("netease_163_utf8_qp.eml"))
    assert parsed.subject == "Re:回复: 打印机有黑线"
    assert parsed.from_name == "李娜"
    assert parsed.cc == ("mgr@example.com", "wq@example.com")
    assert parsed.visible_text == "你好，更换硒鼓后问题解决了，谢谢！"


def test_gmail_zh_attribution_wrapped_over_two_lines() -> None:
    parsed = parse_email(_fixture("gmail_zh_wrapped_attribution.eml"))
    assert parsed.from_address == "liuyang@gmail.com"
    assert parsed.visible_text == "您好，\n\n附件是维修报告，请查收。"


def test_outlook_zh_cn_html_only_gb2312() -> None:
    parsed = parse_email(_fixture("outlook_zh_cn_html_gb2312.eml"))
    assert parsed.subject == "答复: 扫描仪故障"
    assert parsed.visible_text == "你好：\n\n扫描仪无法连接电脑，设备序列号 SC-778（喆）。"
    for invisible in ("预览文字不应出现", "隐藏内容", "alert", "MsoNormal"):
        assert invisible not in parsed.text
    assert parsed.date == datetime(2026, 11, 20, 3, 20, tzinfo=UTC)


def test_outlook_zh_tw_big5_with_hkscs() -> None:
    parsed = parse_email(_fixture("outlook_zh_tw_big5.eml"))
    assert parsed.subject == "回覆: 印表機問題"
    assert parsed.from_name == "陳大文"
    assert parsed.visible_text == "您好：\n大廈的𨋢（升降機）旁的印表機卡紙了，請派人處理。"


def test_qq_mail_auto_reply_is_recognised() -> None:
    parsed = parse_email(_fixture("qq_mail_auto_reply.eml"))
    assert parsed.auto_reply == "subject: 自动回复: 打印机卡纸"
    assert parsed.bounce is None


def test_tencent_bounce_names_the_returned_message() -> None:
    parsed = parse_email(_fixture("tencent_bounce.eml"))
    assert parsed.auto_reply is None
    assert parsed.bounce is not None
    assert parsed.bounce.original_message_ids == ("<ticket-42-ack@support.example.com>",)
    assert parsed.bounce.failed_recipients == ("nobody@qq.com",)
    assert parsed.bounce.permanent
