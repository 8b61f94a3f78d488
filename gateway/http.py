"""The HTTP side of ``serve``: health check now, the Twilio webhooks later."""

from __future__ import annotations

import logging

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.bootstrap import Services

log = logging.getLogger(__name__)


def build_http_app(services: Services) -> Starlette:
    def database_answers() -> bool:
        try:
            with services.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError:
            log.exception("health check: the database does not answer")
            return False
        return True

    async def healthz(_request: Request) -> JSONResponse:
        if await run_in_threadpool(database_answers):
            return JSONResponse({"status": "ok", "database": "ok"})
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)

    return Starlette(routes=[Route("/healthz", healthz, methods=["GET"])])
