"""The IMAP poller against a real Dovecot (tests/integration/dovecot.py) and a migrated database."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from imapclient import IMAPClient
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

import gateway.channels.imap
from gateway.bootstrap import Services
from gateway.channels.imap import (
    ImapPoller,
    backoff_delay,
    mailbox_key,
    open_client,
    start_pollers,
)
from storage.models import ImapCursor, InboundMessage
from tests.conftest import FIXED_NOW, free_port, make_services
from workflow.settings import ImapMailbox

if TYPE_CHECKING:  # imported by pytest_plugins, after assertion rewriting is set up
    from tests.integration.dovecot import Dovecot

pytest_plugins = ["tests.integration.dovecot"]  # dovecot, dovecot_without_move, dovecot_plain
pytestmark = pytest.mark.dovecot


def mail(n: int, body: bytes = b"The printer jams on every page.") -> bytes:
    # CRLF throughout: Dovecot stores LF and hands back CRLF, so only CRLF mail is
    # returned byte for byte, which is what every real MTA delivers.
    return (
        b"From: Customer %d <customer%d@example.com>\r\n"
        b"To: support@support.example.com\r\n"
        b"Subject: Case %d\r\n"
        b"Message-ID: <case-%d@example.com>\r\n"
        b"\r\n%s\r\n" % (n, n, n, n, body)
    )


GB2312 = (
    b"From: =?gb2312?B?1cXI/Q==?= <zhangsan@example.cn>\r\n"
    b"To: support@support.example.com\r\n"
    # An unencoded 8-bit subject, as some clients send it.
    b"Subject: " + "打印机卡纸".encode("gb2312") + b"\r\n"
    b"Message-ID: <gb2312@example.cn>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=gb2312\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n" + "您好，打印机每页都卡纸。序列号：SN-20261127。\r\n".encode("gb2312")
)


class Crash(BaseException):
    """The process dies here: nothing in the poller may catch it."""


@pytest.fixture
def services(sqlite_url: str) -> Iterator[Services]:
    """SQLite only (conftest's runs on both); the first test below also runs on PostgreSQL."""
    built = make_services(sqlite_url)
    yield built
    built.close()


def mailbox_of(server: Dovecot, folder: str = "INBOX") -> ImapMailbox:
    return ImapMailbox(
        host=server.host,
        port=server.port,
        ssl=False,
        username=server.username,
        password=server.password,
        folder=folder,
    )


def make_poller(
    server: Dovecot,
    services: Services,
    stored: list[int],
    *,
    folder: str = "INBOX",
    client_class: type[IMAPClient] = IMAPClient,
    **options: Any,
) -> ImapPoller:
    def connect(mailbox: ImapMailbox) -> IMAPClient:
        return open_client(mailbox, timeout=10, client_class=client_class)

    poller = ImapPoller(
        mailbox_of(server, folder),
        services.engine,
        services.clock,
        stored.append,
        connect=connect,
        **options,
    )
    return poller


def inbound_rows(services: Services) -> list[InboundMessage]:
    with services.sessions() as session:
        return list(session.scalars(select(InboundMessage).order_by(InboundMessage.id)))


def cursor_of(services: Services, poller: ImapPoller) -> ImapCursor | None:
    with services.sessions() as session:
        return session.get(ImapCursor, poller.key)


def wait_until(condition: Callable[[], object], timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def running() -> Iterator[Callable[[ImapPoller], threading.Event]]:
    """Runs pollers in threads the way serve does; stops and joins them after the test."""
    started: list[tuple[threading.Thread, threading.Event]] = []

    def start(poller: ImapPoller) -> threading.Event:
        stop = threading.Event()
        thread = threading.Thread(target=poller.run, args=(stop,), daemon=True)
        thread.start()
        started.append((thread, stop))
        return stop

    yield start
    for thread, stop in started:
        stop.set()
        thread.join(5)
        assert not thread.is_alive(), "the poller did not honour stop"


# --- pure helpers ------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap_and_keeps_half_of_it_random() -> None:
    assert [backoff_delay(n, 0.0) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert [backoff_delay(n, 0.999) for n in (1, 2)] == pytest.approx([0.9995, 1.999])
    assert backoff_delay(10_000, 1.0, cap=300) == 300


def test_mailbox_key_names_user_server_and_folder() -> None:
    mailbox = ImapMailbox(host="imap.example.cn", port=143, username="kefu", folder="Support")
    assert mailbox_key(mailbox) == "kefu@imap.example.cn:143/Support"


# --- one pass ---------------------------------------------------------------------------


def test_new_mail_is_stored_then_moved_to_processed(dovecot: Dovecot, db_url: str) -> None:
    services = make_services(db_url)
    try:
        dovecot.append(mail(1))
        dovecot.append(mail(2))
        stored: list[int] = []
        poller = make_poller(dovecot, services, stored)

        assert poller.poll_once() == 2

        rows = inbound_rows(services)
        assert [row.raw for row in rows] == [mail(1), mail(2)]
        assert stored == [row.id for row in rows]
        source = f"imap:support@127.0.0.1:{dovecot.port}/INBOX"
        assert {(row.source, row.state, row.received_at) for row in rows} == {
            (source, "pending", FIXED_NOW)
        }
        assert dovecot.messages("INBOX") == []
        assert [m.raw for m in dovecot.messages("Processed")] == [mail(1), mail(2)]
        cursor = cursor_of(services, poller)
        assert cursor is not None
        assert (cursor.uidvalidity, cursor.last_uid) == (dovecot.uidvalidity(), 2)

        assert poller.poll_once() == 0  # nothing new, nothing twice
        assert len(inbound_rows(services)) == 2
        poller.disconnect()
    finally:
        services.close()


def test_gb2312_bytes_survive_byte_for_byte(dovecot: Dovecot, services: Services) -> None:
    dovecot.append(GB2312)
    poller = make_poller(dovecot, services, [])
    assert poller.poll_once() == 1
    (row,) = inbound_rows(services)
    assert row.raw == GB2312
    assert row.message_id == "<gb2312@example.cn>"
    poller.disconnect()


def test_fetching_in_batches_keeps_every_message(dovecot: Dovecot, services: Services) -> None:
    for n in range(5):
        dovecot.append(mail(n))
    poller = make_poller(dovecot, services, [], batch_size=2)
    assert poller.poll_once() == 5
    assert sorted(row.raw for row in inbound_rows(services)) == sorted(mail(n) for n in range(5))
    poller.disconnect()


class CrashOnMove(IMAPClient):
    def move(self, messages: Any, folder: Any) -> Any:
        raise Crash("the process died between the commit and the MOVE")


class HangUpOnFirstMove(IMAPClient):
    hung_up = False

    def move(self, messages: Any, folder: Any) -> Any:
        if not HangUpOnFirstMove.hung_up:
            HangUpOnFirstMove.hung_up = True
            self.shutdown()  # the connection dies under the MOVE
        return super().move(messages, folder)


def test_crash_between_commit_and_move_leaves_no_duplicate(
    dovecot: Dovecot, services: Services
) -> None:
    dovecot.append(mail(1))
    stored: list[int] = []
    crashing = make_poller(dovecot, services, stored, client_class=CrashOnMove)
    with pytest.raises(Crash):
        crashing.poll_once()
    crashing.disconnect(polite=False)
    assert len(inbound_rows(services)) == 1
    assert [m.raw for m in dovecot.messages("INBOX")] == [mail(1)]  # not acknowledged

    restarted = make_poller(dovecot, services, stored)  # a new process, same database
    assert restarted.poll_once() == 0

    (row,) = inbound_rows(services)
    assert stored == [row.id]  # on_stored once, by the run that created the row
    assert dovecot.messages("INBOX") == []
    assert [m.raw for m in dovecot.messages("Processed")] == [mail(1)]
    restarted.disconnect()


def test_connection_lost_during_move_is_retried_on_the_next_pass(
    dovecot: Dovecot, services: Services
) -> None:
    dovecot.append(mail(1))
    dovecot.append(mail(2))
    stored: list[int] = []
    HangUpOnFirstMove.hung_up = False
    poller = make_poller(dovecot, services, stored, client_class=HangUpOnFirstMove)
    with pytest.raises((OSError, IMAPClient.AbortError)):
        poller.poll_once()
    assert len(inbound_rows(services)) == 1

    assert poller.poll_once() == 1  # the second message; the first is found as stored

    rows = inbound_rows(services)
    assert [row.raw for row in rows] == [mail(1), mail(2)]
    assert stored == [row.id for row in rows]
    assert dovecot.messages("INBOX") == []
    assert len(dovecot.messages("Processed")) == 2
    poller.disconnect()


@pytest.mark.parametrize("failure", ["database unavailable", "crash"])
def test_failure_before_commit_leaves_the_message_unseen(
    dovecot: Dovecot, services: Services, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    uid = dovecot.append(mail(1))
    stored: list[int] = []

    def broken_store(*args: Any, **kwargs: Any) -> Any:
        if failure == "crash":
            raise Crash("the process died before the commit")
        raise OperationalError("INSERT", {}, Exception("database is unavailable"))

    monkeypatch.setattr(gateway.channels.imap, "store_email", broken_store)
    poller = make_poller(dovecot, services, stored)
    if failure == "crash":
        with pytest.raises(Crash):
            poller.poll_once()
        poller.disconnect(polite=False)
        poller = make_poller(dovecot, services, stored)
    else:
        assert poller.poll_once() == 0
        assert poller.failed_uids == {uid}

    assert inbound_rows(services) == []
    (left,) = dovecot.messages("INBOX")
    assert left.raw == mail(1)
    assert b"\\Seen" not in left.flags  # BODY.PEEK[] left it unread
    assert dovecot.messages("Processed") == []

    monkeypatch.undo()  # the database is back
    assert poller.poll_once() == 1
    assert poller.failed_uids == set()
    (row,) = inbound_rows(services)
    assert row.raw == mail(1)
    assert stored == [row.id]
    assert dovecot.messages("INBOX") == []
    poller.disconnect()


def test_uidvalidity_change_rescans_without_duplicates(
    dovecot: Dovecot, services: Services
) -> None:
    with dovecot.client() as imap:
        imap.create_folder("Support")
    dovecot.append(mail(1), folder="Support")
    dovecot.append(mail(2), folder="Support")
    stored: list[int] = []
    poller = make_poller(dovecot, services, stored, folder="Support")
    assert poller.poll_once() == 2
    before = cursor_of(services, poller)
    assert before is not None and before.last_uid == 2

    # The folder is rebuilt (a restore from backup, a migration): new UIDVALIDITY, UIDs
    # from 1 again, and one message comes back with the very same bytes.
    with dovecot.client() as imap:
        imap.delete_folder("Support")
        imap.create_folder("Support")
    dovecot.append(mail(2), folder="Support")  # UID 1 again
    dovecot.append(mail(3), folder="Support")  # UID 2, which the old cursor had passed
    dovecot.append(mail(4), folder="Support")  # UID 3

    stored_before = list(stored)
    for _ in range(2):  # the server may end the session whose folder it deleted
        try:
            assert poller.poll_once() == 2
            break
        except (OSError, IMAPClient.AbortError, IMAPClient.Error):
            continue

    after = cursor_of(services, poller)
    assert after is not None
    assert after.uidvalidity == dovecot.uidvalidity("Support") != before.uidvalidity
    assert after.last_uid == 3
    rows = inbound_rows(services)
    assert [row.raw for row in rows] == [mail(1), mail(2), mail(3), mail(4)]
    assert stored == stored_before + [rows[2].id, rows[3].id]  # mail(2) is not new
    assert dovecot.messages("Support") == []  # the repeated one was acknowledged too
    poller.disconnect()


class CountingFetches(IMAPClient):
    fetched: list[int] = []

    def fetch(self, messages: Any, data: Any, modifiers: Any = None) -> Any:
        CountingFetches.fetched.extend(messages)
        return super().fetch(messages, data, modifiers)


def test_without_move_messages_are_flagged_and_skipped_later(
    dovecot_without_move: Dovecot, services: Services
) -> None:
    server = dovecot_without_move
    server.append(mail(1))
    server.append(mail(2))
    stored: list[int] = []
    CountingFetches.fetched = []
    poller = make_poller(server, services, stored, client_class=CountingFetches)

    assert poller.poll_once() == 2
    inbox = server.messages("INBOX")
    assert [m.raw for m in inbox] == [mail(1), mail(2)]
    assert all({b"\\Flagged", b"\\Seen"} <= set(m.flags) for m in inbox)
    assert server.messages("Processed") == []

    # Even with the cursor lost (a new UIDVALIDITY would do the same), flagged messages
    # are not fetched again.
    with services.sessions() as session:
        session.delete(session.get(ImapCursor, poller.key))
        session.commit()
    server.append(mail(3))
    assert poller.poll_once() == 1
    assert CountingFetches.fetched == [1, 2, 3]
    assert [row.raw for row in inbound_rows(services)] == [mail(1), mail(2), mail(3)]
    assert len(stored) == 3
    poller.disconnect()


def test_without_move_a_message_flagged_by_a_person_is_still_read(
    dovecot_without_move: Dovecot, services: Services
) -> None:
    server = dovecot_without_move
    server.append(mail(1))
    poller = make_poller(server, services, [])
    assert poller.poll_once() == 1
    server.append(mail(2), flags=[b"\\Flagged"])  # marked by someone before we saw it
    assert poller.poll_once() == 1
    assert [row.raw for row in inbound_rows(services)] == [mail(1), mail(2)]
    poller.disconnect()


# --- the loop ---------------------------------------------------------------------------


def test_idle_wakes_the_poller_when_mail_arrives(
    dovecot: Dovecot, services: Services, running: Callable[[ImapPoller], threading.Event]
) -> None:
    stored: list[int] = []
    poller = make_poller(dovecot, services, stored, idle_slice_seconds=0.2)
    running(poller)
    wait_until(poller.idling.is_set)

    dovecot.append(mail(1))
    wait_until(lambda: len(stored) == 1, timeout=5)
    assert [row.raw for row in inbound_rows(services)] == [mail(1)]
    wait_until(lambda: dovecot.messages("INBOX") == [])


def test_idle_is_renewed_and_still_hears_new_mail(
    dovecot: Dovecot, services: Services, running: Callable[[ImapPoller], threading.Event]
) -> None:
    stored: list[int] = []
    idles = []

    class CountingIdle(IMAPClient):
        def idle(self) -> Any:
            idles.append(time.monotonic())
            return super().idle()

    poller = make_poller(
        dovecot,
        services,
        stored,
        client_class=CountingIdle,
        idle_renew_seconds=0.3,
        idle_slice_seconds=0.1,
    )
    running(poller)
    wait_until(lambda: len(idles) >= 3)  # DONE and IDLE again, on the same connection
    wait_until(poller.idling.is_set)
    dovecot.append(mail(1))
    wait_until(lambda: len(stored) == 1, timeout=5)


def test_without_idle_the_poller_polls(
    dovecot_plain: Dovecot, services: Services, running: Callable[[ImapPoller], threading.Event]
) -> None:
    server = dovecot_plain
    stored: list[int] = []
    poller = make_poller(server, services, stored, poll_seconds=0.2)
    running(poller)
    wait_until(lambda: cursor_of(services, poller) is not None)  # one pass done
    server.append(mail(1))
    wait_until(lambda: len(stored) == 1, timeout=5)
    assert not poller.idling.is_set()
    (left,) = server.messages("INBOX")  # no MOVE either: flagged in place
    assert b"\\Flagged" in left.flags


def test_reconnects_with_backoff_after_the_server_restarts(
    dovecot: Dovecot, services: Services, running: Callable[[ImapPoller], threading.Event]
) -> None:
    stored: list[int] = []
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(0.05)

    poller = make_poller(
        dovecot, services, stored, sleep=sleep, jitter=lambda: 0.5, idle_slice_seconds=0.2
    )
    running(poller)
    wait_until(poller.idling.is_set)

    dovecot.stop()
    wait_until(lambda: len(waits) >= 4)  # the IDLE connection lost, then refused ones
    dovecot.start()
    dovecot.append(mail(1))
    wait_until(lambda: len(stored) == 1, timeout=20)  # dovecot restarting, under load

    assert waits[:4] == [0.75, 1.5, 3.0, 6.0]  # base 1 s, doubling, jitter 0.5
    count = len(waits)
    wait_until(poller.idling.is_set)
    dovecot.append(mail(2))
    wait_until(lambda: len(stored) == 2, timeout=5)
    assert len(waits) == count  # connected again: no more backoff


def test_start_pollers_isolates_a_failing_mailbox_and_stops_cleanly(
    dovecot: Dovecot, sqlite_url: str
) -> None:
    good = {
        "host": dovecot.host,
        "port": dovecot.port,
        "ssl": False,
        "username": dovecot.username,
        "password": dovecot.password,
    }
    bad = dict(good, port=free_port())  # nothing listens there: refused for ever
    services = make_services(sqlite_url, imap={"mailboxes": [bad, good]})
    stored: list[int] = []
    dovecot.append(mail(1))
    pollers = start_pollers(
        services.settings.imap.mailboxes,
        services.engine,
        services.clock,
        stored.append,
        idle_slice_seconds=0.2,
    )
    try:
        assert len(pollers.threads) == 2
        wait_until(lambda: len(stored) == 1, timeout=5)
        assert all(thread.is_alive() for thread in pollers.threads)
    finally:
        started = time.monotonic()
        pollers.stop(timeout=5)
        services.close()
    assert time.monotonic() - started < 3
    assert not any(thread.is_alive() for thread in pollers.threads)
