"""SMS transports behind one small protocol: Twilio, and a log file for ``make run``.

A domestic Chinese provider can be added as another class with the same three methods;
the dispatcher and the workflow do not change.

Twilio errors are classified (https://www.twilio.com/docs/api/errors):

=====================================  =============================================
21211 invalid 'To', 21614 not mobile   permanent; the number is flagged
21610 recipient unsubscribed (STOP)    permanent until they text START; email instead
20429 / HTTP 429 too many requests     transient, retried with backoff
30003 unreachable handset              transient, retried only a few times
20003, 20404, 21212, 21603, 21606,     our configuration: alert and stop the channel
21608, 21609, 21659, 217xx
HTTP 5xx, read timeout                 unknown: the request left; reconcile first
connection refused / connect timeout   transient: the request never left
other 4xx                              permanent
=====================================  =============================================
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode

import requests
from twilio.base.exceptions import TwilioException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from notifier.errors import (
    ConfigurationError,
    InvalidRecipient,
    PermanentFailure,
    RecipientOptedOut,
    SendError,
    TransientFailure,
    UnknownOutcome,
)
from workflow.clock import Clock

log = logging.getLogger(__name__)

INVALID_RECIPIENT_CODES = frozenset({21211, 21614})
OPTED_OUT_CODE = 21610
RATE_LIMIT_CODE = 20429
UNREACHABLE_CODE = 30003
CONFIGURATION_CODES = frozenset(
    {20003, 20005, 20404, 21212, 21603, 21606, 21608, 21609, 21659}
    | {21701, 21702, 21703, 21704, 21705, 21707, 21709, 21710}
)
# How far back a message we may have sent is looked for, beyond the row's creation.
RECONCILE_SLACK = timedelta(minutes=10)


@dataclass(frozen=True)
class OutgoingSms:
    outbox_id: int
    to: str
    body: str
    validity_seconds: int | None = None


class SmsTransport(Protocol):
    name: str

    def send(self, sms: OutgoingSms) -> str:
        """Hands the message to the provider; returns its id or raises a SendError."""
        ...

    def find_sent(self, sms: OutgoingSms, since: datetime) -> str | None:
        """The provider's id of this very message if an earlier attempt did send it."""
        ...

    def close(self) -> None: ...


class LogSms:
    """Appends each SMS as one line to a file: the default of ``make run`` and demos."""

    name = "log"

    def __init__(self, path: str | Path, clock: Clock) -> None:
        self.path = Path(path)
        self.clock = clock

    def send(self, sms: OutgoingSms) -> str:
        line = "\t".join(
            [self.clock().isoformat(), f"#{sms.outbox_id}", sms.to, sms.body.replace("\n", " ")]
        )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as log_file:
                log_file.write(line + "\n")
        except OSError as exc:
            raise TransientFailure(f"SMS log {self.path}: {exc}") from exc
        return f"log:{sms.outbox_id}"

    def find_sent(self, sms: OutgoingSms, since: datetime) -> str | None:
        try:
            with self.path.open(encoding="utf-8") as log_file:
                marker = f"\t#{sms.outbox_id}\t"
                if any(marker in line for line in log_file):
                    return f"log:{sms.outbox_id}"
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise TransientFailure(f"SMS log {self.path}: {exc}") from exc
        return None

    def close(self) -> None:
        pass


class TwilioSms:
    """The official ``twilio`` client with a timeout, a status callback and a sender."""

    name = "twilio"

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        from_: str = "",
        messaging_service_sid: str = "",
        api_url: str = "https://api.twilio.com",
        timeout: float = 10.0,
        status_callback_url: str = "",
        unreachable_attempts: int = 3,
    ) -> None:
        if not (from_ or messaging_service_sid):
            raise ValueError("Twilio needs sms.twilio_from or sms.twilio_messaging_service_sid")
        # The client waits forever by default; a sender stuck on one request stops the
        # whole outbox, so the HTTP client always gets a timeout.
        http_client = TwilioHttpClient(timeout=timeout)
        self.client = Client(account_sid, auth_token, http_client=http_client)
        self.client.api.base_url = api_url.rstrip("/")
        self.from_ = from_
        self.messaging_service_sid = messaging_service_sid
        self.status_callback_url = status_callback_url
        self.unreachable_attempts = unreachable_attempts

    def _callback(self, outbox_id: int) -> str | None:
        # The outbox id in the callback URL lets a status report find its row even when
        # the worker died before it could store Twilio's MessageSid.
        if not self.status_callback_url:
            return None
        joiner = "&" if "?" in self.status_callback_url else "?"
        return f"{self.status_callback_url}{joiner}{urlencode({'outbox': outbox_id})}"

    def send(self, sms: OutgoingSms) -> str:
        params: dict[str, Any] = {"to": sms.to, "body": sms.body}
        if self.messaging_service_sid:
            params["messaging_service_sid"] = self.messaging_service_sid
        if self.from_:
            params["from_"] = self.from_
        callback = self._callback(sms.outbox_id)
        if callback:
            params["status_callback"] = callback
        if sms.validity_seconds:
            params["validity_period"] = sms.validity_seconds
        try:
            message = self.client.messages.create(**params)
        except (TwilioException, requests.RequestException) as exc:
            raise classify(exc, self.unreachable_attempts) from exc
        return str(message.sid)

    def find_sent(self, sms: OutgoingSms, since: datetime) -> str | None:
        """Looks through the recipient's latest messages for this body, sent since ``since``.

        Not filtered by DateSent: a message Twilio accepted but has not sent yet has none.
        """
        try:
            messages = self.client.messages.list(to=sms.to, limit=50, page_size=50)
        except (TwilioException, requests.RequestException) as exc:
            error = classify(exc, self.unreachable_attempts)
            raise TransientFailure(f"reconciling with Twilio failed: {error}") from exc
        earliest = since - RECONCILE_SLACK
        for message in messages:
            created = message.date_created
            if message.body == sms.body and (created is None or created >= earliest):
                return str(message.sid)
        return None

    def close(self) -> None:
        session = getattr(self.client.http_client, "session", None)
        if session is not None:
            session.close()


def classify(exc: Exception, unreachable_attempts: int = 3) -> SendError:
    """Which family a Twilio client error belongs to (the table in the module docstring)."""
    if isinstance(exc, requests.ConnectTimeout):
        return TransientFailure(f"Twilio did not accept the connection: {exc}")
    if isinstance(exc, requests.ConnectionError) and _never_connected(exc):
        return TransientFailure(f"Twilio could not be reached: {exc}")
    if isinstance(exc, requests.RequestException):
        return UnknownOutcome(f"no answer from Twilio after the request left: {exc!r}")
    status = getattr(exc, "status", None)
    code = getattr(exc, "code", None)
    if not isinstance(status, int):
        return UnknownOutcome(f"Twilio client error: {exc!r}")
    text = f"Twilio {code or status}: {getattr(exc, 'msg', '') or getattr(exc, 'title', '')}"
    if code in INVALID_RECIPIENT_CODES:
        return InvalidRecipient(text, int(code))
    if code == OPTED_OUT_CODE:
        return RecipientOptedOut(text)
    if code == RATE_LIMIT_CODE or status == 429:
        return TransientFailure(text)
    if code == UNREACHABLE_CODE:
        return TransientFailure(text, max_attempts=unreachable_attempts)
    if code in CONFIGURATION_CODES or status == 401:
        return ConfigurationError(text, code)
    if status >= 500:
        return UnknownOutcome(text)
    return PermanentFailure(text)


def _never_connected(exc: requests.ConnectionError) -> bool:
    """True when the TCP connection itself failed, so no request can have been sent."""
    reason: Any = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)  # urllib3's MaxRetryError wraps the cause
    name = type(reason).__name__
    return name in ("NewConnectionError", "NameResolutionError", "ConnectTimeoutError")
