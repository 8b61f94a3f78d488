"""``serve``'s background process: mail stored by the listeners becomes tickets there,
and a background process that dies is started again without losing a message."""

from __future__ import annotations

import os
import signal
import smtplib
import sqlite3
import subprocess
import time
from email.message import EmailMessage
from pathlib import Path

from tests.conftest import SUPPORTLINE, free_port, stop, wait_for_http


def _config(tmp_path: Path, http_port: int, smtp_port: int) -> Path:
    config = tmp_path / "supportline.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path}/sl.db"\n'
        f'[http]\nlisten = "127.0.0.1:{http_port}"\n'
        f'[smtp]\nlisten = "127.0.0.1:{smtp_port}"\n'
        f'[email]\nmaildir = "{tmp_path}/outbox"\n',
        encoding="utf-8",
    )
    return config


def _send(smtp_port: int, subject: str) -> None:
    mail = EmailMessage()
    mail["From"] = "王芳 <wang@example.com>"
    mail["To"] = "support@support.example.com"
    mail["Subject"] = subject
    mail.set_content("打印机卡纸，型号 XP-3000。")
    with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as smtp:
        smtp.send_message(mail)


def _ticket_subjects(db: Path, count: int, timeout: float = 60) -> list[str]:
    """The tickets' subjects once there are ``count`` of them (fails after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        with sqlite3.connect(db) as reader:
            subjects = [row[0] for row in reader.execute("SELECT subject FROM tickets ORDER BY id")]
        if len(subjects) >= count or time.monotonic() > deadline:
            return subjects
        time.sleep(0.1)


def _background_pid(serve_pid: int, timeout: float = 30) -> int:
    """The background process of serve (restarts come from serve's watcher thread)."""
    deadline = time.monotonic() + timeout
    while True:
        children = [
            pid
            for task in Path(f"/proc/{serve_pid}/task").iterdir()
            for pid in (task / "children").read_text().split()
        ]
        pid = _spawned(children)
        if pid is not None or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert pid is not None, f"serve {serve_pid} has no background process among {children}"
    return pid


def _spawned(children: list[str]) -> int | None:
    for pid in children:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        if b"spawn_main" in command and b"resource_tracker" not in command:
            return int(pid)
    return None


def _wait_until(condition: object, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.1)
    return False


def test_regression_background_process_restarted_after_a_kill_never_woke(
    tmp_path: Path,
) -> None:
    """Fixed in 6b3aece: after a kill, the restarted background process never woke."""
    http_port, smtp_port = free_port(), free_port()
    config = _config(tmp_path, http_port, smtp_port)
    subprocess.run([SUPPORTLINE, "--config", str(config), "db", "upgrade"], check=True)
    serve = subprocess.Popen(
        [SUPPORTLINE, "--config", str(config), "serve"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{http_port}/healthz", process=serve)
        _send(smtp_port, "第一台打印机")
        assert _ticket_subjects(tmp_path / "sl.db", 1) == ["第一台打印机"]
        # The acknowledgement went out from the background process's dispatcher.
        assert _wait_until(lambda: len(list((tmp_path / "outbox" / "new").glob("*"))) == 1)

        first = _background_pid(serve.pid)
        os.kill(first, signal.SIGKILL)
        _send(smtp_port, "第二台打印机")  # stored while nothing processes it
        assert _ticket_subjects(tmp_path / "sl.db", 2) == ["第一台打印机", "第二台打印机"]
        second = _background_pid(serve.pid)
        assert second != first
    finally:
        output = stop(serve)
    assert "Finished server process" in output, output
    assert "background process exited with code -9; restarting it" in output
    # Stopping serve stops its background process too: nothing is left running.
    assert _wait_until(lambda: not Path(f"/proc/{second}").exists(), timeout=10)
