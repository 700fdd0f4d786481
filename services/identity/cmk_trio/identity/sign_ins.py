"""The slow part of signing in with a client secret, kept in bounds.

scrypt is made to be slow, so a flood of sign-ins with wrong secrets (which needs no
authentication at all) could keep every thread busy: it runs on a small pool of its own.
A sign-in attempt costs one slow hash at most, whatever the principal holds (a secret names
its own id; see TokenIssuer), and an attempt with nothing to check against is checked
against a stored form no secret matches, at the same cost, so that its answer takes as long.

At most `queue` checks may wait for the pool, and they are served fairly (FairTurns):
round-robin across tenants and, within a tenant, across clients; when the queue is full,
the check refused with SIGN_INS_BUSY (retry shortly) is the newest of whoever holds the
most of the queue. So one tenant's flood, or a flood against one tenant's client ids, waits
behind itself and never refuses another tenant's sign-in.

A client id whose secrets keep failing is slowed down: after `free_failures` failures within
`window`, each further slow check must wait a doubling pause after the last failure (up to
`max_pause`), counted from when that failure happened, not from when its attempt began;
earlier attempts are refused with SIGN_IN_THROTTLED without hashing anything. An attempt
counts at once when admitted (so that concurrent guesses cannot all pass before the first
has failed) and stays counted unless it succeeds. The pause cannot lock the real client out
for long (at most `max_pause` after the attacker's last failure), and a client whose secret
was verified lately is not slowed at all: its secret is recognised from memory (the
VerifiedSecretMemo) before any slow check. Replicas on one database count together (a
StoredLedger), so guesses spread over them are paused as if they had all come to one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Protocol

from cmk_trio.identity.crypto import SecretHasher
from cmk_trio.identity.model import SignInFailures
from cmk_trio.identity.storage import IdentityStore
from cmk_trio.rpckit.clock import Clock
from cmk_trio.rpckit.errors import ResourceExhausted
from cmk_trio.rpckit.reasons import Reason

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


class FairTurns:
    """Turns at the slow-hash pool: at most `workers` checks run at once and at most
    `capacity` wait. Waiting checks are served round-robin across tenants and, within a
    tenant, across clients. When the queue is full, the check refused (SIGN_INS_BUSY) is the
    newest of the client with the most checks waiting in the tenant with the most (the one
    arriving, on a tie): a tenant's first sign-in always finds a place while another tenant
    holds more of the queue than it does."""

    def __init__(self, workers: int, capacity: int) -> None:
        self._workers = workers
        self._capacity = capacity
        self._running = 0
        self._total = 0
        # tenant -> client -> its waiting checks, oldest first; dicts keep the serving order
        # (a tenant or client served moves to the end)
        self._waiting: dict[str, dict[str, deque[asyncio.Future[None]]]] = {}

    @contextlib.asynccontextmanager
    async def turn(self, client: Client) -> AsyncIterator[None]:
        """Wait for a turn (or be refused SIGN_INS_BUSY), hold it while inside."""
        if self._running < self._workers and self._total == 0:
            self._running += 1
        else:
            turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._enqueue(client, turn)
            try:
                await turn
            except BaseException:
                if turn.done() and not turn.cancelled() and turn.exception() is None:
                    self._pass_on()  # given the turn just as its caller went away
                else:
                    self._remove(client, turn)
                raise
        try:
            yield
        finally:
            self._pass_on()

    def _enqueue(self, client: Client, turn: asyncio.Future[None]) -> None:
        tenant, client_id = client
        self._waiting.setdefault(tenant, {}).setdefault(client_id, deque()).append(turn)
        self._total += 1
        if self._total <= self._capacity:
            return
        fullest = max(self._waiting, key=lambda t: (sum(map(len, self._waiting[t].values())), t == tenant))
        clients = self._waiting[fullest]
        busiest = max(clients, key=lambda c: (len(clients[c]), (fullest, c) == client))
        refused = clients[busiest].pop()
        self._forget_empty(fullest, busiest)
        if refused is turn:
            raise _busy()
        if not refused.done():
            refused.set_exception(_busy())

    def _remove(self, client: Client, turn: asyncio.Future[None]) -> None:
        tenant, client_id = client
        waiting = self._waiting.get(tenant, {}).get(client_id)
        if waiting is not None and turn in waiting:
            waiting.remove(turn)
            self._forget_empty(tenant, client_id)

    def _forget_empty(self, tenant: str, client_id: str) -> None:
        self._total -= 1
        clients = self._waiting[tenant]
        if not clients[client_id]:
            del clients[client_id]
        if not clients:
            del self._waiting[tenant]

    def _pass_on(self) -> None:
        """Give the finished turn to the next waiting check, or free it."""
        while self._waiting:
            tenant = next(iter(self._waiting))
            clients = self._waiting.pop(tenant)
            client_id = next(iter(clients))
            waiting = clients.pop(client_id)
            turn = waiting.popleft()
            self._total -= 1
            if waiting:
                clients[client_id] = waiting  # to the end: the tenant's other clients go first
            if clients:
                self._waiting[tenant] = clients  # to the end: the other tenants go first
            if not turn.done():  # (a cancelled one leaves on its own)
                turn.set_result(None)
                return
        self._running -= 1


def _busy() -> ResourceExhausted:
    return ResourceExhausted(
        Reason.SIGN_INS_BUSY,
        "too many sign-ins are being checked at once; retry in a moment",
        metadata={"retry_after_seconds": "1"},
    )


class SecretChecks:
    """scrypt hashing and verification on a bounded pool shared fairly, with per-client backoff."""

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
        self._turns = FairTurns(workers, queue)
        self._free = free_failures
        self.window = window
        self._max_pause = max_pause
        self.ledger: FailureLedger = ledger or MemoryLedger()
        """Where failures are counted (replaced by a StoredLedger when replicas share a database)."""

    async def _run(self, client: Client, work: Callable[..., object], *args: object) -> object:
        async with self._turns.turn(client):
            return await asyncio.get_running_loop().run_in_executor(self._pool, work, *args)

    async def hash(self, secret: str, salt: bytes, *, owner: Client) -> str:
        """The stored form of a new secret (with the salt given), hashed in the turn of
        `owner` (its tenant and principal), so that making secrets is shared fairly too."""
        return str(await self._run(owner, self.hasher.hash, secret, lambda _n: salt))

    async def check(self, client: Client, secret: str, encoded: str | None) -> bool:
        """Whether `secret` is the one whose stored form is `encoded`: one slow hash, if the
        client is not in its pause (else SIGN_IN_THROTTLED); a failure is counted when it
        happens, a success clears the count. With `encoded` None (an unknown client, or a
        secret id the client does not hold) a stored form no secret matches is checked, at
        the cost of a real one, so that the answer takes as long as for a real secret."""
        await self.admit(client)
        stored = encoded if encoded is not None else self.hasher.unmatchable()
        try:
            matched = await self._run(client, self.hasher.verify, secret, stored)
        except asyncio.CancelledError:
            # The caller left before the answer (its deadline): the attempt, counted when it
            # was admitted, failed now. Else guesses cancelled before their answers would
            # never move the pause on, and each would still cost a slow hash.
            await asyncio.shield(self.failed(client))
            raise
        if matched and encoded is not None:
            await self.succeeded(client)
            return True
        await self.failed(client)
        return False

    async def admit(self, client: Client) -> None:
        """Refuse (SIGN_IN_THROTTLED) a slow check for a client in its pause after failures;
        else count the attempt as a failure until it succeeds (so that concurrent guesses
        cannot all pass before the first of them has failed). The pause runs from the last
        failure as it happened (`failed`), not from when that attempt was admitted: a slow
        check must not use up the pause that follows it."""
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
            return SignInFailures(failures.first, failures.last, failures.count + 1)

        await self.ledger.update(client, count)

    async def failed(self, client: Client) -> None:
        """An admitted attempt failed now: the pause runs from here."""
        now = self._clock.now()

        def record(failures: SignInFailures | None) -> SignInFailures:
            if failures is None or now - failures.first > self.window:
                return SignInFailures(now, now)  # (cleared by a success meanwhile, or a new window)
            return SignInFailures(failures.first, max(failures.last, now), failures.count)

        await self.ledger.update(client, record)

    async def succeeded(self, client: Client) -> None:
        await self.ledger.update(client, lambda _failures: None)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
