"""POST /twilio/sms as Twilio calls it: signed with the real validator's algorithm."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlencode

import httpx
import pytest
import uvicorn
from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

from gateway.bootstrap import Services
from gateway.channels.http import build_http_app
from gateway.channels.twilio_webhook import EMPTY_TWIML, SignedParams, signature_valid
from gateway.intake.runner import process_pending
from gateway.intake.service import build_intake
from storage.models import InboundMessage, Message, Ticket
from storage.uow import unit_of_work
from tests.conftest import free_port, make_services

TOKEN, OLD_TOKEN = "current-auth-token", "previous-auth-token"
PUBLIC = "https://support.example.com/hooks"  # what Twilio calls, through a proxy
CUSTOMER = "+8613911112222"


def test_twilio_python_test_vector() -> None:
    """The vector of twilio-python's tests/unit/test_request_validator.py."""
    uri = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = SignedParams(
        CallSid=["CA1234567890ABCDE"], Digits=["1234"], From=["+14158675309"],
        To=["+18005551212"], Caller=["+14158675309"],
    )  # fmt: skip
    assert signature_valid(["12345"], uri, params, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert not signature_valid(["54321"], uri, params, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    repeated = SignedParams(Sid=["CA123"], SidAccount=["AC123"], Digits=["5678", "1234"])
    assert signature_valid(["12345"], uri, repeated, "IK+Dwps556ElfBT0I3Rgjkr1wJU=")
    assert not signature_valid(["12345"], uri, params, None)


@dataclass
class Webhook:
    services: Services
    port: int

    def post(
        self,
        form: dict[str, str],
        *,
        token: str | None = TOKEN,
        signed_for: str = PUBLIC + "/twilio/sms",
        query: str = "",
    ) -> httpx.Response:
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        url = signed_for + (f"?{query}" if query else "")
        if token is not None:
            headers["X-Twilio-Signature"] = RequestValidator(token).compute_signature(url, form)
        path = "/twilio/sms" + (f"?{query}" if query else "")
        return httpx.post(
            f"http://127.0.0.1:{self.port}{path}", content=urlencode(form), headers=headers
        )

    def count(self, model) -> int:
        with unit_of_work(self.services.sessions) as session:
            return session.scalar(select(func.count()).select_from(model)) or 0


@pytest.fixture
def webhook(db_url: str) -> Iterator[Webhook]:
    services = make_services(
        db_url,
        http={"public_url": PUBLIC},
        sms={"twilio_auth_token": TOKEN, "twilio_previous_auth_token": OLD_TOKEN},
    )
    port = free_port()
    config = uvicorn.Config(
        build_http_app(services.settings, services.engine, services.sessions, services.clock),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield Webhook(services, port)
    finally:
        server.should_exit = True
        thread.join(10)
        services.close()


_sid = iter(range(1, 100_000))


def sms(body: str, **extra: str) -> dict[str, str]:
    return {"MessageSid": f"SM{next(_sid):032x}", "From": CUSTOMER, "To": "+8610690000",
            "Body": body, "NumMedia": "0", **extra}  # fmt: skip


def test_signed_sms_is_stored_answered_and_becomes_a_ticket(webhook: Webhook) -> None:
    response = webhook.post(sms("打印机不开机"))
    assert response.status_code == 200
    assert response.text == EMPTY_TWIML
    assert response.headers["content-type"].startswith("application/xml")
    assert webhook.count(InboundMessage) == 1
    process_pending(build_intake(webhook.services))
    assert webhook.count(Ticket) == 1


@pytest.mark.parametrize(
    ("token", "signed_for"),
    [
        pytest.param(None, PUBLIC + "/twilio/sms", id="unsigned"),
        pytest.param("forged-token", PUBLIC + "/twilio/sms", id="forged"),
        pytest.param(TOKEN, PUBLIC.replace("https", "http") + "/twilio/sms", id="http-vs-https"),
        pytest.param(TOKEN, "http://127.0.0.1/twilio/sms", id="the-proxy's-inner-url"),
    ],
)
def test_bad_signatures_are_refused_and_nothing_is_stored(
    webhook: Webhook, token, signed_for
) -> None:
    response = webhook.post(sms("hello"), token=token, signed_for=signed_for)
    assert response.status_code == 403
    assert webhook.count(InboundMessage) == 0


def test_the_previous_token_still_works_during_a_rotation(webhook: Webhook) -> None:
    assert webhook.post(sms("hello"), token=OLD_TOKEN).status_code == 200


def test_the_raw_query_is_part_of_what_is_signed(webhook: Webhook) -> None:
    assert webhook.post(sms("hi"), query="tenant=east&x=1").status_code == 200
    form = sms("hi")
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(
            PUBLIC + "/twilio/sms?tenant=east", form
        ),
    }
    tampered = httpx.post(
        f"http://127.0.0.1:{webhook.port}/twilio/sms?tenant=west", content=urlencode(form),
        headers=headers,
    )  # fmt: skip
    assert tampered.status_code == 403


def test_a_replayed_message_sid_has_one_effect(webhook: Webhook) -> None:
    form = sms("printer jammed")
    first, again = webhook.post(form), webhook.post(form)
    assert first.status_code == again.status_code == 200
    assert first.text == again.text
    assert webhook.count(InboundMessage) == 1
    process_pending(build_intake(webhook.services))
    assert webhook.count(Ticket) == 1 and webhook.count(Message) == 1


def test_the_same_message_sid_arriving_concurrently_is_stored_once(webhook: Webhook) -> None:
    form = sms("two deliveries at once")
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: webhook.post(form).status_code, range(8)))
    assert statuses == [200] * 8
    assert webhook.count(InboundMessage) == 1


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("机" * 70, id="70-chinese"),
        pytest.param("机" * 71, id="71-chinese"),
        pytest.param("打印机卡纸 " * 266 + "完", id="1600-chars"),
        pytest.param("机器冒烟了 🔥🔥 help 😱", id="emoji"),
        pytest.param("error <E23> & no power > again", id="markup"),
    ],
)
def test_bodies_arrive_whole(webhook: Webhook, body: str) -> None:
    assert webhook.post(sms(body)).status_code == 200
    process_pending(build_intake(webhook.services))
    with unit_of_work(webhook.services.sessions) as session:
        assert session.scalars(select(Message.body)).one() == body.strip()


def test_media_only_message_is_kept(webhook: Webhook) -> None:
    media = "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1"
    form = sms("", NumMedia="1", MediaUrl0=media, MediaContentType0="image/jpeg")
    assert webhook.post(form).status_code == 200
    process_pending(build_intake(webhook.services))
    with unit_of_work(webhook.services.sessions) as session:
        body = session.scalars(select(Message.body)).one()
    assert "[1 media attachment(s)]" in body and media in body


def test_missing_fields_are_a_clear_400(webhook: Webhook) -> None:
    response = webhook.post({"Body": "no sid"})
    assert response.status_code == 400 and "MessageSid" in response.text
