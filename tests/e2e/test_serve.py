"""``supportline serve`` and ``make run`` as a person starts them."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, SUPPORTLINE, free_port, stop, wait_for_http


def _config(tmp_path: Path, http_port: int) -> Path:
    config = tmp_path / "supportline.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path}/sl.db"\n'
        f'[http]\nlisten = "127.0.0.1:{http_port}"\n'
        f'[smtp]\nlisten = "127.0.0.1:{free_port()}"\n',
        encoding="utf-8",
    )
    return config


def _start(args: list[str], cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )


def test_serve_answers_healthz(tmp_path: Path) -> None:
    port = free_port()
    config = _config(tmp_path, port)
    subprocess.run([SUPPORTLINE, "--config", str(config), "db", "upgrade"], check=True)
    process = _start([SUPPORTLINE, "--config", str(config), "serve"], tmp_path)
    try:
        body = wait_for_http(f"http://127.0.0.1:{port}/healthz", process=process)
        assert json.loads(body) == {"status": "ok", "database": "ok"}
    finally:
        stop(process)


@pytest.mark.parametrize(
    "send",
    [
        pytest.param(lambda pid: os.killpg(pid, signal.SIGINT), id="ctrl-c"),
        pytest.param(lambda pid: os.kill(pid, signal.SIGTERM), id="sigterm"),  # docker stop
    ],
)
def test_regression_serve_aborted_on_ctrl_c_and_was_cut_off_by_sigterm(
    tmp_path: Path, send
) -> None:
    """Fixed in d57912b: Ctrl-C ended serve in "Aborted!" (exit 1); SIGTERM cut it off."""
    port = free_port()
    config = _config(tmp_path, port)
    subprocess.run([SUPPORTLINE, "--config", str(config), "db", "upgrade"], check=True)
    process = _start([SUPPORTLINE, "--config", str(config), "serve"], tmp_path)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", process=process)
        send(process.pid)
        assert process.wait(timeout=30) == 0
    finally:
        output = stop(process)
    # The listeners, then the background process, were closed in order, not cut off.
    assert "gateway.serving.serve: stopped" in output
    assert "Aborted!" not in output and "is gone" not in output and "killing" not in output


def test_serve_refuses_a_fixed_clock(tmp_path: Path) -> None:
    config = _config(tmp_path, free_port())
    result = subprocess.run(
        [SUPPORTLINE, "--config", str(config), "--now", "2026-11-27T10:00", "serve"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "serve always runs on the real clock" in result.stderr


def test_serve_with_a_wrong_transport_setting_stops_with_its_message(tmp_path: Path) -> None:
    config = _config(tmp_path, free_port())
    with config.open("a", encoding="utf-8") as extra:
        extra.write('[sms]\ntransport = "twilio"\n')  # no account, no token
    subprocess.run([SUPPORTLINE, "--config", str(config), "db", "upgrade"], check=True)
    result = subprocess.run(
        [SUPPORTLINE, "--config", str(config), "serve"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "supportline: configuration error: "
        "sms.transport = 'twilio' needs twilio_account_sid and auth_token"
    )


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_migrates_and_serves(tmp_path: Path) -> None:
    """The README's first command, on its own settings file."""
    port = free_port()
    config = _config(tmp_path, port)
    process = _start(["make", "--no-print-directory", "run", f"CONFIG={config}"], ROOT)
    try:
        body = wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=120, process=process)
        assert json.loads(body)["status"] == "ok"
    finally:
        output = stop(process)
    assert "database at revision" in output
