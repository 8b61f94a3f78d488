"""``serve``'s second process: the work that follows an arrival (intake, outbox).

The listeners (SMTP, HTTP, IMAP) only store what arrives and answer; parsing mail,
opening tickets and sending run here, in a process ``serve`` starts, watches and
restarts. Python runs one thread at a time per process, so work kept in the listeners'
process would hold back every 250 and every webhook's 200 while a batch of mail is
parsed; in a process of its own it runs on another core. The database is the queue
between the two: the listeners' ``wake()`` only saves the poll interval, and rows
stored while this process is down are still pending when it is back.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from gateway.serving.signals import Arrivals, Wake
from workflow.settings import Settings, SettingsError

log = logging.getLogger(__name__)

START_TIMEOUT_SECONDS = 120.0
RESTART_BACKOFF_SECONDS = (1.0, 2.0, 5.0, 15.0, 30.0)
STEADY_SECONDS = 60.0  # a run this long resets the restart backoff


class BackgroundProcess:
    """Starts the background process, restarts it if it dies, stops it with ``close()``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.context = multiprocessing.get_context("spawn")  # no threads or sockets inherited
        self.wake_flag = Wake()
        self.arrivals = Arrivals()
        self.closing = threading.Event()
        self.process: BaseProcess | None = None
        self.watcher = threading.Thread(target=self._watch, name="background-watch", daemon=True)

    def start(self) -> None:
        """Returns once the process is running; raises if it could not start
        (``SettingsError`` with its message for a wrong transport setting)."""
        self.process = self._spawn()
        self.watcher.start()

    def wake(self, _inbound_id: int | None = None) -> None:
        self.wake_flag.set()

    def close(self, timeout: float = 60.0) -> None:
        """Lets the batch in hand finish, then stops; what is pending waits for the next start."""
        self.closing.set()
        if self.watcher.is_alive():
            # It waits on the process too; two threads reaping one child race, and the
            # loser sees it "alive" after it has exited.
            self.watcher.join()
        if self.process is None:
            return
        self.process.terminate()  # SIGTERM: the process finishes its batch and exits
        self.process.join(timeout)
        if self.process.is_alive():
            log.error("background process did not stop in %.0f s; killing it", timeout)
            self.process.kill()
            self.process.join(5)

    def _spawn(self) -> BaseProcess:
        ready_in, ready_out = self.context.Pipe(duplex=False)
        process = self.context.Process(
            target=run_background,
            args=(self.settings, self.wake_flag, self.arrivals, ready_out, os.getpid()),
            name="supportline-background",
        )
        process.start()
        ready_out.close()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        answer = None  # True, or what is wrong with the settings
        try:
            while not ready_in.poll(0.1):
                if not process.is_alive() or time.monotonic() > deadline:
                    break
            else:
                with contextlib.suppress(EOFError):  # it died without a word
                    answer = ready_in.recv()
        finally:
            ready_in.close()
        if answer is True:
            return process
        process.kill()
        process.join()
        if isinstance(answer, str):
            raise SettingsError(answer)
        raise RuntimeError(
            f"the background process (intake, outbox) did not start "
            f"(exit code {process.exitcode}); its error is in the log above"
        )

    def _watch(self) -> None:
        failures = 0
        started = time.monotonic()
        while not self.closing.is_set():
            assert self.process is not None
            self.process.join(1.0)
            if self.process.is_alive() or self.closing.is_set():
                continue
            if time.monotonic() - started > STEADY_SECONDS:
                failures = 0
            pause = RESTART_BACKOFF_SECONDS[min(failures, len(RESTART_BACKOFF_SECONDS) - 1)]
            failures += 1
            log.error(
                "background process exited with code %s; restarting it in %.0f s "
                "(stored messages wait as pending)",
                self.process.exitcode,
                pause,
            )
            if self.closing.wait(pause):
                return
            try:
                self.process = self._spawn()
                started = time.monotonic()
            except (RuntimeError, SettingsError):
                log.exception("could not restart the background process")


def run_background(
    settings: Settings,
    wake_flag: Wake,
    arrivals: Arrivals,
    ready: Connection,
    parent_pid: int,
) -> None:
    """The background process: the intake worker and the outbox dispatcher until stopped."""
    # Imported here, in the background process only: the listeners' process, which
    # imports this module for BackgroundProcess, never parses mail.
    from gateway.bootstrap import LOG_FORMAT, build_services, system_clock
    from gateway.intake.service import build_intake
    from gateway.serving.worker import IntakeWorker
    from notifier.dispatcher_thread import DispatcherThread
    from storage.sqlite_writers import writers_waiting

    stop_flag = threading.Event()
    # Ctrl-C reaches the whole process group; serve decides when this process stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: stop_flag.set())
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    services = build_services(settings, system_clock)
    try:
        outbox = services.dispatcher()  # builds the transports: settings are checked here
    except SettingsError as exc:  # serve reports it and does not start
        ready.send(str(exc))
        ready.close()
        services.close()
        return
    services.calendar()  # the holiday tables load now, not while the first mail waits
    worker = IntakeWorker(
        services.sessions,
        lambda: build_intake(services),
        wake_flag,
        stop_flag,
        arrivals,
        parse_ahead=True,
        writers_waiting=lambda: writers_waiting(services.engine),
    )
    dispatcher = DispatcherThread(
        outbox, services.engine, settings.notifier.poll_seconds, worker.busy
    )
    dispatcher.start()
    ready.send(True)
    ready.close()
    try:
        while not stop_flag.wait(1.0):
            if os.getppid() != parent_pid:  # serve died without stopping us
                log.error("serve (pid %d) is gone; the background process stops", parent_pid)
                break
    finally:
        worker.close()
        dispatcher.stop()  # last: what intake wrote meanwhile waits in the outbox
        services.close()
