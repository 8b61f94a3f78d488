"""``supportline outbox …`` and the dispatcher inside ``supportline serve``, end to end."""

from __future__ import annotations

import json
import smtplib
import subprocess
import time
from pathlib import Path

from click.testing import CliRunner, Result
from sqlalchemy import update

from gateway.cli.commands import cli
from storage.models import OutboxMessage
from storage.outbox import enqueue
from storage.uow import unit_of_work
from tests.conftest import FIXED_NOW, SUPPORTLINE, free_port, make_services, stop, wait_for_http
from tests.mailbuild import customer_mail

CONTEXT = {"ref": "SL-000003", "subject": "Re: x [SL-000003]", "requester_name": "", "problem": "p"}


def _setup(db_url: str, tmp_path: Path) -> Path:
    services = make_services(db_url)
    with unit_of_work(services.sessions) as session:
        for key, to in (("one", "a@example.com"), ("two", "b@example.com")):
            enqueue(
                session.connection(), key=key, channel="email", to=to, template="ticket_ack",
                language="en", context=CONTEXT, now=FIXED_NOW,
            )  # fmt: skip
        session.execute(update(OutboxMessage).where(OutboxMessage.id == 2).values(status="dead"))
        session.commit()
    services.close()
    config = tmp_path / "supportline.toml"
    config.write_text(
        f'[database]\nurl = "{db_url}"\n[email]\nmaildir = "{tmp_path / "outbox"}"\n',
        encoding="utf-8",
    )
    return config


def _run(config: Path, *args: str) -> Result:
    return CliRunner().invoke(
        cli, ["--config", str(config), "--now", FIXED_NOW.isoformat(), *args],
        catch_exceptions=False,
    )  # fmt: skip


def test_outbox_list_send_and_retry(db_url: str, tmp_path: Path) -> None:
    config = _setup(db_url, tmp_path)
    listed = json.loads(_run(config, "outbox", "list", "--json").output)
    assert [(r["id"], r["status"], r["to"]) for r in listed] == [
        (2, "dead", "b@example.com"),
        (1, "queued", "a@example.com"),
    ]
    assert set(listed[0]) >= {
        "id", "channel", "to", "subject", "body", "template", "status", "idempotency_key",
        "ticket_ref", "created_at", "sent_at",
    }  # fmt: skip

    sent = _run(config, "outbox", "send")
    assert sent.exit_code == 0 and "outbox: 1 sent" in sent.output
    assert len(list((tmp_path / "outbox" / "new").iterdir())) == 1

    again = _run(config, "outbox", "retry", "1")
    assert again.exit_code == 1 and "not sending it twice" in again.output

    revived = _run(config, "outbox", "retry", "2")
    assert revived.exit_code == 0 and "queued again (was dead)" in revived.output
    assert "1 sent" in _run(config, "outbox", "send").output
    after = json.loads(_run(config, "outbox", "list", "--status", "sent", "--json").output)
    assert [r["id"] for r in after] == [2, 1]
    assert after[1]["subject"] == "Re: x [SL-000003]" and after[1]["sent_at"]

    assert _run(config, "outbox", "retry", "99").exit_code == 1
    text = _run(config, "outbox", "list").output
    assert "#2" in text and "sent" in text


def test_serve_acknowledges_a_customer_mail_into_the_maildir(tmp_path: Path) -> None:
    http_port, smtp_port = free_port(), free_port()
    config = tmp_path / "supportline.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path}/sl.db"\n'
        f'[http]\nlisten = "127.0.0.1:{http_port}"\n'
        f'[smtp]\nlisten = "127.0.0.1:{smtp_port}"\n'
        f'[email]\nmaildir = "{tmp_path / "outbox"}"\n',
        encoding="utf-8",
    )
    subprocess.run([SUPPORTLINE, "--config", str(config), "db", "upgrade"], check=True)
    process = subprocess.Popen(
        [SUPPORTLINE, "--config", str(config), "serve"], cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        wait_for_http(f"http://127.0.0.1:{http_port}/healthz", process=process)
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as client:
            client.sendmail(
                "zw@huadong.example.cn", ["support@support.example.com"], customer_mail()
            )
        inbox = tmp_path / "outbox" / "new"
        deadline = time.monotonic() + 20
        while not (inbox.is_dir() and any(inbox.iterdir())):
            assert time.monotonic() < deadline, "no acknowledgement was written"
            time.sleep(0.1)
        (path,) = inbox.iterdir()
        assert b"SL-000001" in path.read_bytes()
    finally:
        output = stop(process)
    assert "outbox: 1 sent" in output and "outbox pass failed" not in output, output


def test_regression_retry_of_a_stuck_send_resent_it_unasked(db_url: str, tmp_path: Path) -> None:
    """Fixed in 81ab0e1: retrying a row a dead worker left sending resent it without asking."""
    config = _setup(db_url, tmp_path)
    services = make_services(db_url)
    with unit_of_work(services.sessions) as session:
        session.execute(
            update(OutboxMessage).where(OutboxMessage.id == 1)
            .values(status="sending", lease_until=FIXED_NOW)
        )  # fmt: skip
        session.execute(update(OutboxMessage).where(OutboxMessage.id == 2).values(status="bounced"))
        session.commit()
    retried = _run(config, "outbox", "retry", "1")
    assert retried.exit_code == 0 and "was sending" in retried.output
    with unit_of_work(services.sessions) as session:
        row = session.get_one(OutboxMessage, 1)
        assert (row.status, row.in_doubt) == ("queued", True)
    bounced = _run(config, "outbox", "retry", "2")
    assert bounced.exit_code == 1 and "not sending it twice" in bounced.output
    listed = json.loads(_run(config, "outbox", "list", "--status", "bounced", "--json").output)
    assert [r["id"] for r in listed] == [2]
    services.close()
