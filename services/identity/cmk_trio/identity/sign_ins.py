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
VerifiedSecretMemo) before any slow check.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from cmk_trio.identity.crypto import SecretHasher
from cmk_trio.rpckit.clock import Clock
from cmk_trio.rpckit.errors import ResourceExhausted
from cmk_trio.rpckit.reasons import Reason


@dataclass
class _Failures:
    first: datetime
    last: datetime
    count: int = 1


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
        clients: int = 100_000,
    ) -> None:
        self.hasher = hasher
        self._clock = clock
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scrypt")
        self._queue = queue
        self._waiting = 0
        self._free = free_failures
        self._window = window
        self._max_pause = max_pause
        self._clients = clients
        self._failures: dict[tuple[str, str], _Failures] = {}

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

    def admit(self, client: tuple[str, str]) -> None:
        """Refuse (SIGN_IN_THROTTLED) a slow check for a client in its pause after failures;
        else count the attempt as a failure until it succeeds (so that concurrent guesses
        cannot all pass before the first of them has failed)."""
        now = self._clock.now()
        failures = self._failures.get(client)
        if failures is not None and now - failures.first > self._window:
            del self._failures[client]
            failures = None
        if failures is not None and failures.count >= self._free:
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
        self._count(client, now)

    async def verify(self, secret: str, encoded: str) -> bool:
        return bool(await self._run(self.hasher.verify, secret, encoded))

    def _count(self, client: tuple[str, str], now: datetime) -> None:
        failures = self._failures.get(client)
        if failures is None:
            if len(self._failures) >= self._clients:
                self._failures.clear()  # bounded: a flood of made-up client ids cannot grow it for ever
            self._failures[client] = _Failures(now, now)
        else:
            failures.count += 1
            failures.last = now

    def succeeded(self, client: tuple[str, str]) -> None:
        self._failures.pop(client, None)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
