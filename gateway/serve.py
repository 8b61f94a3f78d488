"""``supportline serve``: every listener of the service in one event loop."""

from __future__ import annotations

import asyncio
import logging

import uvicorn

from gateway.bootstrap import Services
from gateway.http import build_http_app
from gateway.imap import start_pollers
from gateway.inbound_writer import InboundWriter
from gateway.intake_worker import IntakeWorker
from gateway.smtp import IntakeHandler, start_smtp_server
from notifier.dispatcher import DispatcherThread

log = logging.getLogger(__name__)


def split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


async def serve(services: Services) -> None:
    # The outbox dispatcher (notifier): built first, so a wrong transport setting stops
    # start-up; it polls every notifier.poll_seconds and wakes early on new rows.
    dispatcher = DispatcherThread(
        services.dispatcher(), services.engine, services.settings.notifier.poll_seconds
    )
    worker = IntakeWorker(services)  # also takes rows left pending by a crash
    smtp_host, smtp_port = split_listen(services.settings.smtp.listen)
    writer = InboundWriter(services.sessions, worker.wake)  # SMTP and webhooks commit here
    worker.yield_to = writer  # while mail and texts arrive, storing them comes first
    handler = IntakeHandler(services, writer)
    smtp_server = await start_smtp_server(services, handler, smtp_host, smtp_port)
    log.info("SMTP listening on %s:%d", smtp_host, smtp_port)
    pollers = start_pollers(services, worker.wake)  # one thread per [[imap.mailboxes]]

    host, port = split_listen(services.settings.http.listen)
    config = uvicorn.Config(
        build_http_app(services, writer),
        host=host,
        port=port,
        log_level="info",
        # One log line per webhook is noise that costs throughput; problems are logged.
        access_log=False,
        lifespan="off",
    )
    log.info("HTTP listening on %s:%d", host, port)
    try:
        dispatcher.start()
        await uvicorn.Server(config).serve()
    finally:
        pollers.stop()
        smtp_server.close()
        await smtp_server.wait_closed()
        writer.close()
        worker.close()
        dispatcher.stop()  # last: what intake wrote meanwhile waits in the outbox


def run(services: Services) -> None:
    asyncio.run(serve(services))
