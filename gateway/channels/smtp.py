"""The SMTP gateway: accept mail for our domains, store it, then say 250.

The handler converts, stores and acknowledges, nothing else (aiosmtpd
``docs/handlers.rst``). The raw bytes are committed before ``250``; any failure of ours
answers ``451 4.3.0`` so the sending MTA keeps the message and retries (RFC 5321
§4.2.5): never a 5xx for our own trouble, never an exception text on the wire.
Blocking database work runs in the group-commit writer's thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway.channels.store import Store, email_row
from workflow.clock import Clock

log = logging.getLogger(__name__)

TEMPORARY_FAILURE = "451 4.3.0 Temporary local problem, please try again later"


def smtp_server_options(max_message_bytes: int) -> dict[str, Any]:
    """Keyword arguments of ``aiosmtpd.smtp.SMTP`` for our settings (serve and tests)."""
    return {
        # Advertised as SIZE (RFC 1870) and enforced with 552 by aiosmtpd.
        "data_size_limit": max_message_bytes,
        "enable_SMTPUTF8": True,
        "decode_data": False,
        "ident": "Supportline ESMTP",
    }


class SmtpHandler:
    """aiosmtpd handler: only our domains, store before 250, 451 on our failures."""

    def __init__(self, domains: Iterable[str], clock: Clock, store: Store) -> None:
        self.domains = {d.lower() for d in domains}
        self.clock = clock
        self.store = store

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        domain = address.rpartition("@")[2].lower().rstrip(">")
        if domain not in self.domains:
            # Never an open relay: mail for anyone else is refused at RCPT time.
            log.info("refused relay to %s from %s (%s)", address, envelope.mail_from, session.peer)
            return "550 5.7.1 Relaying denied: we accept mail for our own domains only"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):  # only with decode_data=True, which we do not use
            raw = raw.encode("utf-8", "surrogateescape")
        row = email_row(
            raw,
            source="smtp",
            received_at=self.clock(),
            envelope_from=envelope.mail_from,
            envelope_to=list(envelope.rcpt_tos),
        )
        try:
            stored = await self.store(row)
        except Exception:
            log.exception("could not store a message from %s", envelope.mail_from)
            return TEMPORARY_FAILURE
        return f"250 2.0.0 OK: queued as inbound {stored.inbound_id}"

    async def handle_exception(self, error: Exception) -> str:
        # Without this, aiosmtpd answers "500 Error: (ExcType) text", a permanent failure
        # that would make the sender drop mail we merely failed to take.
        log.exception("SMTP session failed", exc_info=error)
        return TEMPORARY_FAILURE


async def start_smtp_server(
    handler: SmtpHandler, host: str, port: int, max_message_bytes: int
) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    options = smtp_server_options(max_message_bytes)
    # aiosmtpd logs every command of every session at INFO: five lines per message,
    # about 6% of the listener's time under load. What was accepted is in the inbound
    # table (`supportline inbound list`); refusals and failures are logged here.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    return await loop.create_server(lambda: SMTP(handler, loop=loop, **options), host, port)
