"""Auto-replies (RFC 3834) and bounces (RFC 3464): we must never answer a machine."""

from __future__ import annotations

import pytest

from parsers.autoreply import MessageFacts, auto_reply_reason, bounce_reason, classify
from parsers.mail import parse_email


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ([("Auto-Submitted", "auto-replied")], "Auto-Submitted: auto-replied"),
        ([("Auto-Submitted", "auto-generated; owner=x")], "Auto-Submitted: auto-generated"),
        ([("X-Autoreply", "yes")], "X-Autoreply"),
        ([("X-Autorespond", "Vacation")], "X-Autorespond"),
        ([("X-MS-Exchange-Inbox-Rules-Loop", "a@b.example")], "X-MS-Exchange-Inbox-Rules-Loop"),
        (
            [("X-MS-Exchange-Generated-Message-Source", "Mailbox Rules Agent")],
            "X-MS-Exchange-Generated-Message-Source: Mailbox Rules Agent",
        ),
        ([("Precedence", "bulk")], "Precedence: bulk"),
        ([("Precedence", "auto_reply")], "Precedence: auto_reply"),
        ([("List-Id", "<support.lists.example.com>")], "List-Id"),
        ([("List-Unsubscribe", "<mailto:u@example.com>")], "List-Unsubscribe"),
    ],
)
def test_auto_reply_headers(headers: list[tuple[str, str]], reason: str) -> None:
    assert auto_reply_reason(MessageFacts(headers=headers)) == reason


@pytest.mark.parametrize(
    "headers",
    [
        [("Auto-Submitted", "no")],
        # A request not to send us auto-replies; people's Outlook sends it on every mail.
        [("X-Auto-Response-Suppress", "All")],
        [("X-Auto-Response-Suppress", "OOF, AutoReply")],
        [("Precedence", "first-class")],
    ],
)
def test_headers_that_are_not_auto_reply_markers(headers: list[tuple[str, str]]) -> None:
    assert auto_reply_reason(MessageFacts(headers=headers, subject="打印机故障")) is None


@pytest.mark.parametrize(
    "subject",
    [
        "Auto: 打印机卡纸",
        "Automatic reply: Printer",
        "Out of Office: Printer",
        "自动回复: 打印机卡纸",
        "自動回覆：印表機",
        "Re: 自动回复：打印机",
        "回复：自动回复: 打印机",
    ],
)
def test_auto_reply_subjects(subject: str) -> None:
    assert auto_reply_reason(MessageFacts(subject=subject)) == f"subject: {subject}"


@pytest.mark.parametrize(
    "subject", ["打印机自动关机", "Re: automatic feeder jams", "Office printer out of paper"]
)
def test_customer_subjects_are_not_auto_replies(subject: str) -> None:
    assert auto_reply_reason(MessageFacts(subject=subject)) is None


@pytest.mark.parametrize(
    ("facts", "reason"),
    [
        (
            MessageFacts(report_type="delivery-status"),
            "multipart/report; report-type=delivery-status",
        ),
        (MessageFacts(headers=[("X-Failed-Recipients", "a@b.example")]), "X-Failed-Recipients"),
        (MessageFacts(from_address="mailer-daemon@mx.example"), "sender mailer-daemon@mx.example"),
        (MessageFacts(from_name="Mail Delivery Subsystem"), "sender Mail Delivery Subsystem"),
        (
            MessageFacts(subject="Undelivered Mail Returned to Sender"),
            "subject: Undelivered Mail Returned to Sender",
        ),
        (
            MessageFacts(subject="Delivery Status Notification (Failure)"),
            "subject: Delivery Status Notification (Failure)",
        ),
        (MessageFacts(subject="退信"), "subject: 退信"),
        (MessageFacts(subject="系统退信"), "subject: 系统退信"),
        (
            MessageFacts(headers=[("Return-Path", "<>")], returned_headers="Message-ID: <a@b>"),
            "null Return-Path with a returned message",
        ),
    ],
)
def test_bounce_signals(facts: MessageFacts, reason: str) -> None:
    assert bounce_reason(facts) == reason


def test_null_return_path_alone_is_not_a_bounce() -> None:
    """RFC 3834 §3.3: auto-replies are sent with a null return path too."""
    facts = MessageFacts(headers=[("Return-Path", "<>")], subject="Automatic reply: x")
    assert classify(facts) == ("subject: Automatic reply: x", None)


def test_a_bounce_is_not_also_an_auto_reply() -> None:
    facts = MessageFacts(
        headers=[("Auto-Submitted", "auto-replied"), ("X-Failed-Recipients", "a@b.example")],
        subject="Mail delivery failed",
    )
    auto_reply, bounce = classify(facts)
    assert auto_reply is None
    assert bounce is not None and bounce.failed_recipients == ("a@b.example",)


def test_postmaster_auto_reply_is_an_auto_reply() -> None:
    facts = MessageFacts(
        headers=[("Auto-Submitted", "auto-replied")],
        from_address="postmaster@example.de",
        subject="email bounce notification",
    )
    assert classify(facts) == ("Auto-Submitted: auto-replied", None)


def test_delivery_status_gives_recipients_and_permanence() -> None:
    status = (
        "Reporting-MTA: dns; mx.example\n\n"
        "Final-Recipient: rfc822; Nobody@Example.com\nAction: failed\nStatus: 5.1.1\n"
    )
    _, bounce = classify(
        MessageFacts(
            report_type="delivery-status",
            delivery_status=status,
            returned_headers="Message-ID: <ack-1@support.example.com>\nTo: nobody@example.com",
            own_message_id="<dsn@mx.example>",
        )
    )
    assert bounce is not None
    assert bounce.failed_recipients == ("nobody@example.com",)
    assert bounce.original_message_ids == ("<ack-1@support.example.com>",)
    assert bounce.permanent


def test_delayed_delivery_is_not_permanent() -> None:
    status = "Final-Recipient: rfc822; a@b.example\nAction: delayed\nStatus: 4.4.7\n"
    _, bounce = classify(MessageFacts(report_type="delivery-status", delivery_status=status))
    assert bounce is not None and not bounce.permanent


def test_original_message_id_from_the_body_as_a_fallback() -> None:
    body = "Your message could not be delivered.\n\nMessage-ID: <ack-9@support.example.com>\n"
    _, bounce = classify(MessageFacts(subject="Undeliverable: ticket", body=body))
    assert bounce is not None
    assert bounce.original_message_ids == ("<ack-9@support.example.com>",)


def test_feedback_report_is_an_auto_reply_not_a_bounce() -> None:
    assert classify(MessageFacts(report_type="feedback-report")) == ("feedback report", None)


def test_full_dsn_message() -> None:
    raw = (
        b"From: MAILER-DAEMON@mx.example.com (Mail Delivery System)\r\n"
        b"To: support@example.com\r\n"
        b"Subject: Undelivered Mail Returned to Sender\r\n"
        b"Message-ID: <dsn-1@mx.example.com>\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you...\r\n"
        b"--b\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx.example.com\r\n\r\n"
        b"Final-Recipient: rfc822; gone@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        b"--b\r\nContent-Type: message/rfc822\r\n\r\n"
        b"From: support@example.com\r\nTo: gone@example.net\r\n"
        b"Message-ID: <ack-7@support.example.com>\r\nSubject: ticket\r\n\r\nHello\r\n"
        b"--b--\r\n"
    )
    parsed = parse_email(raw)
    assert parsed.auto_reply is None
    assert parsed.bounce is not None
    assert parsed.bounce.reason == "multipart/report; report-type=delivery-status"
    assert parsed.bounce.original_message_ids == ("<ack-7@support.example.com>",)
    assert parsed.bounce.failed_recipients == ("gone@example.net",)
    assert parsed.bounce.permanent
