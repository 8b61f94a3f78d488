"""The HTTP side of ``serve``: health check, Twilio's inbound SMS and delivery reports."""

from __future__ import annotations

import logging

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.channels.store import Store, store_now
from gateway.channels.twilio_webhook import auth_tokens, sms_endpoint, verified_form
from notifier.status import apply_status, status_callback_url
from storage.uow import unit_of_work
from workflow.clock import Clock
from workflow.settings import Settings

log = logging.getLogger(__name__)


def build_http_app(
    settings: Settings,
    engine: Engine,
    sessions: sessionmaker[Session],
    clock: Clock,
    store: Store | None = None,
) -> Starlette:
    """The app; inbound SMS are stored through ``store`` (serve's group-commit writer,
    which wakes the intake worker; each on its own otherwise)."""
    store = store or store_now(engine)
    tokens = auth_tokens(settings.sms)
    public_url = settings.http.public_url
    if not settings.sms.twilio_auth_token:
        log.warning("sms.twilio_auth_token is not set: Twilio webhooks will be refused (403)")

    def database_answers() -> bool:
        # A raw DBAPI connection: no transaction, so the check never queues behind a
        # writer (SQLite writers of this process hold a lock for their transaction).
        try:
            raw = engine.raw_connection()
            try:
                cursor = raw.cursor()
                cursor.execute("SELECT 1")
                cursor.close()
            finally:
                raw.close()
        except Exception:  # whatever the driver raises, the answer is "unavailable"
            log.exception("health check: the database does not answer")
            return False
        return True

    async def healthz(_request: Request) -> JSONResponse:
        if await run_in_threadpool(database_answers):
            return JSONResponse({"status": "ok", "database": "ok"})
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)

    # --- Twilio delivery reports (notifier) ---------------------------------------------
    def record_status(form: dict[str, str], outbox_id: int | None) -> str:
        with unit_of_work(sessions) as session:
            result = apply_status(
                session,
                message_sid=form.get("MessageSid", ""),
                status=form.get("MessageStatus", ""),
                error_code=form.get("ErrorCode") or None,
                outbox_id=outbox_id,
                now=clock(),
            )
            session.commit()
        return result

    async def twilio_status(request: Request) -> Response:
        # Twilio signs the URL it called: the callback URL we gave it, with the query.
        form = await verified_form(request, tokens, public_url, status_callback_url(settings))
        if form is None:
            return Response("invalid signature", status_code=403)
        if not form.get("MessageSid") or not form.get("MessageStatus"):
            return Response("MessageSid and MessageStatus are required", status_code=400)
        outbox = request.query_params.get("outbox", "")
        result = await run_in_threadpool(
            record_status, form, int(outbox) if outbox.isdigit() else None
        )
        log.info("Twilio status %s: %s", form["MessageSid"], result)
        return Response(status_code=204)

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/twilio/status", twilio_status, methods=["POST"]),
            Route("/twilio/sms", sms_endpoint(tokens, public_url, clock, store), methods=["POST"]),
        ]
    )
