"""The IMAP poller: one thread per ``[[imap.mailboxes]]`` entry, mail into inbound rows.

Per message, in this order (DESIGN.md "One hop at a time"): fetch with ``BODY.PEEK[]``
→ ``store_email`` commits the raw bytes → ``on_stored`` → MOVE to the processed folder
(or ``\\Flagged \\Seen`` where MOVE is missing) → advance the cursor. A crash before the
commit leaves the message where it was, unseen; a crash after it fetches the same bytes
again, which ``store_email`` maps to the row it already has. So the server keeps a
message until we hold it, and holding it twice is impossible.

Every IMAP call blocks; each poller owns its connection and runs in its own thread.
"""

from __future__ import annotations

import logging
import random
import select
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from imapclient import IMAPClient
from sqlalchemy import Engine

from gateway.channels.store import Stored, store_email
from storage.models import ImapCursor
from storage.uow import session_factory, unit_of_work
from workflow.clock import Clock
from workflow.settings import ImapMailbox

log = logging.getLogger(__name__)

# RFC 2177 section 3: a server may log out a client idle for 30 minutes, so the client
# must re-issue IDLE at least every 29 (IDLE_RENEW_LIMIT leaves room for a slow pass).
# The default is shorter because IDLE only reports changes made after it started:
# Dovecot 2.3 does not announce a message delivered between our SEARCH and the IDLE
# command until something else changes, so the renewal pass is what bounds its delay.
IDLE_RENEW_LIMIT_SECONDS = 25 * 60
IDLE_RENEW_SECONDS = 5 * 60
# How long one ``idle_check`` blocks: the bound on how late ``stop`` is noticed.
IDLE_SLICE_SECONDS = 1.0
POLL_SECONDS = 60.0
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 300.0
FETCH_BATCH = 20  # messages per FETCH: bounds memory, since a message may be 25 MB
TIMEOUT_SECONDS = 30.0
# Without MOVE the message stays in the folder, marked; \Flagged is what the next pass
# skips (SEARCH UNFLAGGED), \Seen keeps it out of a person's unread count.
PROCESSED_FLAGS = (b"\\Flagged", b"\\Seen")
SOURCE_LENGTH = 100  # inbound_messages.source is VARCHAR(100)

# The connection is gone (or never came): drop it and reconnect with backoff.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (IMAPClient.AbortError, OSError)


class ConnectionLost(ConnectionError):
    """The server hung up or said BYE while we were waiting in IDLE."""


Connect = Callable[[ImapMailbox], Any]


def mailbox_key(mailbox: ImapMailbox) -> str:
    """The cursor key and ``source`` suffix of one configured mailbox.

    >>> mailbox_key(ImapMailbox(host="imap.example.com", port=993, username="support"))
    'support@imap.example.com:993/INBOX'
    """
    return f"{mailbox.username}@{mailbox.host}:{mailbox.port}/{mailbox.folder}"


def backoff_delay(
    attempt: int,
    jitter: float,
    *,
    base: float = BACKOFF_BASE_SECONDS,
    cap: float = BACKOFF_CAP_SECONDS,
) -> float:
    """Seconds to wait before retry number ``attempt`` (1, 2, …), ``jitter`` in [0, 1).

    Exponential, capped, with half of it random ("equal jitter"): pollers that lost the
    same server at the same moment do not all come back in the same second, and none
    retries at once.

    >>> [backoff_delay(n, 0.0) for n in (1, 2, 3)], backoff_delay(30, 0.5)
    ([0.5, 1.0, 2.0], 225.0)
    """
    ceiling = min(cap, base * 2 ** min(attempt - 1, 62))
    return ceiling / 2 * (1 + jitter)


def open_client(
    mailbox: ImapMailbox,
    *,
    timeout: float = TIMEOUT_SECONDS,
    client_class: type[IMAPClient] = IMAPClient,
) -> IMAPClient:
    """A logged-in client for ``mailbox``; the socket timeout bounds every blocking call."""
    client = client_class(mailbox.host, port=mailbox.port, ssl=mailbox.ssl, timeout=timeout)
    try:
        client.login(mailbox.username, mailbox.password)
    except BaseException:
        client.shutdown()
        raise
    return client


def _chunks(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class ImapPoller:
    """Reads one mailbox's folder into ``inbound_messages``; see the module docstring.

    ``connect``, ``sleep`` and ``jitter`` are seams for tests: ``sleep(seconds)`` replaces
    the backoff wait (default: wait on the stop event), ``jitter()`` returns [0, 1).
    """

    def __init__(
        self,
        mailbox: ImapMailbox,
        engine: Engine,
        clock: Clock,
        on_stored: Callable[[int], None],
        *,
        connect: Connect | None = None,
        sleep: Callable[[float], None] | None = None,
        jitter: Callable[[], float] = random.random,
        poll_seconds: float = POLL_SECONDS,
        idle_renew_seconds: float = IDLE_RENEW_SECONDS,
        idle_slice_seconds: float = IDLE_SLICE_SECONDS,
        batch_size: int = FETCH_BATCH,
        backoff_base: float = BACKOFF_BASE_SECONDS,
        backoff_cap: float = BACKOFF_CAP_SECONDS,
    ) -> None:
        self.mailbox = mailbox
        self.engine = engine
        self.sessions = session_factory(engine)  # the mailbox's cursor
        self.clock = clock
        self.on_stored = on_stored
        self.key = mailbox_key(mailbox)
        self.source = f"imap:{self.key}"[:SOURCE_LENGTH]
        self._connect: Connect = connect or open_client
        self._sleep = sleep
        self._jitter = jitter
        self.poll_seconds = poll_seconds
        self.idle_renew_seconds = min(idle_renew_seconds, IDLE_RENEW_LIMIT_SECONDS)
        self.idle_slice_seconds = idle_slice_seconds
        self.batch_size = batch_size
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        # UIDs that were fetched but not stored and acknowledged on the last pass: they
        # are still in the folder, above the cursor, and the next pass tries them again.
        self.failed_uids: set[int] = set()
        self.idling = threading.Event()  # set while an IDLE command is running
        self._client: Any = None
        self._can_move = False
        self._can_idle = False

    # --- one pass -------------------------------------------------------------------

    def poll_once(self) -> int:
        """Fetches everything above the cursor; returns how many new rows were stored.

        Connection errors propagate (after dropping the connection) so ``run`` can
        reconnect; a single message's failure is logged, left in place and recorded in
        ``failed_uids`` for the next pass.
        """
        client = self._connected()
        try:
            return self._pass(client)
        except CONNECTION_ERRORS:
            self.disconnect(polite=False)
            raise

    def _connected(self) -> Any:
        if self._client is not None:
            return self._client
        client = self._connect(self.mailbox)
        try:
            self._can_move = bool(client.has_capability("MOVE"))
            self._can_idle = bool(client.has_capability("IDLE"))
            processed = self.mailbox.processed_folder
            if self._can_move and not client.folder_exists(processed):
                log.info("%s: creating the processed folder %s", self.key, processed)
                client.create_folder(processed)
        except BaseException:
            client.shutdown()
            raise
        self._client = client
        log.info(
            "%s: connected (%s, %s)",
            self.key,
            "IDLE" if self._can_idle else f"polling every {self.poll_seconds:g} s",
            "MOVE" if self._can_move else "no MOVE: flagging",
        )
        return client

    def _pass(self, client: Any) -> int:
        selected = client.select_folder(self.mailbox.folder)
        uidvalidity = int(selected[b"UIDVALIDITY"])
        last_uid = cursor_before = self._read_cursor(uidvalidity)
        # "n:*" always matches the highest UID, even below n (RFC 3501 section 6.4.8),
        # hence the filter.
        criteria: list[str] = ["UID", f"{last_uid + 1}:*"]
        if not self._can_move and (last_uid == 0 or self.failed_uids):
            # Without MOVE, what we acknowledged carries \Flagged. A scan from the start
            # (first run, new UIDVALIDITY), or past a message that failed and holds the
            # cursor back, skips those instead of fetching them on every pass. Otherwise
            # the cursor is enough, and a message a person flagged is still read.
            criteria.append("UNFLAGGED")
        uids = sorted(uid for uid in client.search(criteria) if uid > last_uid)
        stored = 0
        failed: set[int] = set()
        for batch in _chunks(uids, self.batch_size):
            bodies = self._fetch(client, batch)
            for uid in batch:
                result = self._ingest(client, uid, bodies.get(uid))
                if result is None:
                    failed.add(uid)
                    continue
                stored += result.created
                # The cursor only passes a UID once everything below it is done, so a
                # failed message is found again by "UID cursor+1:*".
                if not failed:
                    last_uid = uid
            if last_uid > cursor_before:
                self._write_cursor(uidvalidity, last_uid)
                cursor_before = last_uid
        self.failed_uids = failed
        return stored

    def _read_cursor(self, uidvalidity: int) -> int:
        with unit_of_work(self.sessions) as session:
            cursor = session.get(ImapCursor, self.key)
            if cursor is not None and cursor.uidvalidity == uidvalidity:
                return cursor.last_uid
            if cursor is None:
                cursor = ImapCursor(mailbox=self.key, uidvalidity=uidvalidity, last_uid=0)
                session.add(cursor)
            else:
                # RFC 3501 section 2.3.1.1: a new UIDVALIDITY means the old UIDs mean
                # nothing here any more. Rescan from the start; messages stored before
                # have the same bytes and map to their rows (store_email's content hash).
                log.warning(
                    "%s: UIDVALIDITY changed from %d to %d; rescanning the folder",
                    self.key,
                    cursor.uidvalidity,
                    uidvalidity,
                )
                cursor.uidvalidity = uidvalidity
                cursor.last_uid = 0
            cursor.updated_at = self.clock()
            session.commit()
            return 0

    def _write_cursor(self, uidvalidity: int, last_uid: int) -> None:
        with unit_of_work(self.sessions) as session:
            cursor = session.get(ImapCursor, self.key)
            if cursor is None or cursor.uidvalidity != uidvalidity:
                return  # changed under us by another process; the next pass rereads it
            cursor.last_uid = last_uid
            cursor.updated_at = self.clock()
            session.commit()

    def _fetch(self, client: Any, uids: Sequence[int]) -> dict[int, bytes]:
        """Raw bytes by UID. BODY.PEEK[] (RFC 3501 section 6.4.5) does not set \\Seen, so
        a message we fail to store looks untouched to everyone else."""
        try:
            response = client.fetch(list(uids), ["BODY.PEEK[]"])
        except CONNECTION_ERRORS:
            raise
        except IMAPClient.Error as exc:
            if len(uids) == 1:
                log.warning("%s: UID %d could not be fetched: %s", self.key, uids[0], exc)
                return {}
            # One unreadable message must not hold back the rest of the batch.
            log.warning("%s: batch FETCH failed (%s); fetching one by one", self.key, exc)
            bodies: dict[int, bytes] = {}
            for uid in uids:
                bodies.update(self._fetch(client, [uid]))
            return bodies
        return {
            uid: data[b"BODY[]"]
            for uid, data in response.items()
            if isinstance(data.get(b"BODY[]"), bytes)
        }

    def _ingest(self, client: Any, uid: int, raw: bytes | None) -> Stored | None:
        """Stores and acknowledges one message; ``None`` when it must be tried again."""
        if raw is None:
            log.warning("%s: UID %d came back without a body; retrying later", self.key, uid)
            return None
        try:
            stored = store_email(self.engine, raw, source=self.source, received_at=self.clock())
        except Exception:
            # Not committed, so not acknowledged: it stays in the folder, unseen.
            log.exception("%s: UID %d was not stored; it stays for the next pass", self.key, uid)
            return None
        if stored.created:
            try:
                self.on_stored(stored.inbound_id)
            except Exception:
                # The row is committed and the pipeline replays pending rows anyway.
                log.exception("%s: on_stored(%d) failed", self.key, stored.inbound_id)
        try:
            self._acknowledge(client, uid)
        except CONNECTION_ERRORS:
            raise
        except IMAPClient.Error as exc:
            # Stored but still in the folder: the next pass fetches the same bytes, which
            # map to the same row, and tries the move again.
            log.warning(
                "%s: UID %d stored as inbound %d but not moved: %s",
                self.key,
                uid,
                stored.inbound_id,
                exc,
            )
            return None
        return stored

    def _acknowledge(self, client: Any, uid: int) -> None:
        # Only ever after the commit (STYLE.md "store before you say yes").
        if self._can_move:
            client.move([uid], self.mailbox.processed_folder)  # RFC 6851
        else:
            client.add_flags([uid], PROCESSED_FLAGS, silent=True)

    def disconnect(self, *, polite: bool = True) -> None:
        """Closes the connection; ``polite`` says LOGOUT first (skipped after an error)."""
        client, self._client = self._client, None
        self.idling.clear()
        if client is None:
            return
        try:
            if polite:
                client.logout()
                return
        except Exception as exc:
            log.debug("%s: LOGOUT failed: %s", self.key, exc)
        try:
            client.shutdown()
        except Exception as exc:
            log.debug("%s: closing the socket failed: %s", self.key, exc)

    # --- the loop -------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Polls until ``stop`` is set, waiting in IDLE (or on a timer) between passes.

        Never raises for a server or database problem: it logs, backs off and retries,
        so one mailbox's trouble stays in its own thread.
        """
        attempt = 0
        try:
            while not stop.is_set():
                try:
                    stored = self.poll_once()
                    if stored:
                        log.info("%s: stored %d new messages", self.key, stored)
                    if self.failed_uids:
                        attempt += 1
                        delay = self._backoff(attempt)
                        log.warning(
                            "%s: %d messages left for the next pass in %.1f s",
                            self.key,
                            len(self.failed_uids),
                            delay,
                        )
                        self._pause(stop, delay)
                        continue
                    attempt = 0
                    self._wait_for_mail(stop)
                except Exception as exc:
                    self.disconnect(polite=False)
                    attempt += 1
                    delay = self._backoff(attempt)
                    if isinstance(exc, (*CONNECTION_ERRORS, IMAPClient.Error)):
                        log.warning("%s: %s; reconnecting in %.1f s", self.key, exc, delay)
                    else:
                        log.exception("%s: unexpected error; retrying in %.1f s", self.key, delay)
                    self._pause(stop, delay)
        finally:
            self.disconnect(polite=True)

    def _backoff(self, attempt: int) -> float:
        return backoff_delay(attempt, self._jitter(), base=self.backoff_base, cap=self.backoff_cap)

    def _pause(self, stop: threading.Event, seconds: float) -> None:
        if self._sleep is not None:
            self._sleep(seconds)
        else:
            stop.wait(seconds)

    def _wait_for_mail(self, stop: threading.Event) -> None:
        """Returns when new mail may have arrived, when IDLE is due for renewal, or on stop."""
        client = self._client
        if client is None:
            return
        if not self._can_idle:
            stop.wait(self.poll_seconds)
            return
        client.idle()  # RFC 2177
        self.idling.set()
        started = time.monotonic()
        try:
            while not stop.is_set():
                remaining = self.idle_renew_seconds - (time.monotonic() - started)
                if remaining <= 0:
                    break  # DONE and a new IDLE after the next pass, well inside 29 min
                if _news(self._idle_responses(client, min(self.idle_slice_seconds, remaining))):
                    break
        finally:
            self.idling.clear()
        client.idle_done()

    def _idle_responses(self, client: Any, timeout: float) -> list[Any]:
        responses: list[Any] = client.idle_check(timeout=timeout)
        if not responses and _readable(client):
            # idle_check reads until the socket has nothing more and returns [] for an
            # EOF too; readable with nothing to read a second time means the peer closed.
            responses = client.idle_check(timeout=0)
            if not responses:
                raise ConnectionLost("the server closed the connection during IDLE")
        for response in responses:
            if response and response[0] == b"BYE":
                raise ConnectionLost(f"the server said BYE during IDLE: {response!r}")
        return responses


def _readable(client: Any) -> bool:
    readable, _, _ = select.select([client.socket()], [], [], 0)
    return bool(readable)


def _news(responses: list[Any]) -> bool:
    """Whether IDLE responses announce new mail: ``* n EXISTS`` (RFC 3501 section 7.3.1).

    >>> _news([(b"OK", b"Still here")]), _news([(3, b"EXISTS")])
    (False, True)
    """
    return any(len(r) > 1 and r[1] == b"EXISTS" for r in responses)


# --- serve's helper -----------------------------------------------------------------


@dataclass
class RunningPollers:
    """The pollers ``start_pollers`` started; ``stop()`` ends them all."""

    pollers: list[ImapPoller]
    threads: list[threading.Thread]
    stop_event: threading.Event = field(default_factory=threading.Event)

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [thread.name for thread in self.threads if thread.is_alive()]
        if stuck:
            # Daemon threads: a server that stopped answering cannot hold up the exit.
            log.warning("IMAP pollers still blocked after %.0f s: %s", timeout, ", ".join(stuck))


def start_pollers(
    mailboxes: Sequence[ImapMailbox],
    engine: Engine,
    clock: Clock,
    on_stored: Callable[[int], None],
    **poller_options: Any,
) -> RunningPollers:
    """One thread per ``[[imap.mailboxes]]`` entry, each running ``ImapPoller.run``.

    ``on_stored`` is called from the poller's thread; ``poller_options`` go to each
    ``ImapPoller`` (tests shorten the timers).
    """
    running = RunningPollers([], [])
    for mailbox in mailboxes:
        poller = ImapPoller(mailbox, engine, clock, on_stored, **poller_options)
        thread = threading.Thread(
            target=_run_guarded,
            args=(poller, running.stop_event),
            name=f"imap {poller.key}",
            daemon=True,
        )
        running.pollers.append(poller)
        running.threads.append(thread)
        thread.start()
    return running


def _run_guarded(poller: ImapPoller, stop: threading.Event) -> None:
    try:
        poller.run(stop)
    except Exception:  # a bug in run itself; the other pollers carry on
        log.exception("%s: the poller stopped", poller.key)
