"""Following a resumable event stream: apply events in order, reconnect with the cursor
after a failure, and start over (dropping every cache) after a gap in the sequence."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

E = TypeVar("E")


MAX_RETRY_DELAY = 0.5
"""The longest wait between tries to reopen a stream. While the stream is not current the
consumer fails closed (REVOCATIONS_UNKNOWN), so each second of backoff past the peer's return
is a second of refusals: a try costs one call to a peer on the same network, and the waits are
drawn at random (jitter) so that replicas do not try in step. With waits growing to 5 s, the
vault and speech refused for 3-4 s after PostgreSQL came back under identity."""


def jittered(delay: float) -> float:
    """A wait between half of `delay` and `delay`."""
    return delay * (0.5 + random.random() / 2)  # noqa: S311 (spreading retries, not a secret)


class EventFollower(Generic[E]):
    """Reads a stream that `open_stream(after_sequence)` opens, forever.

    `apply(event)` is called for each event in sequence order. If an event's sequence is not
    the cursor plus one, events were missed: `reset()` is called (the consumer drops all it
    cached) and the stream is read again from the start, so that state derived from events
    (such as a revocation set) is rebuilt whole.
    """

    def __init__(
        self,
        open_stream: Callable[[int], AsyncIterator[E]],
        apply: Callable[[E], Awaitable[None]],
        reset: Callable[[], Awaitable[None]],
        *,
        sequence_of: Callable[[E], int] = lambda e: e.sequence,  # type: ignore[attr-defined]
        retry_delay: float = 0.2,
        max_retry_delay: float = MAX_RETRY_DELAY,
    ) -> None:
        self._open = open_stream
        self._apply = apply
        self._reset = reset
        self._sequence_of = sequence_of
        self._retry_delay = retry_delay
        self._max_retry_delay = max_retry_delay
        self.cursor = 0
        self.resets = 0
        self.connected = asyncio.Event()
        self._advanced = asyncio.Condition()

    async def run(self) -> None:
        """Follow the stream until cancelled."""
        delay = self._retry_delay
        while True:
            try:
                stream = self._open(self.cursor)
                self.connected.set()
                async for event in stream:
                    sequence = self._sequence_of(event)
                    if sequence != self.cursor + 1:
                        log.warning("event stream gap", extra={"cursor": self.cursor, "got": sequence})
                        await self._start_over()
                        await asyncio.sleep(jittered(delay))  # a stream that keeps skipping must not spin us
                        delay = min(delay * 2, self._max_retry_delay)
                        break
                    await self._apply(event)
                    self.cursor = sequence
                    delay = self._retry_delay
                    async with self._advanced:
                        self._advanced.notify_all()
                else:
                    # The server ended the stream (shutting down): reconnect with the cursor.
                    self.connected.clear()
                    await asyncio.sleep(jittered(delay))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.connected.clear()
                log.info("event stream interrupted; reconnecting", extra={"error": type(exc).__name__})
                await asyncio.sleep(jittered(delay))
                delay = min(delay * 2, self._max_retry_delay)

    async def _start_over(self) -> None:
        self.resets += 1
        await self._reset()
        self.cursor = 0

    async def wait_for(self, sequence: int, timeout: float = 5.0) -> None:  # noqa: ASYNC109 (a bounded wait is the point)
        """Wait until the event with `sequence` has been applied (for tests and read-your-writes)."""
        async with asyncio.timeout(timeout):
            async with self._advanced:
                await self._advanced.wait_for(lambda: self.cursor >= sequence)


STALE_POLL = 0.25
"""How often a waiter looks again while its notifier is not current (its change signal is
lost, so nothing would wake it)."""


class ChangeNotifier:
    """A version that goes up with every change, and wakes whoever waits for one: the
    servers' stream handlers, and the read caches that key on it.

    A notifier fed by a signal from other processes (PostgreSQL's LISTEN/NOTIFY) is `current`
    only while that signal is: when it is lost, `cache_version()` never returns the same value
    twice, so no cache serves anything read before (fail closed), and waiters poll."""

    def __init__(self) -> None:
        self._version = 0
        self._waiters: set[asyncio.Future[None]] = set()
        self._uncached = 0
        self.current = True

    def bump(self) -> None:
        """Something changed: raise the version and wake every waiter."""
        self._version += 1
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    async def notify(self) -> None:
        self.bump()

    def set_current(self, current: bool) -> None:
        """Whether the signal this notifier follows is live; either way, what was read before
        is not to be trusted."""
        self.current = current
        self.bump()

    async def wait(self, seen: int, timeout: float) -> int:  # noqa: ASYNC109 (the heartbeat interval)
        """Wait until something changed after version `seen` (or the timeout); returns the
        current version, to pass as `seen` next time."""
        if self._version != seen:
            return self._version
        if not self.current:
            timeout = min(timeout, STALE_POLL)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            pass
        finally:
            self._waiters.discard(waiter)
        return self._version

    @property
    def version(self) -> int:
        return self._version

    def cache_version(self) -> int:
        """What a read cache keys on: the version while the notifier is current, and a value
        never seen before (nothing cached is served) while it is not."""
        if self.current:
            return self._version
        self._uncached -= 1
        return self._uncached


Item = TypeVar("Item")


async def tail(
    fetch: Callable[[int, int], Awaitable[Sequence[Item]]],
    sequence_of: Callable[[Item], int],
    notifier: ChangeNotifier,
    after: int,
    *,
    batch: int = 500,
    heartbeat: float = 15.0,
    idle_item: Callable[[], Item] | None = None,
) -> AsyncIterator[Item]:
    """Every item after `after` from `fetch(cursor, limit)`, then new ones as `notifier`
    announces them: the server side of a resumable stream. With `idle_item`, the stream sends
    that once it has caught up with the head (so its reader knows it has all there was), and
    again whenever it had nothing to send for `heartbeat` seconds (so its reader knows it is
    alive)."""
    cursor = after
    caught_up = False
    while True:
        seen = notifier.version  # read before the query, so that no commit slips between
        items = await fetch(cursor, batch)
        for item in items:
            yield item
            cursor = sequence_of(item)
        if len(items) < batch and idle_item is not None and not caught_up:
            caught_up = True
            yield idle_item()
        if len(items) < batch and await notifier.wait(seen, heartbeat) == seen and idle_item is not None:
            yield idle_item()
