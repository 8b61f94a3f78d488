"""``supportline serve``: every listener of the service in one event loop."""

from __future__ import annotations

import asyncio
import logging

import uvicorn

from gateway.bootstrap import Services
from gateway.http import build_http_app

log = logging.getLogger(__name__)


def split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


async def serve(services: Services) -> None:
    host, port = split_listen(services.settings.http.listen)
    config = uvicorn.Config(
        build_http_app(services), host=host, port=port, log_level="info", lifespan="off"
    )
    server = uvicorn.Server(config)
    log.info("HTTP listening on %s:%d", host, port)
    await server.serve()


def run(services: Services) -> None:
    asyncio.run(serve(services))
