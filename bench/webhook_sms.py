"""Signed SMS webhooks per second into `supportline serve`, beside a bare endpoint.

The same pre-signed requests (unique MessageSids, Chinese and English bodies) are sent
from a second process on loopback, first to a bare Starlette endpoint that only checks
the signature, then to the real service on SQLite (which commits each request before
answering 200, and processes it into a ticket afterwards). Reported: maximum rate
(closed loop), then p50/p99 latency at half of that rate (open loop).

    python -m bench.webhook_sms [--n 3000] [--connections 16]
"""

from __future__ import annotations

import argparse
import json
import shutil
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


def measure(port: int, work: Path, n: int, connections: int, tag: str) -> dict[str, float]:
    warm, peak, paced = (
        work / f"{tag}-warm.jsonl",
        work / f"{tag}-peak.jsonl",
        work / f"{tag}-paced.jsonl",
    )
    write_requests(warm, 200, 0)
    write_requests(peak, n, 1_000_000)
    load(port, warm, connections)
    best = load(port, peak, connections)
    write_requests(paced, n // 2, 2_000_000)
    half = load(port, paced, connections, rate=best["rate"] / 2)
    return {"rate": best["rate"], "p50_ms": half["p50_ms"], "p99_ms": half["p99_ms"],
            "half_rate": half["rate"]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sl-webhook-"))
    try:
        port = free_port()
        bare = subprocess.Popen([sys.executable, "-m", "bench.bare_webhook", str(port), TOKEN,
                                 PUBLIC], cwd=ROOT)  # fmt: skip
        try:
            wait_for_bare(port, bare)
            baseline = measure(port, work, args.n, args.connections, "bare")
        finally:
            bare.terminate()
            bare.wait()

        port = free_port()
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
        try:
            wait_for_http(port, serve)
            service = measure(port, work, args.n, args.connections, "serve")
        finally:
            serve.terminate()
            serve.wait()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"requests: {args.n}  connections: {args.connections}")
    for name, result in (("bare signature check", baseline), ("supportline serve", service)):
        print(f"{name:22} {result['rate']:7.1f} req/s   at {result['half_rate']:6.1f} req/s: "
              f"p50 {result['p50_ms']:6.1f} ms  p99 {result['p99_ms']:6.1f} ms")  # fmt: skip
    print(f"ratio: {service['rate'] / baseline['rate']:.0%} of the bare endpoint (target >= 60%, "
          f"p99 < 100 ms at half the maximum rate)")  # fmt: skip


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
