"""Outbound email throughput: the outbox dispatcher beside a bare smtplib loop, same run.

Both send the same messages to the same local aiosmtpd sink (in a process of its own):

- baseline: the messages rendered beforehand, sent by ``smtplib`` in a bare loop on one
  connection — the least any sender must do;
- dispatcher: ``Dispatcher.run_pass()`` over the same number of queued outbox rows on
  SQLite (WAL, synchronous=FULL) — claim with a lease, render both parts from jinja2,
  build and validate the MIME message, send on its reused connection, record ``sent``.

The machine is shared and noisy, so the two alternate for a few rounds and the median
of each is reported; only the ratio means something. Target: dispatcher ≥ 70 % of the
baseline.

    python -m bench.dispatch_email [--n 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import random
import smtplib
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from gateway.bootstrap import Services, build_services
from notifier.email_message import Addressing, build_email
from notifier.transports import build_renderer
from storage import migrate
from storage.outbox import enqueue, outbound_message_id
from storage.uow import unit_of_work
from workflow.settings import load_settings

SINK = """
import signal, sys, threading
from aiosmtpd.controller import Controller
class Count:
    n = 0
    async def handle_DATA(self, server, session, envelope):
        Count.n += 1
        return "250 OK"
controller = Controller(Count(), hostname="127.0.0.1", port=int(sys.argv[1]))
controller.start()
print("ready", flush=True)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
stop.wait()
controller.stop()
"""

DOMAIN = "support.example.com"


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def context(i: int) -> dict[str, str]:
    return {
        "ref": f"SL-{i:06d}",
        "subject": f"Re: 打印机故障 第{i}号 [SL-{i:06d}]",
        "requester_name": "张伟" if i % 2 else "Homer Simpson",
        "problem": f"XP-3000 打印时卡纸，屏幕显示 E23。序列号 SN{i:05d}。\n" * 3,
        "reply_to": f"support+tok{i:030d}@{DOMAIN}",
    }


def language(i: int) -> str:
    return "zh-CN" if i % 3 else "en"


def services_for(db: Path, port: int) -> Services:
    settings = load_settings(
        {
            "database": {"url": f"sqlite:///{db}"},
            "email": {"transport": "smtp", "smtp_host": "127.0.0.1", "smtp_port": port},
        }
    )
    services = build_services(settings, lambda: datetime.now(UTC))
    migrate.upgrade(services.engine)
    return services


def queue_rows(services: Services, n: int, round_no: int) -> None:
    now = services.clock()
    with unit_of_work(services.sessions) as session:
        for i in range(n):
            key = f"bench:{round_no}:{i}"
            enqueue(
                session.connection(), key=key, channel="email", to=f"customer{i}@example.com",
                template="ticket_ack", language=language(i), context=context(i), now=now,
                message_id=outbound_message_id(key, DOMAIN),
                reply_to_message_id=f"<in{i}@example.com>", references=[f"<in{i}@example.com>"],
            )  # fmt: skip
        session.commit()


def prerender(services: Services, n: int) -> list[tuple[str, str, bytes]]:
    renderer = build_renderer(services.settings)
    messages = []
    for i in range(n):
        rendered = renderer.email("ticket_ack", language(i), context(i))
        message = build_email(
            rendered,
            Addressing(
                sender=services.settings.email.from_, to=f"customer{i}@example.com",
                message_id=outbound_message_id(f"bare:{i}", DOMAIN), date=services.clock(),
                language=language(i), reply_to=context(i)["reply_to"],
                in_reply_to=f"<in{i}@example.com>", references=[f"<in{i}@example.com>"],
            ),
        )  # fmt: skip
        messages.append(("support@" + DOMAIN, f"customer{i}@example.com", message.data))
    return messages


def bare_loop(port: int, messages: list[tuple[str, str, bytes]]) -> float:
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as client:
        for sender, recipient, data in messages:
            client.sendmail(sender, [recipient], data)
    return time.perf_counter() - started


def dispatcher_pass(services: Services, n: int) -> float:
    dispatcher = services.dispatcher()
    dispatcher.rng = random.Random(1)
    started = time.perf_counter()
    report = dispatcher.run_pass()
    elapsed = time.perf_counter() - started
    if report.sent != n:
        raise SystemExit(f"dispatcher sent {report.sent} of {n}: {report.summary()}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    port = free_port()
    sink = subprocess.Popen(
        [sys.executable, "-c", SINK, str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
        with tempfile.TemporaryDirectory() as folder:
            services = services_for(Path(folder) / "bench.db", port)
            messages = prerender(services, args.n)
            bare_rates, dispatcher_rates = [], []
            for round_no in range(args.rounds):
                queue_rows(services, args.n, round_no)  # not timed: the outbox is filled
                bare_rates.append(args.n / bare_loop(port, messages))
                dispatcher_rates.append(args.n / dispatcher_pass(services, args.n))
                print(
                    f"round {round_no + 1}: bare smtplib {bare_rates[-1]:7.0f}/s   "
                    f"dispatcher {dispatcher_rates[-1]:7.0f}/s",
                    flush=True,
                )
            services.close()
        bare, ours = statistics.median(bare_rates), statistics.median(dispatcher_rates)
        print(f"\n{args.n} emails per round, median of {args.rounds} rounds")
        print(f"bare smtplib loop, one connection : {bare:7.0f} emails/s")
        print(f"outbox dispatcher (SQLite)        : {ours:7.0f} emails/s")
        print(f"ratio                             : {ours / bare:7.0%}  (target >= 70%)")
    finally:
        sink.terminate()
        sink.wait(10)


if __name__ == "__main__":
    main()
