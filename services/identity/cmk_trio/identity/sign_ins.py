"""The slow part of signing in with a client secret, kept in bounds.

scrypt is made to be slow, so a flood of sign-ins with wrong secrets (which needs no
authentication at all) could keep every thread busy: it runs on a small pool of its own,
and at most `queue` checks may wait for that pool; beyond it a sign-in is refused at once
with SIGN_INS_BUSY (retry shortly). A client id whose secrets keep failing is slowed down:
after `free_failures` failures within `window`, each further slow check must wait a
doubling pause after the last failure (up to `max_pause`); earlier attempts are refused
with SIGN_IN_THROTTLED without hashing anything. The pause cannot lock the real client out
for long (at most `max_pause` after the attacker's last attempt), and a client whose secret
was verified lately is not slowed at all: its secret is recognised from memory (the
VerifiedSecretMemo) before any slow check. Replicas on one database count together (a
StoredLedger), so guesses spread over them are paused as if they had all come to one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from cmk_trio.identity.crypto import SecretHasher
from cmk_trio.rpckit.clock import Clock
from cmk_trio.rpckit.errors import ResourceExhausted
from cmk_trio.rpckit.reasons import Reason

if TYPE_CHECKING:
    from cmk_trio.identity.storage import IdentityStore


@dataclass(frozen=True)
class SignInFailures:
    """A client id's failed slow checks within the current window."""

    first: datetime
    last: datetime
    count: int = 1


Client = tuple[str, str]
"""(tenant id, client id)."""
Change = Callable[[SignInFailures | None], SignInFailures | None]


class FailureLedger(Protocol):
    """Where the failures are counted: in this process (one process per database), or in the
    database, so that replicas count together and guesses spread over them are paused as if
    they had all come to one."""

    async def update(self, client: Client, change: Change) -> None:
        """Replace the client's record by `change(record)` (None: no record), atomically with
        respect to every other update of any process; if `change` raises, nothing changes."""
        ...


class MemoryLedger:
    """Failures counted in this process, for at most `clients` client ids at once (a flood of
    made-up ids cannot grow it for ever)."""

    def __init__(self, clients: int = 100_000) -> None:
        self._clients = clients
        self._failures: dict[Client, SignInFailures] = {}

    async def update(self, client: Client, change: Change) -> None:
        new = change(self._failures.get(client))
        if new is None:
            self._failures.pop(client, None)
            return
        if client not in self._failures and len(self._failures) >= self._clients:
            self._failures.clear()
        self._failures[client] = new


class StoredLedger:
    """Failures counted in the identity store, shared by every replica (write transactions
    run one at a time, so a read-and-count is atomic across them). Records older than the
    window are swept now and then."""

    SWEEP_EVERY = 256

    def __init__(self, store: IdentityStore, clock: Clock, window: timedelta) -> None:
        self._store = store
        self._clock = clock
        self._window = window
        self._updates = 0

    async def update(self, client: Client, change: Change) -> None:
        self._updates += 1
        async with self._store.unit_of_work() as uow:
            await uow.put_sign_in_failures(client, change(await uow.sign_in_failures(client)))
            if self._updates % self.SWEEP_EVERY == 0:
                await uow.delete_sign_in_failures_before(self._clock.now() - self._window)


class SecretChecks:
    """scrypt hashing and verification on a bounded pool, with per-client backoff."""

    def __init__(
        self,
        hasher: SecretHasher,
        clock: Clock,
        *,
        workers: int = 2,
        queue: int = 64,
        free_failures: int = 5,
        window: timedelta = timedelta(minutes=5),
        max_pause: timedelta = timedelta(seconds=30),
        ledger: FailureLedger | None = None,
    ) -> None:
        self.hasher = hasher
        self._clock = clock
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scrypt")
        self._queue = queue
        self._waiting = 0
        self._free = free_failures
        self.window = window
        self._max_pause = max_pause
        self.ledger: FailureLedger = ledger or MemoryLedger()
        """Where failures are counted (replaced by a StoredLedger when replicas share a database)."""

    async def _run(self, work: object, *args: object) -> object:
        if self._waiting >= self._queue:
            raise ResourceExhausted(
                Reason.SIGN_INS_BUSY,
                "too many sign-ins are being checked at once; retry in a moment",
                metadata={"retry_after_seconds": "1"},
            )
        self._waiting += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, work, *args)  # type: ignore[arg-type]
        finally:
            self._waiting -= 1

    async def hash(self, secret: str, salt: bytes) -> str:
        """The stored form of a new secret (with the salt given)."""
        return str(await self._run(self.hasher.hash, secret, lambda _n: salt))

    async def admit(self, client: Client) -> None:
        """Refuse (SIGN_IN_THROTTLED) a slow check for a client in its pause after failures;
        else count the attempt as a failure until it succeeds (so that concurrent guesses
        cannot all pass before the first of them has failed)."""
        now = self._clock.now()

        def count(failures: SignInFailures | None) -> SignInFailures:
            if failures is not None and now - failures.first > self.window:
                failures = None
            if failures is None:
                return SignInFailures(now, now)
            if failures.count >= self._free:
                doublings = min(failures.count - self._free, 16)  # (the pause is capped long before)
                pause = min(self._max_pause, timedelta(seconds=2**doublings))
                wait = failures.last + pause - now
                if wait > timedelta(0):
                    seconds = max(1, int(wait.total_seconds() + 0.999))
                    raise ResourceExhausted(
                        Reason.SIGN_IN_THROTTLED,
                        f"too many failed sign-ins for this client; retry in {seconds} s",
                        metadata={"retry_after_seconds": str(seconds)},
                    )
            return SignInFailures(failures.first, now, failures.count + 1)

        await self.ledger.update(client, count)

    async def verify(self, secret: str, encoded: str) -> bool:
        return bool(await self._run(self.hasher.verify, secret, encoded))

    async def succeeded(self, client: Client) -> None:
        await self.ledger.update(client, lambda _failures: None)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
