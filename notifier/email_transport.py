"""Email transports: an SMTP relay (STARTTLS, AUTH, one reused connection) and a maildir.

Both take the finished message bytes and the envelope and return a provider id, or
raise one of ``notifier.errors``: a 5xx reply is permanent, a 4xx reply or a
connection problem before DATA is transient, and a connection lost during or after
DATA is an unknown outcome (the dispatcher resends with the same Message-ID, which the
recipient's client recognises as the same message).
"""

from __future__ import annotations

import contextlib
import logging
import mailbox
import re
import smtplib
import ssl
import time
from pathlib import Path
from typing import Protocol

from notifier.errors import PermanentFailure, SendError, TransientFailure, UnknownOutcome

log = logging.getLogger(__name__)

_QUEUED_AS = re.compile(rb"queued as ([\w.@<>-]+)", re.IGNORECASE)


class EmailTransport(Protocol):
    name: str

    def send(self, data: bytes, sender: str, recipients: list[str], message_id: str) -> str:
        """Delivers ``data``; returns the provider's id for it."""
        ...

    def close(self) -> None: ...


class MaildirTransport:
    """Writes each message into a maildir (``new/``): the default for ``make run`` and demos.

    The stdlib ``mailbox.Maildir`` writes to ``tmp/`` and renames into ``new/``, so a
    reader never sees half a message.
    """

    name = "maildir"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._box: mailbox.Maildir | None = None

    def send(self, data: bytes, sender: str, recipients: list[str], message_id: str) -> str:
        try:
            if self._box is None:
                # Maildir(create=True) skips tmp/new/cur when the folder already exists.
                for sub in ("tmp", "new", "cur"):
                    (self.path / sub).mkdir(parents=True, exist_ok=True)
                self._box = mailbox.Maildir(self.path, create=False)
            key = self._box.add(data)
        except OSError as exc:
            raise TransientFailure(f"maildir {self.path}: {exc}") from exc
        return f"maildir:{key}"

    def close(self) -> None:
        self._box = None


class SmtpRelay:
    """Sends through an SMTP relay over one connection, kept open between messages.

    The connection is opened on the first message (nothing connects at start-up), upgraded
    with STARTTLS and authenticated when configured, and reopened once if the relay
    dropped it while idle — only before DATA, where nothing can have been delivered.
    """

    name = "smtp"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        username: str = "",
        password: str = "",
        starttls: bool = False,
        implicit_tls: bool = False,
        timeout: float = 30.0,
        tls_context: ssl.SSLContext | None = None,
        max_idle_seconds: float = 60.0,
    ) -> None:
        self.host, self.port = host, port
        self.username, self.password = username, password
        self.starttls, self.implicit_tls = starttls, implicit_tls
        self.timeout = timeout
        self.tls_context = tls_context
        self.max_idle_seconds = max_idle_seconds
        self._connection: smtplib.SMTP | None = None
        self._last_used = 0.0
        self.connections_opened = 0

    def _connect(self) -> smtplib.SMTP:
        context = self.tls_context or ssl.create_default_context()
        try:
            connection: smtplib.SMTP
            if self.implicit_tls:
                connection = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=context
                )
            else:
                connection = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            connection.ehlo()
            if self.starttls:
                connection.starttls(context=context)
                connection.ehlo()
            if self.username:
                connection.login(self.username, self.password)
        except smtplib.SMTPAuthenticationError as exc:
            # Retried (and logged loudly): the relay may be misconfigured only for a while.
            log.error("SMTP relay %s:%d refused our login: %s", self.host, self.port, exc)
            refused = f"SMTP login refused: {exc.smtp_code} {_text(exc.smtp_error)}"
            raise TransientFailure(refused) from exc
        except smtplib.SMTPResponseException as exc:
            raise TransientFailure(
                f"SMTP relay {self.host}:{self.port}: {exc.smtp_code} {_text(exc.smtp_error)}"
            ) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise TransientFailure(f"SMTP relay {self.host}:{self.port}: {exc!r}") from exc
        self.connections_opened += 1
        return connection

    def send(self, data: bytes, sender: str, recipients: list[str], message_id: str) -> str:
        now = time.monotonic()
        if self._connection is not None and now - self._last_used > self.max_idle_seconds:
            self.close()  # relays drop idle sessions; do not wait for a timeout to find out
        reused = self._connection is not None
        if self._connection is None:
            self._connection = self._connect()
        try:
            reply = self._transaction(self._connection, data, sender, recipients)
        except _StaleConnection as stale:
            self._drop()
            if not reused:
                raise TransientFailure(f"SMTP relay closed the connection: {stale}") from None
            self._connection = self._connect()  # nothing was sent on the stale one
            try:
                reply = self._transaction(self._connection, data, sender, recipients)
            except _StaleConnection as again:
                self._drop()
                raise TransientFailure(f"SMTP relay closed the connection: {again}") from None
        except SendError:
            raise  # a refusal leaves the session usable (after RSET)
        except BaseException:
            self._drop()
            raise
        self._last_used = time.monotonic()
        match = _QUEUED_AS.search(reply)
        return f"smtp:{match.group(1).decode('ascii', 'replace')}" if match else message_id

    def _transaction(
        self, connection: smtplib.SMTP, data: bytes, sender: str, recipients: list[str]
    ) -> bytes:
        try:
            code, reply = connection.mail(sender)
            if code != 250:
                connection.rset()
                raise _reply_error("MAIL FROM", code, reply)
            refused = []
            for recipient in recipients:
                code, reply = connection.rcpt(recipient)
                if code not in (250, 251):
                    refused.append((code, reply))
            if len(refused) == len(recipients):
                connection.rset()
                code, reply = refused[0]
                raise _reply_error("RCPT TO", code, reply)
        except (smtplib.SMTPServerDisconnected, ConnectionError, TimeoutError) as exc:
            raise _StaleConnection(repr(exc)) from exc
        try:
            code, reply = connection.data(data)
        except smtplib.SMTPResponseException as exc:  # DATA itself refused: nothing sent
            try:
                connection.rset()
            except (OSError, smtplib.SMTPException):
                self._drop()
            raise _reply_error("DATA", exc.smtp_code, exc.smtp_error) from None
        except (OSError, smtplib.SMTPException) as exc:
            # The message may be complete on the relay's side: we cannot tell.
            self._drop()
            raise UnknownOutcome(f"SMTP connection lost during DATA: {exc!r}") from exc
        if code != 250:
            raise _reply_error("end of DATA", code, reply)
        return reply

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(OSError):
                connection.close()

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.quit()
            except (OSError, smtplib.SMTPException):
                connection.close()


class _StaleConnection(Exception):
    """The connection failed before DATA: safe to reconnect and try again."""


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _reply_error(stage: str, code: int, reply: bytes | str) -> Exception:
    message = f"{stage}: {code} {_text(reply)}"
    if 500 <= code < 600:
        return PermanentFailure(message)
    return TransientFailure(message)
