"""Email intake end to end: mixed mail over SMTP into `supportline serve` on SQLite.

Sends the same corpus, over the same number of kept-open client connections, first to
the baseline (aiosmtpd that parses with the stdlib and inserts one row), then to the real
service, and reports both rates in one run: the machine is shared and noisy, so only the
ratio means something. The service's time runs until every message is processed
(ticket or reply, message, deadline, outbox row committed), not just until the last 250.

    python -m bench.intake_smtp [--n 2000] [--connections 16]
"""

from __future__ import annotations

import argparse
import json
import queue
import re
import shutil
import smtplib
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GENERATOR = ROOT.parent / "shared" / "bench" / "gen_corpus.py"
SUPPORT = "support@support.example.com"
BIG5_LINES = ["印表機無法開機，螢幕沒有顯示。", "機型：XP-3000，序號：TW{n:05d}。"]


def build_corpus(n: int, out: Path) -> list[bytes]:
    """The shared generator's mail (UTF-8, GB18030, HTML, attachments, 20 % replies),
    plus 5 % Big5 messages it does not make, tags rewritten to our reference format."""
    subprocess.run([sys.executable, str(GENERATOR), "--n", str(n), "--out", str(out)],
                   check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    messages = []
    for entry in json.loads((out / "manifest.json").read_text()):
        raw = (out / entry["file"]).read_bytes()
        messages.append(re.sub(rb"\[support-(\d+)\]", lambda m: b"[SL-%06d]" % int(m[1]), raw))
    for i in range(max(1, n // 20)):
        mail = EmailMessage()
        mail["From"] = f"客戶{i} <tw{i}@example.com.tw>"
        mail["To"] = SUPPORT
        mail["Subject"] = "印表機故障"
        mail["Message-ID"] = make_msgid(domain="example.com.tw")
        mail.set_content("\n".join(BIG5_LINES).format(n=i), charset="big5")
        messages.append(mail.as_bytes())
    return messages


def send_all(port: int, messages: list[bytes], connections: int) -> float:
    """Sends every message over ``connections`` kept-open sessions; returns seconds."""
    work: queue.Queue[bytes] = queue.Queue()
    for raw in messages:
        work.put(raw)
    errors: list[str] = []

    def client() -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=120) as smtp:
            while True:
                try:
                    raw = work.get_nowait()
                except queue.Empty:
                    return
                try:
                    smtp.sendmail("customer@example.com", [SUPPORT], raw)
                except smtplib.SMTPException as exc:
                    errors.append(str(exc))

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise SystemExit(f"{len(errors)} messages refused, first: {errors[0]}")
    return time.perf_counter() - started


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            smtplib.SMTP("127.0.0.1", port, timeout=2).quit()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("server did not start")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def tree_peak_rss_mb(pid: int) -> list[float]:
    """Peak resident memory of ``pid`` and of each of its child processes (serve's
    background process; multiprocessing's resource tracker, if it runs)."""
    children = [
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]
    return [peak_rss_mb(pid), *(peak_rss_mb(child) for child in children)]


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_baseline(messages: list[bytes], connections: int, work: Path) -> dict[str, float]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "bench.baseline_smtp", str(port),
                                str(work / "baseline.db")], cwd=ROOT)  # fmt: skip
    try:
        wait_for_port(port, process)
        seconds = send_all(port, messages, connections)
        stored = sqlite3.connect(work / "baseline.db").execute("SELECT count(*) FROM mail")
        assert stored.fetchone()[0] == len(messages)
        return {"seconds": seconds, "rate": len(messages) / seconds,
                "peak_mb": peak_rss_mb(process.pid)}  # fmt: skip
    finally:
        process.terminate()
        process.wait()


def run_service(messages: list[bytes], connections: int, work: Path) -> dict[str, Any]:
    smtp_port, http_port = free_port(), free_port()
    db = work / "supportline.db"
    config = work / "supportline.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{db}"\n[smtp]\nlisten = "127.0.0.1:{smtp_port}"\n'
        f'[http]\nlisten = "127.0.0.1:{http_port}"\n'
        # Every sender is distinct in the corpus but the limit is per hour; keep it out of
        # the measurement's way, it is not what is measured.
        "[email]\nauto_replies_per_sender_per_hour = 100000\n",
        encoding="utf-8",
    )
    supportline = str(Path(sys.executable).with_name("supportline"))
    subprocess.run([supportline, "--config", str(config), "db", "upgrade"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    process = subprocess.Popen([supportline, "--config", str(config), "serve"],
                               stderr=subprocess.DEVNULL, cwd=work)  # fmt: skip
    try:
        wait_for_port(smtp_port, process)
        started = time.perf_counter()
        accept_seconds = send_all(smtp_port, messages, connections)
        reader = sqlite3.connect(db)
        while True:
            pending = reader.execute(
                "SELECT count(*) FROM inbound_messages WHERE state = 'pending'"
            ).fetchone()[0]
            if pending == 0:
                break
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        states = dict(reader.execute("SELECT state, count(*) FROM inbound_messages GROUP BY state"))
        tickets = reader.execute("SELECT count(*) FROM tickets").fetchone()[0]
        in_messages = reader.execute("SELECT count(*) FROM messages").fetchone()[0]
        outbox = reader.execute("SELECT count(*) FROM outbox").fetchone()[0]
        deadlines = reader.execute("SELECT count(*) FROM deadlines").fetchone()[0]
        assert states == {"processed": len(messages)}, states
        assert in_messages == len(messages) and tickets == outbox == deadlines
        peaks = tree_peak_rss_mb(process.pid)
        return {"seconds": seconds, "rate": len(messages) / seconds,
                "accept_rate": len(messages) / accept_seconds, "tickets": tickets,
                "replies": in_messages - tickets, "peaks": peaks}  # fmt: skip
    finally:
        process.terminate()
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sl-bench-"))
    try:
        messages = build_corpus(args.n, work / "corpus")
        baseline = run_baseline(messages, args.connections, work)
        service = run_service(messages, args.connections, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratio = service["rate"] / baseline["rate"]
    print(f"emails: {len(messages)}  connections: {args.connections}")
    print(f"baseline (stdlib parse + 1 row): {baseline['rate']:7.1f} emails/s  "
          f"peak {baseline['peak_mb']:.0f} MB")  # fmt: skip
    per_process = " + ".join(f"{mb:.0f}" for mb in service["peaks"])
    print(f"supportline serve, end to end:   {service['rate']:7.1f} emails/s  "
          f"(250s at {service['accept_rate']:.1f}/s)  peak {per_process} MB  "
          f"{service['tickets']} tickets, {service['replies']} replies")  # fmt: skip
    print(f"ratio: {ratio:.0%} of the baseline (target >= 75%, peak < 200 MB; resident sizes "
          "of serve's processes, each counting the libraries they share)")  # fmt: skip


if __name__ == "__main__":
    main()
