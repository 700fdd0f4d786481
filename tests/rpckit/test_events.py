"""Following an event stream: in order, resuming after a failure, starting over after a gap."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from cmk_trio.rpckit.events import ChangeNotifier, EventFollower


@dataclass
class Ev:
    sequence: int


class Source:
    def __init__(self, events: list[int]) -> None:
        self.events = events
        self.opened: list[int] = []
        self.fail_after: int | None = None

    async def open(self, after: int):
        self.opened.append(after)
        for seq in self.events:
            if seq <= after:
                continue
            if self.fail_after is not None and seq > self.fail_after:
                self.fail_after = None
                raise ConnectionError("dropped")
            yield Ev(seq)
        await asyncio.sleep(3600)


async def _follow(source: Source, until: int) -> tuple[list[int], int]:
    applied: list[int] = []
    resets = 0

    async def apply(e: Ev) -> None:
        applied.append(e.sequence)

    async def reset() -> None:
        nonlocal resets
        resets += 1
        applied.clear()

    follower = EventFollower(source.open, apply, reset, retry_delay=0.001)
    task = asyncio.create_task(follower.run())
    try:
        await follower.wait_for(until, timeout=5)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return applied, resets


async def test_events_are_applied_in_order_and_resumed_with_the_cursor():
    source = Source([1, 2, 3, 4, 5])
    source.fail_after = 2
    applied, resets = await _follow(source, 5)
    assert applied == [1, 2, 3, 4, 5] and resets == 0
    assert source.opened == [0, 2]


async def test_a_gap_drops_everything_and_starts_over():
    source = Source([1, 2, 4, 5])  # 3 is missing

    async def heal() -> None:
        await asyncio.sleep(0.05)
        source.events = [1, 2, 3, 4, 5]

    healer = asyncio.create_task(heal())
    applied, resets = await _follow(source, 5)
    await healer
    assert resets >= 1 and applied == [1, 2, 3, 4, 5]
    assert source.opened[:2] == [0, 0]


async def test_the_notifier_wakes_waiters_and_times_out():
    notifier = ChangeNotifier()
    seen = notifier.version
    waiter = asyncio.create_task(notifier.wait(seen, timeout=5))
    await asyncio.sleep(0)
    await notifier.notify()
    assert await waiter == seen + 1
    assert await notifier.wait(seen + 1, timeout=0.01) == seen + 1
