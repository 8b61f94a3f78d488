"""``supportline serve``: every listener in one event loop, the work after them in a
second process (``gateway/serving/background.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator

import uvicorn

from gateway.bootstrap import Services
from gateway.channels.http import build_http_app
from gateway.channels.imap import start_pollers
from gateway.channels.smtp import SmtpHandler, start_smtp_server
from gateway.serving.background import BackgroundProcess
from gateway.serving.group_commit import InboundWriter

log = logging.getLogger(__name__)


class _HttpServer(uvicorn.Server):
    """uvicorn's server, except that it does not raise Ctrl-C or SIGTERM again once it
    has stopped: ``serve`` still closes the SMTP server, the IMAP pollers, the writer
    (committing what is queued) and the background process, then exits 0."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        stopping = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in stopping}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


async def serve(services: Services) -> None:
    background = BackgroundProcess(services.settings)
    # Raises SettingsError for a wrong transport setting, before any port is opened.
    # Its intake also takes rows left pending by a crash.
    background.start()
    try:
        await _listen(services, background)
    finally:
        background.close()  # after the listeners: it stops after the batch in hand
    log.info("stopped")


async def _listen(services: Services, background: BackgroundProcess) -> None:
    settings, engine, clock = services.settings, services.engine, services.clock
    smtp_host, smtp_port = split_listen(settings.smtp.listen)
    # SMTP and webhooks commit here; the background process yields to their arrivals.
    writer = InboundWriter(engine, background.wake, background.arrivals.mark)
    handler = SmtpHandler(settings.smtp.domains, clock, writer.store)
    smtp_server = await start_smtp_server(
        handler, smtp_host, smtp_port, settings.smtp.max_message_bytes
    )
    log.info("SMTP listening on %s:%d", smtp_host, smtp_port)
    # One thread per [[imap.mailboxes]].
    pollers = start_pollers(settings.imap.mailboxes, engine, clock, background.wake)

    host, port = split_listen(settings.http.listen)
    config = uvicorn.Config(
        build_http_app(settings, engine, services.sessions, clock, writer.store),
        host=host,
        port=port,
        log_level="info",
        # One log line per webhook is noise that costs throughput; problems are logged.
        access_log=False,
        lifespan="off",
    )
    log.info("HTTP listening on %s:%d", host, port)
    try:
        await _HttpServer(config).serve()  # until Ctrl-C or SIGTERM
    finally:
        pollers.stop()
        smtp_server.close()
        await smtp_server.wait_closed()
        writer.close()


def run(services: Services) -> None:
    asyncio.run(serve(services))
