"""What can go wrong when sending, in two families (STYLE.md habit 9) plus one outcome.

- ``PermanentFailure``: sending again will not help (a refused address, an invalid
  number). The row is ``failed`` at once.
- ``TransientFailure``: try again later (a 4xx reply, a connection refused, HTTP 429).
  The row is retried with backoff until it is ``dead``.
- ``UnknownOutcome``: the request left and no answer came back (a read timeout, a 5xx
  after the request was sent). The message may have gone out; an SMS is reconciled
  against the provider before any resend (an email is resent with the same Message-ID).

``ConfigurationError`` is a transient failure no retry can fix: the operators are
alerted and the channel stops until the service is restarted.
"""

from __future__ import annotations


class SendError(Exception):
    """Base of every sending failure; ``str()`` is what lands in ``outbox.last_error``."""


class PermanentFailure(SendError):
    """Sending this message again will not succeed."""


class InvalidRecipient(PermanentFailure):
    """The provider says the recipient cannot receive this channel at all (flag it)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class RecipientOptedOut(PermanentFailure):
    """The person unsubscribed (Twilio 21610, texted STOP): fall back to email."""


class TransientFailure(SendError):
    """Worth trying again after a while.

    ``max_attempts`` lowers the dispatcher's attempt limit for this kind of failure
    (Twilio 30003, an unreachable handset, is retried only a little).
    """

    def __init__(self, message: str, *, max_attempts: int | None = None) -> None:
        super().__init__(message)
        self.max_attempts = max_attempts


class ConfigurationError(TransientFailure):
    """Our account or sender is misconfigured: alert, stop the channel, keep the row."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class UnknownOutcome(SendError):
    """The request may have reached the provider; reconcile before sending again."""


class RenderError(Exception):
    """A template failed to render; the message names the template. The row stays queued."""
