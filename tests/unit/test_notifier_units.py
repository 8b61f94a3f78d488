"""The notifier's pure parts: templates, SMS sizing, header validation, error classes."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from twilio.base.exceptions import TwilioRestException

from notifier.email_message import Addressing, build_email, header_text, mailbox
from notifier.errors import (
    ConfigurationError,
    InvalidRecipient,
    PermanentFailure,
    RecipientOptedOut,
    RenderError,
    TransientFailure,
    UnknownOutcome,
)
from notifier.render import Renderer
from notifier.sms_text import fit, segments, strip_urls
from notifier.sms_transport import classify
from notifier.templates import Templates

ACK = {
    "ref": "SL-000007",
    "subject": "Re: 打印机故障 [SL-000007]",
    "requester_name": "张伟",
    "problem": 'Error E23 <img src=x onerror="alert(1)">',
    "reply_to": "support+t@support.example.com",
}


def renderer(override: Path | None = None) -> Renderer:
    return Renderer(Templates(override, ["zh-CN", "en"]), max_sms_segments=3)


@pytest.mark.parametrize(
    ("language", "greeting", "line"),
    [
        ("zh-CN", "张伟，您好：", "您的技术支持请求已受理，受理编号 SL-000007。"),
        ("en", "Dear 张伟,", "Its reference is SL-000007."),
    ],
)
def test_ticket_ack_in_the_recipients_language(language: str, greeting: str, line: str) -> None:
    mail = renderer().email("ticket_ack", language, ACK)
    assert mail.subject == "Re: 打印机故障 [SL-000007]"
    assert mail.text.startswith(greeting) and line in mail.text
    assert '<img src=x onerror="alert(1)">' in mail.text  # plain text is not escaped
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in mail.html  # HTML is
    assert "<img" not in mail.html
    sms = renderer().sms("ticket_ack", language, ACK)
    assert "SL-000007" in sms and segments(sms) <= 3


def test_a_missing_context_key_is_an_error_naming_the_template() -> None:
    with pytest.raises(RenderError, match=r"ticket_ack/en/body.txt: 'problem' is undefined"):
        renderer().email("ticket_ack", "en", {k: v for k, v in ACK.items() if k != "problem"})


def test_an_unknown_template_names_what_was_looked_for() -> None:
    with pytest.raises(RenderError, match=r"no_such.*no_such/en/subject.txt"):
        renderer().email("no_such", "en", ACK)


def test_the_deployments_folder_wins_file_by_file(tmp_path: Path) -> None:
    (tmp_path / "ticket_ack" / "en").mkdir(parents=True)
    (tmp_path / "ticket_ack" / "en" / "subject.txt").write_text("[ACME] {{ ref }}")
    mail = renderer(tmp_path).email("ticket_ack", "en", ACK)
    assert mail.subject == "[ACME] SL-000007"
    assert "Its reference is SL-000007." in mail.text  # the shipped body is still used


def test_segments_of_chinese_and_latin_text() -> None:
    assert [segments("您" * n) for n in (70, 71, 134, 135)] == [1, 2, 2, 3]
    assert [segments("a" * n) for n in (160, 161, 306, 307)] == [1, 2, 2, 3]
    assert segments("{" * 80) == 1 and segments("{" * 81) == 2  # extension characters count 2


def test_bodies_over_the_limit_are_shortened_with_a_notice() -> None:
    body = fit("工程师今天到达现场。" * 40, 2, "zh-CN")
    assert segments(body) == 2 and body.endswith("…（内容过长，详见邮件）")
    english = fit("word " * 200, 1, "en")
    assert segments(english) == 1 and english.endswith("… (shortened; see email)")
    assert fit("short", 1, "en") == "short"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("详情见 https://support.example.com/t/1?a=b 。", "详情见。"),
        ("see http://x.cn/a, thanks", "see, thanks"),
        ("访问www.example.com查看", "访问查看"),
        ("go to example.com.cn/help now", "go to now"),
        ("reply to support+x@support.example.com", "reply to support+x@support.example.com"),
        ("版本 1.2.3，型号 XP-3000", "版本 1.2.3，型号 XP-3000"),
    ],
)
def test_no_sms_carries_a_url(text: str, expected: str) -> None:
    assert strip_urls(text) == expected


def test_header_values_cannot_carry_line_breaks() -> None:
    assert header_text("a\r\nBcc: b@example.com\u2028c") == "a Bcc: b@example.com c"
    with pytest.raises(PermanentFailure):
        mailbox("a@example.com\r\nBcc: b@example.com", "To")
    with pytest.raises(PermanentFailure):
        mailbox("a@example.com, b@example.com", "To")


def test_garbage_threading_ids_are_dropped() -> None:
    mail = renderer().email("ticket_ack", "en", ACK)
    prepared = build_email(
        mail,
        Addressing(
            sender="Support <support@support.example.com>",
            to="zw@huadong.example.cn",
            message_id="<sl.1@support.example.com>",
            date=datetime(2026, 11, 27, 2, tzinfo=UTC),
            language="en",
            in_reply_to="<ok@client>\r\nBcc: x@example.com",
            references=["<a@b>", "not-an-id"],
        ),
    )
    message = email.message_from_bytes(prepared.data, policy=email.policy.default)
    assert message["In-Reply-To"] is None and message["References"] == "<a@b>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message.defects == [] and all(not p.defects for p in message.walk())
    assert (prepared.envelope_from, prepared.envelope_to) == (
        "support@support.example.com", "zw@huadong.example.cn",
    )  # fmt: skip


def test_long_and_chinese_headers_are_encoded_and_folded() -> None:
    subject = "Re: " + "打印机无法开机，屏幕显示错误代码 E23，请尽快处理" * 4
    mail = renderer().email("ticket_ack", "zh-CN", {**ACK, "subject": subject})
    prepared = build_email(
        mail,
        Addressing(
            sender="技术支持部 <support@support.example.com>", to="zw@huadong.example.cn",
            message_id="<sl.2@support.example.com>", date=datetime(2026, 11, 27, tzinfo=UTC),
            language="zh-CN", references=[f"<r{i}@example.com>" for i in range(30)],
        ),
    )  # fmt: skip
    head = prepared.data.split(b"\r\n\r\n", 1)[0]
    assert head.isascii() and max(len(line) for line in head.split(b"\r\n")) <= 78
    message = email.message_from_bytes(prepared.data, policy=email.policy.default)
    assert message["Subject"] == subject
    assert str(message["From"]) == "技术支持部 <support@support.example.com>"
    assert len(message["References"].split()) == 20  # the newest twenty
    assert message.get_body(("plain",)).get_content().startswith("张伟，您好：")


def _twilio(status: int, code: int) -> TwilioRestException:
    return TwilioRestException(status, "/Messages.json", "msg", code)


@pytest.mark.parametrize(
    ("error", "family"),
    [
        (_twilio(400, 21211), InvalidRecipient),
        (_twilio(400, 21614), InvalidRecipient),
        (_twilio(400, 21610), RecipientOptedOut),
        (_twilio(429, 20429), TransientFailure),
        (_twilio(429, 429), TransientFailure),
        (_twilio(400, 30003), TransientFailure),
        (_twilio(401, 20003), ConfigurationError),
        (_twilio(400, 21606), ConfigurationError),
        (_twilio(400, 21608), ConfigurationError),
        (_twilio(500, 500), UnknownOutcome),
        (_twilio(503, 20500), UnknownOutcome),
        (_twilio(400, 21602), PermanentFailure),
        (requests.ReadTimeout("read timed out"), UnknownOutcome),
        (requests.ConnectTimeout("connect timed out"), TransientFailure),
    ],
)
def test_twilio_errors_are_classified(error: Exception, family: type) -> None:
    classified = classify(error, unreachable_attempts=3)
    assert type(classified) is family
    if isinstance(error, TwilioRestException) and error.code == 30003:
        assert isinstance(classified, TransientFailure) and classified.max_attempts == 3
