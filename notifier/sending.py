"""One claimed outbox row's sending attempt, start to finish, and the outcome it has.

``Sending`` is the part of ``notifier.dispatcher.Dispatcher`` that sends a row: it
renders the template, hands the message to the email or SMS transport and turns what
the provider answered into a ``SendOutcome`` (``notifier.recording``), with the
follow-ups that must land with it. It writes nothing to the outbox itself; the
dispatcher records the outcomes.

An SMS to a number that opted out (already known, or refused at the carrier with 21610)
goes by email instead, to the address ``workflow.reach.fallback_email`` picks — the one
rule the intake follows too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from notifier.email_message import Addressing, PreparedEmail, build_email
from notifier.email_transport import EmailTransport
from notifier.errors import (
    ConfigurationError,
    InvalidRecipient,
    PermanentFailure,
    RecipientOptedOut,
    RenderError,
    SendError,
    TransientFailure,
    UnknownOutcome,
)
from notifier.recording import Claimed, SendOutcome, email_twin, flag_phone, opt_out
from notifier.render import Renderer
from notifier.sms_transport import OutgoingSms, SmsTransport
from storage.models import PhoneFlag
from storage.outbox import outbound_message_id
from storage.people import emails_of_phone, opted_out_of_sms
from storage.uow import unit_of_work
from workflow.clock import Clock
from workflow.reach import fallback_email
from workflow.settings import Settings

log = logging.getLogger(__name__)


class Sending:
    """Sends one row at a time; mixed into ``Dispatcher``, which sets the attributes."""

    sessions: sessionmaker[Session]
    settings: Settings
    clock: Clock
    renderer: Renderer
    email: EmailTransport
    sms: SmsTransport
    paused: dict[str, str]  # channel → the configuration error that stopped it
    domain: str

    def _guarded(self, row: Claimed, step: Callable[[Claimed], Any]) -> Any:
        try:
            return step(row)
        except Exception as exc:  # a bug must not stop the batch; the row is retried
            log.exception("outbox #%d: unexpected error while sending", row.id)
            return SendOutcome(row, "retry", error=f"{type(exc).__name__}: {exc}", in_doubt=True)

    def attempt(self, row: Claimed) -> SendOutcome:
        """One row, start to finish, in this thread."""
        if row.channel in self.paused:
            return SendOutcome(row, "paused", error=self.paused[row.channel])
        if row.channel == "email":
            prepared = self._guarded(row, self._prepare_email)
            return prepared if isinstance(prepared, SendOutcome) else self._send_email(*prepared)
        if row.channel == "sms":
            outcome: SendOutcome = self._guarded(row, self._attempt_sms)
            return outcome
        return SendOutcome(row, "failed", error=f"unknown channel {row.channel!r}")

    # --- email -------------------------------------------------------------------------
    def _prepare_email(self, row: Claimed) -> SendOutcome | tuple[Claimed, PreparedEmail, str, str]:
        try:
            rendered = self.renderer.email(row.template, row.language, row.context)
        except RenderError as exc:
            return SendOutcome(row, "deferred", error=str(exc))
        message_id = row.message_id or outbound_message_id(row.idempotency_key, self.domain)
        reply_to = row.context.get("reply_to")
        try:
            prepared = build_email(
                rendered,
                Addressing(
                    sender=self.settings.email.from_,
                    to=row.to_address,
                    message_id=message_id,
                    date=self.clock(),
                    language=row.language,
                    reply_to=reply_to if isinstance(reply_to, str) and reply_to else None,
                    in_reply_to=row.reply_to_message_id,
                    references=[str(r) for r in row.references],
                    auto_submitted=row.auto_submitted,
                ),
            )
        except PermanentFailure as exc:
            return SendOutcome(row, "failed", error=str(exc), subject=rendered.subject)
        return row, prepared, rendered.subject, rendered.text

    def _send_email(
        self, row: Claimed, prepared: PreparedEmail, subject: str, text: str
    ) -> SendOutcome:
        try:
            provider_id = self.email.send(
                prepared.data, prepared.envelope_from, [prepared.envelope_to], prepared.message_id
            )
        except PermanentFailure as exc:
            return SendOutcome(row, "failed", error=str(exc), subject=subject)
        except (TransientFailure, UnknownOutcome) as exc:
            # An email of unknown fate is simply sent again: same Message-ID, so the
            # recipient's client shows one message.
            limit = exc.max_attempts if isinstance(exc, TransientFailure) else None
            return SendOutcome(row, "retry", error=str(exc), max_attempts=limit)
        except Exception as exc:
            log.exception("outbox #%d: unexpected error while sending", row.id)
            return SendOutcome(row, "retry", error=f"{type(exc).__name__}: {exc}")
        return SendOutcome(row, "sent", provider_id=provider_id, subject=subject, body=text)

    # --- SMS ---------------------------------------------------------------------------
    def _attempt_sms(self, row: Claimed) -> SendOutcome:
        blocked = self._sms_blocked(row)
        if blocked is not None:
            return blocked
        try:
            body = self.renderer.sms(row.template, row.language, row.context)
        except RenderError as exc:
            return SendOutcome(row, "deferred", error=str(exc))
        sms = OutgoingSms(row.id, row.to_address, body, self._validity(row))
        if row.in_doubt:
            try:
                found = self.sms.find_sent(sms, since=row.created_at)
            except SendError as exc:
                return SendOutcome(row, "retry", error=str(exc), body=body, in_doubt=True)
            if found:
                log.info("outbox #%d: an earlier attempt did send it (%s)", row.id, found)
                return SendOutcome(row, "sent", provider_id=found, body=body, reconciled=True)
        try:
            provider_id = self.sms.send(sms)
        except InvalidRecipient as exc:
            outcome = SendOutcome(row, "failed", error=str(exc), body=body)
            outcome.follow_ups.append(flag_phone(row.to_address, exc.code, str(exc)))
            return outcome
        except RecipientOptedOut as exc:
            return self._fall_back_to_email(row, str(exc), body, opted_out_now=True)
        except ConfigurationError as exc:
            self.paused[row.channel] = str(exc)
            return SendOutcome(row, "paused", error=str(exc), body=body, code=exc.code, alert=True)
        except PermanentFailure as exc:
            return SendOutcome(row, "failed", error=str(exc), body=body)
        except TransientFailure as exc:
            return SendOutcome(
                row, "retry", error=str(exc), body=body, max_attempts=exc.max_attempts
            )
        except UnknownOutcome as exc:
            return SendOutcome(row, "retry", error=str(exc), body=body, in_doubt=True)
        return SendOutcome(row, "sent", provider_id=provider_id, body=body)

    def _validity(self, row: Claimed) -> int | None:
        """Reminders expire at Twilio if not sent in time; a stale reminder misleads."""
        explicit = row.context.get("sms_validity_seconds")
        if isinstance(explicit, int) and explicit > 0:
            return explicit
        if row.template.startswith("reminder"):
            return self.settings.sms.reminder_validity_seconds
        return None

    def _sms_blocked(self, row: Claimed) -> SendOutcome | None:
        with unit_of_work(self.sessions) as session:
            flag = session.get(PhoneFlag, row.to_address)
            flag_text = f"{flag.reason} (flagged {flag.flagged_at.isoformat()})" if flag else ""
            opted_out = opted_out_of_sms(session.connection(), row.to_address)
        if flag_text:
            return SendOutcome(row, "failed", error=f"number flagged undeliverable: {flag_text}")
        if opted_out:
            return self._fall_back_to_email(row, "recipient opted out of SMS", None, False)
        return None

    def _fall_back_to_email(
        self, row: Claimed, reason: str, body: str | None, opted_out_now: bool
    ) -> SendOutcome:
        with unit_of_work(self.sessions) as session:
            address = fallback_email(*emails_of_phone(session.connection(), row.to_address))
        outcome = SendOutcome(row, "failed", body=body)
        if opted_out_now:
            outcome.follow_ups.append(opt_out(row.to_address))
        if address is None:
            outcome.error = f"{reason}; no email address known for {row.to_address}"
            return outcome
        outcome.error = f"{reason}; sent by email to {address} instead"
        outcome.follow_ups.append(email_twin(row, address, self.domain))
        return outcome
