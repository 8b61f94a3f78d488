"""Signed SMS webhooks per second into `supportline serve`, beside a bare endpoint.

Pre-signed requests (unique MessageSids, Chinese and English bodies) are sent from a
second process on loopback to a bare Starlette endpoint that only checks the signature
and to the real service on SQLite (which commits each request before answering 200,
and processes it into a ticket afterwards). The machine is shared and its speed drifts
within a minute, so both run side by side and are measured in alternating rounds (the
service idle again, its tickets made, before the next bare round); the median of the
rounds' ratios is reported. Then p50/p99 latency at half the service's rate (open loop).

    python -m bench.webhook_sms [--n 3000] [--connections 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator

from bench.intake_smtp import free_port

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-auth-token"
PUBLIC = "https://support.example.com"
BODIES = [
    "打印机不开机，型号 XP-3000，请派工程师",
    "Paper jam on the XP-5000 again",
    "签到 今天完成调试",
]


def write_requests(path: Path, count: int, offset: int) -> None:
    validator = RequestValidator(TOKEN)
    with path.open("w", encoding="utf-8") as out:
        for i in range(offset, offset + count):
            form = {
                "MessageSid": f"SM{i:032d}",
                "From": f"+86139{i % 10_000_000:08d}",
                "To": "+8610690000",
                "Body": BODIES[i % len(BODIES)],
                "NumMedia": "0",
            }
            signature = validator.compute_signature(PUBLIC + "/twilio/sms", form)
            out.write(json.dumps({"path": "/twilio/sms", "body": urlencode(form),
                                  "signature": signature}) + "\n")  # fmt: skip


def load(port: int, requests: Path, connections: int, rate: float = 0.0) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, "-m", "bench.webhook_load", "--port", str(port), "--requests",
         str(requests), "--connections", str(connections), "--rate", str(rate)],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    result: dict[str, float] = json.loads(output)
    if result["failures"]:
        raise SystemExit(f"{result['failures']} requests failed: {result}")
    return result


def wait_for_http(port: int, process: subprocess.Popen[bytes]) -> None:
    import http.client

    for _ in range(300):
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", "/healthz")
            connection.getresponse().read()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("server did not start")


def peak(port: int, work: Path, n: int, connections: int, tag: str) -> float:
    """Requests per second, closed loop, after a warm-up."""
    warm, requests = work / f"{tag}-warm.jsonl", work / f"{tag}-peak.jsonl"
    write_requests(warm, 200, next(OFFSETS))
    write_requests(requests, n, next(OFFSETS))
    load(port, warm, connections)
    return load(port, requests, connections)["rate"]


def paced(port: int, work: Path, n: int, connections: int, rate: float) -> dict[str, float]:
    requests = work / "paced.jsonl"
    write_requests(requests, n, next(OFFSETS))
    return load(port, requests, connections, rate=rate)


def wait_until_idle(db: Path, timeout: float = 600) -> None:
    """Until the service has processed every stored SMS and sent every reply."""
    deadline = time.monotonic() + timeout
    reader = sqlite3.connect(db)
    while time.monotonic() < deadline:
        pending = reader.execute(
            "SELECT (SELECT count(*) FROM inbound_messages WHERE state = 'pending')"
            " + (SELECT count(*) FROM outbox WHERE status IN ('queued', 'sending'))"
        ).fetchone()[0]
        if pending == 0:
            return
        time.sleep(0.5)
    raise SystemExit("the service did not finish its backlog")


OFFSETS = iter(range(0, 10**9, 1_000_000))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sl-webhook-"))
    bare_port, port = free_port(), free_port()
    bare = subprocess.Popen([sys.executable, "-m", "bench.bare_webhook", str(bare_port), TOKEN,
                             PUBLIC], cwd=ROOT)  # fmt: skip
    config = work / "supportline.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{work}/sl.db"\n'
        f'[http]\nlisten = "127.0.0.1:{port}"\npublic_url = "{PUBLIC}"\n'
        f'[smtp]\nlisten = "127.0.0.1:{free_port()}"\n'
        f'[sms]\ntwilio_auth_token = "{TOKEN}"\nlog_file = "{work}/sms.log"\n'
        f'[email]\nmaildir = "{work}/outbox"\n',
        encoding="utf-8",
    )
    supportline = str(Path(sys.executable).with_name("supportline"))
    subprocess.run([supportline, "--config", str(config), "db", "upgrade"], check=True,
                   capture_output=True)  # fmt: skip
    serve = subprocess.Popen([supportline, "--config", str(config), "serve"], cwd=work,
                             stderr=subprocess.DEVNULL)  # fmt: skip
    rounds: list[tuple[float, float]] = []
    try:
        wait_for_bare(bare_port, bare)
        wait_for_http(port, serve)
        for _ in range(args.rounds):
            bare_rate = peak(bare_port, work, args.n, args.connections, "bare")
            serve_rate = peak(port, work, args.n, args.connections, "serve")
            rounds.append((bare_rate, serve_rate))
            wait_until_idle(work / "sl.db")
        serve_rates = sorted(rate for _, rate in rounds)
        half = serve_rates[len(serve_rates) // 2] / 2
        latency = paced(port, work, args.n // 2, args.connections, half)
    finally:
        for process in (bare, serve):
            process.terminate()
            process.wait()
        shutil.rmtree(work, ignore_errors=True)
    print(f"requests: {args.n} a round  connections: {args.connections}")
    for number, (bare_rate, serve_rate) in enumerate(rounds, 1):
        print(f"round {number}: bare signature check {bare_rate:7.1f} req/s   supportline serve "
              f"{serve_rate:7.1f} req/s   ratio {serve_rate / bare_rate:.0%}")  # fmt: skip
    ratios = sorted(serve_rate / bare_rate for bare_rate, serve_rate in rounds)
    print(f"ratio: {ratios[len(ratios) // 2]:.0%} of the bare endpoint, median of {len(ratios)} "
          f"rounds (target >= 60%)")  # fmt: skip
    print(f"at {latency['rate']:.1f} req/s (half the median rate): p50 {latency['p50_ms']:.1f} ms"
          f"  p99 {latency['p99_ms']:.1f} ms (target p99 < 100 ms)")  # fmt: skip


def wait_for_bare(port: int, process: subprocess.Popen[bytes]) -> None:
    import socket

    for _ in range(300):
        if process.poll() is not None:
            raise SystemExit(f"bare server exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("bare server did not start")


if __name__ == "__main__":
    main()
