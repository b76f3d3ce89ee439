"""A real PostgreSQL for the tests: Debian's ``initdb``/``pg_ctl`` on a temporary data dir,
listening on a free loopback port (and a socket in the data dir's parent), started once per
session and always stopped. Each test gets a database of its own (``CREATE DATABASE …
TEMPLATE template0``), so tests never see each other's rows.

Fixtures (imported by ``tests/conftest.py``, so every test module can ask for them):
``postgres_server`` (the session's server) and ``postgres_url`` (a fresh database's URL).
When no PostgreSQL binaries are installed they skip, saying how to get them. And
``pgbouncer``: Debian's PgBouncer in front of the session's server, in transaction mode
with few server connections (so clients share them as they would in production).
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

USER = "flowhost"
PASSWORD_USER = "needs_password"
PGBOUNCER_SKIP = ("no pgbouncer: install Debian's `pgbouncer` (python3 scripts/dev.py test "
                  "does, as root with apt-get)")
SKIP_REASON = ("no PostgreSQL server binaries (initdb, pg_ctl): install Debian's `postgresql` "
               "(python3 scripts/dev.py test does, as root with apt-get)")


def pg_bin_dir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are: on PATH, or Debian's newest versioned dir."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).parent
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                            key=lambda p: int(Path(p).parent.name)
                            if Path(p).parent.name.isdigit() else 0, reverse=True):
        if (Path(candidate) / "pg_ctl").exists() and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_server_user() -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the ``postgres`` user."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--"]
    return []


@dataclass
class PostgresServer:
    bin_dir: Path
    base: Path  # holds data/, the socket and the log
    port: int = 0
    # False (tests): fsync off, a test database need not survive a power cut (commits stay
    # real). True (benchmarks): PostgreSQL's defaults, every commit flushed to disk.
    durable: bool = False

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def log(self) -> Path:
        return self.base / "server.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*_as_server_user(), *args], capture_output=True, text=True,
                              check=check, timeout=120)

    def init(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        if _as_server_user():
            shutil.chown(self.base, "postgres", "postgres")
        # trust on loopback: a throwaway server that only this machine's tests reach
        self._run(str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", USER,
                  "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")
        # but for PASSWORD_USER, who must give a password (tests of how one is passed on)
        # (first: the first rule that matches counts; root may write the server's files)
        hba = self.data / "pg_hba.conf"
        hba.write_text(f"host all {PASSWORD_USER} 127.0.0.1/32 scram-sha-256\n"
                       + hba.read_text())

    def start(self) -> None:
        """Start on a free port; a port taken meanwhile by someone else is tried again."""
        for _ in range(5):
            self.port = free_port()
            options = (f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 "
                       "-c max_connections=200" + ("" if self.durable else " -c fsync=off"))
            started = self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-l",
                                str(self.log), "-o", options, "-w", "-t", "60", "start",
                                check=False)
            if started.returncode == 0:
                return
            log = self.log.read_text("utf-8", "replace") if self.log.exists() else ""
            if "already in use" not in log:
                raise RuntimeError(f"pg_ctl start failed: {started.stderr}\n{log[-3000:]}")
        raise RuntimeError("no free port for PostgreSQL after 5 tries")

    def stop(self) -> None:
        if self.data.exists():
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                      "-w", "stop", check=False)

    def create_password_database(self, password: str) -> str:
        """A new database owned by ``PASSWORD_USER``, who logs in with ``password``; its
        URL (without the password)."""
        import psycopg

        name = "p_" + uuid.uuid4().hex[:16]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s",
                                  (PASSWORD_USER,)).fetchone()
            if exists is None:
                conn.execute(f"CREATE ROLE {PASSWORD_USER} LOGIN")
            conn.execute(f"ALTER ROLE {PASSWORD_USER} PASSWORD '{password}'")
            conn.execute(f'CREATE DATABASE "{name}" OWNER {PASSWORD_USER} TEMPLATE template0')
        return f"postgresql://{PASSWORD_USER}@127.0.0.1:{self.port}/{name}"

    def create_database(self) -> str:
        """A new, empty database; its URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:16]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.url(name)


@contextlib.contextmanager
def running_server(*, durable: bool = False) -> Iterator[PostgresServer]:
    """A started server in a new temporary dir; stopped and removed afterwards."""
    bin_dir = pg_bin_dir()
    if bin_dir is None:
        pytest.skip(SKIP_REASON)
    base = Path(tempfile.mkdtemp(prefix="flowhost-pg-"))
    server = PostgresServer(bin_dir, base, durable=durable)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    pytest.importorskip("psycopg", reason="psycopg is not installed: pip install "
                        "'flowhost[postgres]'")
    with running_server() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of a fresh database on the session's server."""
    return postgres_server.create_database()


@dataclass
class PgBouncer:
    """PgBouncer in front of ``server`` (``pool_mode = transaction``), in ``base``."""

    server: PostgresServer
    base: Path
    pool_size: int = 3
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    def url(self, database_url: str) -> str:
        """``database_url`` (a database of ``server``) reached through the pooler, with
        flowhost told that the pooler is in transaction mode."""
        name = database_url.rsplit("/", 1)[1]
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{name}?pooler=transaction"

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / "users.txt").write_text(f'"{USER}" ""\n')
        for _ in range(5):
            self.port = free_port()
            config = self.base / "pgbouncer.ini"
            config.write_text(
                "[databases]\n"
                f"* = host=127.0.0.1 port={self.server.port}\n"
                "[pgbouncer]\n"
                f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
                f"auth_type = trust\nauth_file = {self.base / 'users.txt'}\n"
                f"pool_mode = transaction\ndefault_pool_size = {self.pool_size}\n"
                "max_client_conn = 500\nserver_reset_query =\n"
                f"logfile = {self.base / 'pgbouncer.log'}\n")
            if _as_server_user():
                shutil.chown(self.base, "postgres", "postgres")
                for child in self.base.iterdir():
                    shutil.chown(child, "postgres", "postgres")
            # (PgBouncer, like PostgreSQL, refuses to run as root)
            self.process = subprocess.Popen([*_as_server_user(), pgbouncer_binary(), str(config)],
                                            stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL)
            if self._listening():
                return
            self.stop()
        raise RuntimeError(f"pgbouncer did not start: {self.log()[-3000:]}")

    def _listening(self) -> bool:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                return False
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=0.5):
                return True
            time.sleep(0.05)
        return False

    def log(self) -> str:
        path = self.base / "pgbouncer.log"
        return path.read_text("utf-8", "replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def pgbouncer_binary() -> str:
    """Debian puts it in /usr/sbin, which a user's PATH may lack ("" when absent)."""
    found = shutil.which("pgbouncer")
    return found or ("/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else "")


@pytest.fixture(scope="session")
def pgbouncer(postgres_server: PostgresServer) -> Iterator[PgBouncer]:
    if not pgbouncer_binary():
        pytest.skip(PGBOUNCER_SKIP)
    pooler = PgBouncer(postgres_server, postgres_server.base / "pgbouncer")
    try:
        pooler.start()
        yield pooler
    finally:
        pooler.stop()


def flowhost_cli(*args: str, cwd: Path, env: dict[str, str] | None = None,
                 timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The real ``flowhost`` CLI in a subprocess (for the PostgreSQL tests: a module named
    ``conftest`` may be another directory's when the whole suite runs)."""
    return subprocess.run([sys.executable, "-m", "flowhost", *args], cwd=cwd,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout, check=False)


DAEMON_READY = re.compile(r"^flowhost serve: listening on (?P<address>\S+)")


def start_daemon(store_url: str, cwd: Path, state_dir: Path, log: Path, *args: str,
                 env: dict[str, str] | None = None, timeout: float = 60
                 ) -> tuple[subprocess.Popen[str], str]:
    """``flowhost serve --store store_url`` in a subprocess (``env`` added to this one's),
    once it listens: the process and its gRPC address (its stderr appended to ``log``)."""
    with log.open("ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flowhost", "serve", "--store", store_url,
             "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", *args],
            cwd=cwd, stdout=subprocess.PIPE, stderr=err, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "FLOWHOST_STATE_DIR": str(state_dir),
                 **(env or {})})
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if selector.select(timeout=0.1) and (
                found := DAEMON_READY.match(proc.stdout.readline())):
            return proc, found["address"]
    proc.kill()
    proc.communicate()
    raise AssertionError(f"the daemon did not start:\n{log.read_text()[-3000:]}")


def stop_daemons(started: list[subprocess.Popen[str]]) -> None:
    """SIGKILL those still running; close the pipes of all."""
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        elif proc.stdout is not None:
            proc.stdout.close()


def wait_for_text(path: Path, text: str, timeout: float = 60) -> None:
    """Until ``text`` is in the file at ``path`` (a journal a plugin appends to)."""
    deadline = time.monotonic() + timeout
    while text not in (path.read_text() if path.exists() else ""):
        assert time.monotonic() < deadline, f"{text!r} never appeared in {path}"
        time.sleep(0.05)


def finished_steps(store_url: str, run_ids: list[str]) -> dict[str, list[str]]:
    """The step ids of every StepFinished in each run's journal, sorted (a step that ran
    again after it had finished shows twice)."""
    from flowhost import events as ev
    from flowhost.store.postgres import PostgresStore

    with PostgresStore.open(store_url, create=False) as store:
        return {run_id: sorted(e.step_id for e in store.events(store.run(run_id))
                               if isinstance(e, ev.StepFinished)) for run_id in run_ids}
