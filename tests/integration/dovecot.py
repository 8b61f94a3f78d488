"""A throwaway Dovecot IMAP server per test (recipe: /work/shared/testing/dovecot.md).

Fixtures: ``dovecot``, ``dovecot_without_move``, ``dovecot_plain`` and ``dovecot_factory``.
A test module loads them with ``pytest_plugins = ["tests.integration.dovecot"]`` (or the root
conftest does, for every module). Without Debian's ``dovecot-imapd`` the tests are skipped, except
under ``CI=true``, where a missing server is a failure: CI must never go green by skipping.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from imapclient import IMAPClient

from tests.conftest import free_port

# Dovecot's defaults after login include IDLE (RFC 2177) and MOVE (RFC 6851); this list
# is what a server without MOVE looks like, so the poller must fall back to flags.
WITHOUT_MOVE = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT LITERAL+ UIDPLUS UNSELECT"
# Neither MOVE nor IDLE: the poller must poll on a timer.
PLAIN_IMAP = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE LITERAL+ UIDPLUS"

MAIL_UID = 65534  # Dovecot refuses mail users with UID 0; 65534 is "nobody"
CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
# IDLE hears of new mail through inotify; where the machine's inotify instances are
# spent, Dovecot falls back to looking every 30 s, longer than any test waits.
mailbox_idle_check_interval = 1 secs
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 0
passdb {{
  driver = passwd-file
  args = {d}/passwd
}}
userdb {{
  driver = passwd-file
  args = {d}/passwd
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
namespace inbox {{
  inbox = yes
  mailbox Processed {{
    auto = create
  }}
}}
"""


def dovecot_binary() -> str:
    """The path of ``dovecot``; skips the test, or fails it under CI, when it is missing."""
    found = shutil.which("dovecot") or shutil.which("dovecot", path="/usr/sbin:/sbin")
    problem = None
    if found is None:
        problem = "Dovecot is not installed (apt-get install -y dovecot-imapd)"
    elif os.geteuid() != 0:
        problem = "the throwaway Dovecot recipe runs as root (see testing/dovecot.md)"
    if problem is None:
        assert found is not None
        return found
    if os.environ.get("CI") == "true":
        pytest.fail(f"IMAP tests need Dovecot under CI: {problem}")
    pytest.skip(problem)


@dataclass(frozen=True)
class FolderMessage:
    uid: int
    flags: tuple[bytes, ...]
    raw: bytes


@dataclass
class Dovecot:
    """One running Dovecot with one user; ``stop()``/``start()`` restart it on its port."""

    binary: str
    directory: Path
    port: int
    imap_capability: str | None = None
    host: str = "127.0.0.1"
    username: str = "support"
    password: str = "secret"
    running: bool = field(default=False, init=False)

    @property
    def config_path(self) -> Path:
        return self.directory / "dovecot.conf"

    def write_config(self) -> None:
        d = self.directory
        (d / "mail" / self.username).mkdir(parents=True, exist_ok=True)
        home = d / "mail" / self.username
        (d / "passwd").write_text(
            f"{self.username}:{{PLAIN}}{self.password}:{MAIL_UID}:{MAIL_UID}::{home}\n"
        )
        config = CONFIG.format(d=d, port=self.port)
        if self.imap_capability is not None:
            config += f"imap_capability = {self.imap_capability}\n"
        self.config_path.write_text(config)
        for path in (d / "mail", *(d / "mail").rglob("*")):
            os.chown(path, MAIL_UID, MAIL_UID)
        d.chmod(0o755)  # the login process runs as dovenull and must read its way in

    def start(self, timeout: float = 10.0) -> None:
        # Output to a file, not a pipe: the daemon would keep a pipe open and run() wait.
        output = self.directory / "dovecot.out"
        with output.open("wb") as sink:
            started = subprocess.run(
                [self.binary, "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                timeout=timeout,
            )
        self.running = True
        if started.returncode != 0:
            raise RuntimeError(f"dovecot did not start: {output.read_text()}{self.log()}")
        deadline = time.monotonic() + timeout
        while True:  # it daemonises before its listener is up
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as probe:
                    if probe.recv(100).startswith(b"* OK"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"Dovecot did not start:\n{self.log()}")
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        """Stops the server and its sessions, as a restart would: clients see EOF.

        Dovecot's master leaves running ``imap`` sessions (and ``log``, ``stats``) behind
        when it gets SIGTERM, so they are stopped one by one, by process id.
        """
        pid_file = self.directory / "run" / "master.pid"
        if not pid_file.exists():
            return
        master = int(pid_file.read_text().split()[0])
        pids = [master, *_descendants(master)]
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while any(map(_alive, pids)) and time.monotonic() < deadline:
            time.sleep(0.02)
        for pid in filter(_alive, pids):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.running = False

    def log(self) -> str:
        path = self.directory / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    @contextmanager
    def client(self) -> Iterator[IMAPClient]:
        """A logged-in client of the test itself (not the poller's)."""
        imap = IMAPClient(self.host, port=self.port, ssl=False, timeout=10)
        try:
            imap.login(self.username, self.password)
            yield imap
        finally:
            try:
                imap.logout()
            except Exception:
                imap.shutdown()

    def append(self, raw: bytes, folder: str = "INBOX", flags: Sequence[bytes] = ()) -> int:
        """Delivers ``raw`` byte for byte and returns its UID (RFC 4315 APPENDUID)."""
        with self.client() as imap:
            response = imap.append(folder, raw, flags=tuple(flags))
        match = re.search(rb"APPENDUID \d+ (\d+)", response)
        assert match, response
        return int(match.group(1))

    def messages(self, folder: str = "INBOX") -> list[FolderMessage]:
        """The folder's messages in UID order, read with PEEK so nothing changes."""
        with self.client() as imap:
            imap.select_folder(folder, readonly=True)
            uids = imap.search(["ALL"])
            fetched = imap.fetch(uids, ["FLAGS", "BODY.PEEK[]"]) if uids else {}
        return [
            FolderMessage(uid, tuple(data[b"FLAGS"]), data[b"BODY[]"])
            for uid, data in sorted(fetched.items())
        ]

    def uidvalidity(self, folder: str = "INBOX") -> int:
        with self.client() as imap:
            return int(imap.folder_status(folder, ["UIDVALIDITY"])[b"UIDVALIDITY"])


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"  # a zombie has exited


def _descendants(root: int) -> list[int]:
    """Process ids below ``root``, read from /proc (Linux, like the Dovecot recipe)."""
    children: dict[int, list[int]] = {}
    for stat_path in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_path.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat_path.parent.name))
    found: list[int] = []
    queue = [root]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


@pytest.fixture
def dovecot_factory() -> Iterator[Callable[..., Dovecot]]:
    """Starts Dovecots on demand (``factory(imap_capability=WITHOUT_MOVE)``); stops them all."""
    binary = dovecot_binary()
    started: list[Dovecot] = []
    # Not pytest's tmp_path: its parents are mode 0700, and Dovecot's unprivileged
    # processes must be able to walk into the directory.
    base = Path(tempfile.mkdtemp(prefix="dovecot-"))

    def factory(imap_capability: str | None = None) -> Dovecot:
        directory = base / str(len(started))
        directory.mkdir()
        server = Dovecot(binary, directory, free_port(), imap_capability)
        server.write_config()
        base.chmod(0o755)
        started.append(server)
        server.start()
        return server

    try:
        yield factory
    finally:
        for server in started:
            server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def dovecot(dovecot_factory: Callable[..., Dovecot]) -> Dovecot:
    """Dovecot as Debian ships it: IDLE, MOVE and UIDPLUS advertised."""
    return dovecot_factory()


@pytest.fixture
def dovecot_without_move(dovecot_factory: Callable[..., Dovecot]) -> Dovecot:
    """A server that does not advertise MOVE (RFC 6851) but still offers IDLE."""
    return dovecot_factory(WITHOUT_MOVE)


@pytest.fixture
def dovecot_plain(dovecot_factory: Callable[..., Dovecot]) -> Dovecot:
    """A server with neither MOVE nor IDLE: the poller flags and polls on a timer."""
    return dovecot_factory(PLAIN_IMAP)
