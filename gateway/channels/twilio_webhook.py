"""Twilio's webhooks: the signature check they share, and the inbound SMS endpoint.

Twilio signs the URL it called plus every POST parameter with the account's auth token
(``X-Twilio-Signature``). Behind a proxy the URL the app sees is not the one Twilio
called, so the check uses the configured ``http.public_url`` + the path + the raw query.
During a token rotation the previous token is accepted too.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import parse_qsl, urlsplit

from starlette.requests import Request
from starlette.responses import Response
from twilio.request_validator import RequestValidator

from gateway.channels.store import Store, sms_row
from workflow.clock import Clock
from workflow.settings import SmsSettings

log = logging.getLogger(__name__)

# Replies go through the outbox (REST API), so the webhook answers with no message.
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


@functools.lru_cache(maxsize=64)
def signed_url(public_url: str, path: str, query: str) -> str:
    """The URL Twilio signed: our public address, this request's path and raw query.

    >>> signed_url("https://support.example.com/", "/twilio/sms", "a=1")
    'https://support.example.com/twilio/sms?a=1'
    """
    base = urlsplit(public_url)
    full_path = base.path.rstrip("/") + path
    return base._replace(path=full_path, query=query, fragment="").geturl()


class SignedParams(dict[str, list[str]]):
    """POST parameters with every value of a repeated name, as Twilio signs them.

    ``RequestValidator`` reads repeated values through ``getall`` (the MultiDict
    protocol); a plain dict would keep one value and fail the check.
    """

    def getall(self, name: str) -> list[str]:
        return self[name]


def signature_valid(
    tokens: Sequence[str], url: str, params: SignedParams, signature: str | None
) -> bool:
    """Whether ``signature`` was made with one of ``tokens``; no token or no header: no."""
    if not signature:
        return False
    return any(_validator(token).validate(url, params, signature) for token in tokens)


@functools.lru_cache(maxsize=8)
def _validator(token: str) -> RequestValidator:
    return RequestValidator(token)


def auth_tokens(sms: SmsSettings) -> tuple[str, ...]:
    """The tokens a webhook may be signed with: the current one, and the previous one
    during a rotation."""
    return tuple(t for t in (sms.twilio_auth_token, sms.twilio_previous_auth_token) if t)


async def verified_form(
    request: Request, tokens: Sequence[str], public_url: str, called_url: str | None = None
) -> dict[str, str] | None:
    """The posted form if Twilio signed it, else None (and nothing is stored).

    ``called_url`` is the address Twilio was given, without the query; by default our
    ``http.public_url`` with this request's path.
    """
    # Twilio posts application/x-www-form-urlencoded; parsed with the stdlib (Starlette's
    # request.form() needs python-multipart, a dependency for this alone).
    body = (await request.body()).decode("utf-8", "replace")
    params = SignedParams()
    for name, value in parse_qsl(body, keep_blank_values=True):
        params.setdefault(name, []).append(value)
    query = request.scope["query_string"].decode("utf-8", "replace")
    if called_url is None:
        url = signed_url(public_url, request.scope["path"], query)
    else:
        url = urlsplit(called_url)._replace(query=query).geturl()
    signature = request.headers.get("X-Twilio-Signature")
    if signature_valid(tokens, url, params, signature):
        return {name: values[-1] for name, values in params.items()}
    log.warning("Twilio request to %s with a missing or bad signature refused", request.url.path)
    return None


def sms_endpoint(
    tokens: Sequence[str], public_url: str, clock: Clock, store: Store
) -> Callable[[Request], Awaitable[Response]]:
    """``POST /twilio/sms``: verify, commit the raw request, answer; processing follows.

    A repeated MessageSid (Twilio retrying, or two deliveries racing) finds the row the
    first one stored: the same empty answer, and no second effect.
    """

    async def receive_sms(request: Request) -> Response:
        form = await verified_form(request, tokens, public_url)
        if form is None:
            return Response("invalid signature", status_code=403)
        if not form.get("MessageSid") or not form.get("From"):
            return Response("MessageSid and From are required", status_code=400)
        # The body as Twilio posted it (read once already: Starlette keeps it).
        raw = await request.body()
        row = sms_row(form, source="twilio", received_at=clock(), raw=raw)
        try:
            await store(row)
        except Exception:
            # Not stored: a 5xx makes Twilio use the fallback URL or report the failure.
            log.exception("could not store SMS %s", form.get("MessageSid"))
            return Response("temporarily unavailable", status_code=503)
        return Response(EMPTY_TWIML, media_type="application/xml")

    return receive_sms
