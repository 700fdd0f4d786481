"""A PostgreSQL server of the test's own, to kill: initdb into a scratch directory, then the
postmaster on a free loopback port in a process group of its own, so that `kill9()` takes it
and every backend at once, as a crash of its host or container does. Restarted on the same
directory, it runs crash recovery and answers "the database system is starting up" (57P03)
until it accepts connections again. (The machine's own server is shared; this one is not.)"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import asyncpg

from tests.faults.harness import free_port

BIN = Path(os.environ.get("CMK_TEST_POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))
SETPRIV = shutil.which("setpriv") or "/usr/bin/setpriv"


def available() -> str | None:
    """Why a scratch server cannot run here, or None."""
    if not (BIN / "initdb").exists() or not (BIN / "postgres").exists():
        return f"no PostgreSQL server binaries in {BIN} (CMK_TEST_POSTGRES_BIN)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root, and there is no postgres user to run the server as"
        if not Path(SETPRIV).exists():
            return "running as root, and there is no setpriv (util-linux) to run the server as postgres"
    return None


class ScratchPostgres:
    """One server in a directory of its own; stop() removes it."""

    def __init__(self) -> None:
        # Not under the test's tmp_path: root's is closed to the postgres user.
        self.root = Path(tempfile.mkdtemp(prefix="cmk-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.log = self.root / "postgres.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._user = "postgres" if os.geteuid() == 0 else None
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_server_user(self, argv: list[str]) -> list[str]:
        """The command run as the postgres user by setpriv, which execs it in place. Not
        subprocess's user=: with it Python must fork() instead of vfork(), and a fork() of a
        process in which gRPC has threads runs gRPC's fork handlers in the child, which can crash
        it before the exec (CI saw initdb "die" of SIGSEGV so, grpc/grpc#13998)."""
        if self._user is None:
            return argv
        return [SETPRIV, f"--reuid={self._user}", f"--regid={self._user}", "--init-groups", "--", *argv]

    def init(self) -> None:
        subprocess.run(
            self._as_server_user(
                [str(BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                 "--no-instructions"]),
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                self._as_server_user(
                    [str(BIN / "postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.root),
                     "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200", "-c", "fsync=on"]),
                stdout=log, stderr=log, start_new_session=True,
            )  # fmt: skip

    def kill9(self) -> None:
        """SIGKILL to the postmaster and every backend at once."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        time.sleep(0.1)  # the backends' exits reaped by init

    async def accepting(self, guard: float = 60.0) -> float:
        """Seconds until a connection and a query succeed (a hang guard, not a speed claim)."""
        started = time.monotonic()
        while True:
            try:
                conn = await asyncpg.connect(self.url, timeout=1)
                try:
                    await conn.fetchval("SELECT 1")
                    return time.monotonic() - started
                finally:
                    await conn.close()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                if time.monotonic() - started > guard:
                    raise AssertionError(
                        f"the scratch PostgreSQL is not accepting after {guard:g} s; see {self.log}"
                    ) from None
                await asyncio.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)
