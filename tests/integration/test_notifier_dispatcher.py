"""The outbox itself: one row per key, leases, crashed workers, concurrent dispatchers."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from datetime import datetime

import pytest
from sqlalchemy import func, select

from gateway.bootstrap import Services
from notifier.dispatcher import Dispatcher
from notifier.dispatcher_thread import DispatcherThread
from notifier.errors import UnknownOutcome
from notifier.recording import PassReport
from notifier.transports import build_renderer
from storage.models import OutboxMessage
from storage.outbox import enqueue
from storage.uow import unit_of_work
from tests.conftest import FIXED_NOW, MutableClock, make_services


class RecordingEmail:
    """An email transport that counts what it was asked to send (thread-safe)."""

    name = "recording"

    def __init__(self, delay: float = 0.0, fail_with: Exception | None = None) -> None:
        self.sent: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.delay = delay
        self.fail_with = fail_with

    def send(self, data: bytes, sender: str, recipients: list[str], message_id: str) -> str:
        if self.fail_with is not None:
            raise self.fail_with
        if self.delay:
            time.sleep(self.delay)
        with self.lock:
            self.sent[message_id] += 1
        return message_id

    def close(self) -> None:
        pass


def dispatcher(services: Services, email: RecordingEmail, clock=None, seed: int = 1) -> Dispatcher:
    return Dispatcher(
        services.sessions,
        services.settings,
        clock or services.clock,
        build_renderer(services.settings),
        email,
        services.sms_transport(),
        rng=random.Random(seed),
    )


CONTEXT = {"ref": "SL-000001", "subject": "Re: x", "requester_name": "", "problem": "p"}


def queue(services: Services, count: int, now: datetime = FIXED_NOW) -> None:
    with unit_of_work(services.sessions) as session:
        for i in range(count):
            enqueue(
                session.connection(), key=f"bulk:{i}", channel="email", to=f"c{i}@example.com",
                template="ticket_ack", language="en", context=CONTEXT, now=now,
            )  # fmt: skip
        session.commit()


def statuses(services: Services) -> dict[str, int]:
    with unit_of_work(services.sessions) as session:
        rows = session.execute(
            select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
        ).all()
    return {status: count for status, count in rows}


def test_the_same_key_again_is_a_no_op_not_a_second_row(db_url: str) -> None:
    services = make_services(db_url)
    with unit_of_work(services.sessions) as session:
        first = enqueue(
            session.connection(), key="ticket:1:ack", channel="email", to="a@example.com",
            template="ticket_ack", language="en", context=CONTEXT, now=FIXED_NOW,
        )  # fmt: skip
        again = enqueue(
            session.connection(), key="ticket:1:ack", channel="email", to="other@example.com",
            template="ticket_ack", language="en", context={}, now=FIXED_NOW,
        )  # fmt: skip
        session.commit()
    assert first == (first[0], True) and again == (first[0], False)
    with unit_of_work(services.sessions) as session:
        only = session.scalars(select(OutboxMessage)).one()
    services.close()
    assert only.to_address == "a@example.com"


def test_claims_are_leased_and_an_expired_lease_is_taken_again(db_url: str) -> None:
    clock = MutableClock(FIXED_NOW)
    services = make_services(db_url, notifier={"lease_seconds": 60})
    queue(services, 3)
    email = RecordingEmail()
    crashed = dispatcher(services, email, clock)
    first = crashed.claim(2)
    assert [c.attempts for c in first] == [1, 1] and not any(c.in_doubt for c in first)
    rescuer = dispatcher(services, email, clock)
    clock.advance(seconds=30)
    assert [c.id for c in rescuer.claim(10)] == [3]  # leased rows are not offered twice
    clock.advance(seconds=31)  # the first worker died: its lease runs out, not row 3's
    again = rescuer.claim(10)
    assert [c.id for c in again] == [1, 2]
    assert all(c.in_doubt and c.attempts == 2 for c in again)
    services.close()


def test_the_dead_workers_late_outcome_does_not_overwrite(sqlite_url: str) -> None:
    clock = MutableClock(FIXED_NOW)
    services = make_services(sqlite_url, notifier={"lease_seconds": 60})
    queue(services, 1)
    slow = dispatcher(services, RecordingEmail(), clock)
    fast = dispatcher(services, RecordingEmail(), clock)
    (late,) = slow.claim(1)
    clock.advance(seconds=61)
    assert fast.run_pass().sent == 1
    slow.email = RecordingEmail(fail_with=UnknownOutcome("timed out"))
    slow.record([slow.attempt(late)], PassReport())
    with unit_of_work(services.sessions) as session:
        kept = session.get_one(OutboxMessage, 1)
    services.close()
    assert kept.status == "sent" and kept.attempts == 2


def test_backoff_doubles_is_capped_and_jittered(sqlite_url: str) -> None:
    services = make_services(
        sqlite_url, notifier={"backoff_base_seconds": 10, "backoff_max_seconds": 300}
    )
    d = dispatcher(services, RecordingEmail(), seed=7)
    delays = [d.backoff(n).total_seconds() for n in range(1, 9)]
    services.close()
    caps = [10, 20, 40, 80, 160, 300, 300, 300]
    assert all(cap / 2 <= delay <= cap for delay, cap in zip(delays, caps, strict=True))
    assert len({round(d / c, 6) for d, c in zip(delays, caps, strict=True)}) > 1  # jittered


@pytest.mark.postgres
def test_two_dispatchers_on_postgresql_send_1000_rows_exactly_once(db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("SKIP LOCKED is the PostgreSQL path; SQLite has a single claimer")
    first = make_services(db_url, notifier={"batch_size": 25})
    queue(first, 1000)
    second = make_services(db_url, notifier={"batch_size": 25})
    email = RecordingEmail(delay=0.0002)
    workers = [dispatcher(first, email, seed=1), dispatcher(second, email, seed=2)]
    reports = []
    threads = [threading.Thread(target=lambda w=w: reports.append(w.run_pass())) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    counts = statuses(first)
    first.close()
    second.close()
    assert counts == {"sent": 1000}
    assert len(email.sent) == 1000 and set(email.sent.values()) == {1}
    assert sorted(r.sent for r in reports) != [0, 1000]  # both took a share


def test_regression_slow_batch_sent_sms_whose_lease_was_taken(db_url: str) -> None:
    """Fixed in 81ab0e1: a slow batch sent an SMS whose lease another dispatcher had taken."""
    clock = MutableClock(FIXED_NOW)
    services = make_services(db_url, notifier={"lease_seconds": 60})
    queue(services, 2)
    email = RecordingEmail()
    slow = dispatcher(services, email, clock)
    first, second = slow.claim(2)
    clock.advance(seconds=50)
    assert slow._renew_lease(first)  # still A's: its lease now runs 60 s from here
    clock.advance(seconds=11)  # second's lease has run out, first's has not
    rescuer = dispatcher(services, email, clock)
    assert [c.id for c in rescuer.claim(10)] == [second.id]  # first's lease was renewed
    assert not slow._renew_lease(second)  # B owns it now
    services.close()


def test_while_intake_is_busy_the_dispatcher_thread_sends_a_batch_at_a_time(
    sqlite_url: str,
) -> None:
    services = make_services(sqlite_url, notifier={"batch_size": 2})
    queue(services, 6)
    email = RecordingEmail()
    intake_busy = threading.Event()
    intake_busy.set()
    thread = DispatcherThread(
        dispatcher(services, email), services.engine, 0.05, intake_busy.is_set
    )
    thread.YIELD_SECONDS = 2.0
    thread.start()

    def sent() -> int:
        with email.lock:
            return sum(email.sent.values())

    try:
        deadline = time.monotonic() + 10
        while sent() < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.5)
        assert sent() == 2  # one batch, then it gives way
        intake_busy.clear()  # intake done: the rest goes out after the pause in hand
        while sent() < 6 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sent() == 6
    finally:
        thread.stop()
        services.close()
