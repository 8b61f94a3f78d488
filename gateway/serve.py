"""``supportline serve``: every listener of the service in one event loop."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

import uvicorn

from gateway.bootstrap import Services
from gateway.http import build_http_app
from gateway.intake import NotProcessable, process_inbound, process_pending
from gateway.smtp import IntakeHandler, start_smtp_server

log = logging.getLogger(__name__)


def split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


class IntakeWorker:
    """Processes stored inbound rows one at a time, in arrival order, off the event loop.

    One thread: processing writes tickets and SQLite has one writer anyway; stored rows
    wait in the database, so nothing is lost if the process stops with work queued.
    """

    def __init__(self, services: Services) -> None:
        self.services = services
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="intake")

    def submit(self, inbound_id: int) -> None:
        self.executor.submit(self._process, inbound_id)

    def catch_up(self) -> None:
        self.executor.submit(process_pending, self.services)

    def _process(self, inbound_id: int) -> None:
        try:
            outcome = process_inbound(self.services, inbound_id)
            log.info("inbound %d: %s", inbound_id, outcome.result)
        except NotProcessable as exc:
            log.info("%s", exc)
        except Exception:  # process_inbound quarantines; this is a last resort
            log.exception("inbound %d could not be processed", inbound_id)

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=False)


async def serve(services: Services) -> None:
    worker = IntakeWorker(services)
    worker.catch_up()  # rows stored before a crash or a restart
    smtp_host, smtp_port = split_listen(services.settings.smtp.listen)
    handler = IntakeHandler(services, None, worker.submit)
    smtp_server = await start_smtp_server(services, handler, smtp_host, smtp_port)
    log.info("SMTP listening on %s:%d", smtp_host, smtp_port)

    host, port = split_listen(services.settings.http.listen)
    config = uvicorn.Config(
        build_http_app(services), host=host, port=port, log_level="info", lifespan="off"
    )
    log.info("HTTP listening on %s:%d", host, port)
    try:
        await uvicorn.Server(config).serve()
    finally:
        smtp_server.close()
        await smtp_server.wait_closed()
        worker.close()


def run(services: Services) -> None:
    asyncio.run(serve(services))
