"""Building test emails the way mail clients send them."""

from __future__ import annotations

import email.policy
from email.message import EmailMessage
from email.utils import make_msgid

SMTP_POLICY = email.policy.SMTP


def customer_mail(
    body: str = "The XP-3000 shows error E23 and does not print.\nPhone: 13800138000",
    *,
    subject: str = "Printer error",
    sender: str = "Zhang Wei <zw@huadong.example.cn>",
    to: str = "support@support.example.com",
    message_id: str | None = None,
    in_reply_to: str | None = None,
    charset: str = "utf-8",
    headers: dict[str, str] | None = None,
) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = "Fri, 27 Nov 2026 10:00:00 +0800"
    message["Message-ID"] = message_id or make_msgid(domain="huadong.example.cn")
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
        message["References"] = in_reply_to
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(body, charset=charset)
    return message.as_bytes(policy=SMTP_POLICY)
