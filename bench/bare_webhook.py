"""The webhook benchmark's baseline: Starlette on uvicorn that only checks the signature.

Run as ``python -m bench.bare_webhook PORT TOKEN PUBLIC_URL``.
"""

from __future__ import annotations

import sys
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator

from gateway.channels.twilio_webhook import EMPTY_TWIML


def main() -> None:
    port, token, public_url = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    validator = RequestValidator(token)

    async def receive(request: Request) -> Response:
        body = (await request.body()).decode()
        params = dict(parse_qsl(body, keep_blank_values=True))
        signature = request.headers.get("X-Twilio-Signature", "")
        if not validator.validate(public_url + request.url.path, params, signature):
            return Response("invalid signature", status_code=403)
        return Response(EMPTY_TWIML, media_type="application/xml")

    app = Starlette(routes=[Route("/twilio/sms", receive, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")


if __name__ == "__main__":
    main()
