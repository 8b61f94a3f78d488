"""A local HTTP server speaking the part of Twilio's Messages API the notifier uses.

``POST /2010-04-01/Accounts/{sid}/Messages.json`` (form-encoded, HTTP Basic auth) and
``GET`` of the same path (the message list, filtered by ``To``), answered the way
api.twilio.com answers: JSON bodies, Twilio error codes, ``date_created`` in RFC 2822.
The real ``twilio`` client is pointed at it with ``sms.twilio_api_url``.

What it answers is scripted per recipient: ``standin.script("+8613800000001", "429",
"ok")`` answers the first request to that number with a 429 and every later one with
success (the last step repeats).

Steps: ``ok``; ``429``; ``500`` (an HTML error page, as a load balancer sends);
``500-after-create`` (the message is created, then a 500); an error code such as
``21211``, ``21610``, ``20003``, ``30003``; ``hang`` (the message is created and the
answer comes only after ``hang_seconds``, past the client's timeout); ``kill`` (the
message is created and ``on_kill`` runs before any answer, e.g. to SIGKILL the sender).
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

ERRORS = {
    "429": (429, 20429, "Too Many Requests"),
    "21211": (400, 21211, "The 'To' number is not a valid phone number."),
    "21614": (400, 21614, "'To' number is not a valid mobile number"),
    "21610": (400, 21610, "Attempt to send to unsubscribed recipient"),
    "20003": (401, 20003, "Authenticate"),
    "21606": (400, 21606, "The 'From' phone number provided is not a valid message-capable"),
    "30003": (400, 30003, "Unreachable destination handset"),
}


@dataclass
class StandIn:
    account_sid: str
    auth_token: str
    port: int = 0
    hang_seconds: float = 3.0
    on_kill: Callable[[], None] | None = None
    created: list[dict[str, Any]] = field(default_factory=list)  # every message it made
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    scripts: dict[str, list[str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _sids: Any = field(default_factory=lambda: itertools.count(1))

    def script(self, to: str, *steps: str) -> None:
        self.scripts[to] = list(steps)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def posts_to(self, to: str) -> list[dict[str, str]]:
        return [form for method, _, form in self.requests if method == "POST" and form["To"] == to]

    def next_step(self, to: str) -> str:
        with self.lock:
            steps = self.scripts.get(to) or ["ok"]
            return steps.pop(0) if len(steps) > 1 else steps[0]

    def create(self, form: dict[str, str]) -> dict[str, Any]:
        with self.lock:
            sid = f"SM{next(self._sids):032x}"
            message = {
                "sid": sid,
                "account_sid": self.account_sid,
                "to": form["To"],
                "from": form.get("From") or "+15005550006",
                "messaging_service_sid": form.get("MessagingServiceSid"),
                "body": form["Body"],
                "status": "queued",
                "direction": "outbound-api",
                "num_segments": "1",
                "date_created": format_datetime(datetime.now(UTC), usegmt=True),
                "date_sent": None,
                "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
            }
            self.created.append(message)
            return message


def _handler(standin: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _json(self, status: int, document: Any) -> None:
            payload = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _authorised(self) -> bool:
            expected = base64.b64encode(
                f"{standin.account_sid}:{standin.auth_token}".encode()
            ).decode()
            if self.headers.get("Authorization") == f"Basic {expected}":
                return True
            self._json(401, {"code": 20003, "message": "Authenticate", "status": 401})
            return False

        def _path_ok(self, path: str) -> bool:
            if path == f"/2010-04-01/Accounts/{standin.account_sid}/Messages.json":
                return True
            self._json(404, {"code": 20404, "message": "not found", "status": 404})
            return False

        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            length = int(self.headers.get("Content-Length") or 0)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            standin.requests.append(("POST", self.path, form))
            if not self._path_ok(urlsplit(self.path).path) or not self._authorised():
                return
            step = standin.next_step(form.get("To", ""))
            if step == "ok":
                self._json(201, standin.create(form))
            elif step == "500":
                self.send_response(500)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(b"<html><body>Internal Server Error</body></html>")
            elif step == "500-after-create":
                standin.create(form)
                self._json(500, {"code": 20500, "message": "Internal Server Error", "status": 500})
            elif step == "hang":
                message = standin.create(form)
                time.sleep(standin.hang_seconds)
                self._json(201, message)
            elif step == "kill":
                standin.create(form)
                assert standin.on_kill is not None
                standin.on_kill()
                time.sleep(standin.hang_seconds)
            else:
                status, code, text = ERRORS[step]
                self._json(
                    status,
                    {"code": code, "message": text, "more_info": "", "status": status},
                )

        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            standin.requests.append(("GET", self.path, query))
            if not self._path_ok(parts.path) or not self._authorised():
                return
            with standin.lock:
                messages = [
                    m for m in reversed(standin.created) if m["to"] == query.get("To", m["to"])
                ]
            size = int(query.get("PageSize", "50"))
            self._json(
                200,
                {
                    "messages": messages[:size],
                    "page": 0,
                    "page_size": size,
                    "start": 0,
                    "end": max(len(messages[:size]) - 1, 0),
                    "uri": parts.path,
                    "first_page_uri": parts.path,
                    "next_page_uri": None,
                    "previous_page_uri": None,
                },
            )

    return Handler


class RunningStandIn:
    """Context manager: the stand-in served from a thread on a free port."""

    def __init__(self, standin: StandIn) -> None:
        self.standin = standin
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(standin))
        self.server.daemon_threads = True
        standin.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StandIn:
        self.thread.start()
        return self.standin

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
