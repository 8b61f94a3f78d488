"""The benchmark's baseline: aiosmtpd that parses with the stdlib and inserts one row.

What any intake must do at the least — receive, parse, commit — with nothing of ours.
Run as ``python -m bench.baseline_smtp PORT DB_PATH``; stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import email
import email.policy
import signal
import sqlite3
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


class ParseAndInsert:
    def __init__(self, db_path: str) -> None:
        self.db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS mail"
            " (id INTEGER PRIMARY KEY, subject TEXT, body TEXT, raw BLOB)"
        )
        self.lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        message = email.message_from_bytes(raw, policy=email.policy.default)
        part = message.get_body(("plain", "html"))
        body = part.get_content() if part is not None else ""
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute(
                "INSERT INTO mail (subject, body, raw) VALUES (?, ?, ?)",
                (str(message["subject"] or ""), body, raw),
            )
            self.db.execute("COMMIT")
        return "250 OK"


def main() -> None:
    port, db_path = int(sys.argv[1]), sys.argv[2]
    controller = Controller(
        ParseAndInsert(db_path), hostname="127.0.0.1", port=port, data_size_limit=26_214_400
    )
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
