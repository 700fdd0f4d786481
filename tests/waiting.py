"""Waiting in a test for something an event brings about (a revocation, a rotation followed).

The services under test run on a FakeClock that the waiting does not move, so no cache can
expire and nothing but the event can bring the change about: the test checks the mechanism.
The wall-clock bound is only a guard against hanging on a broken mechanism, not a speed
claim; how fast revocation is, is measured by the benchmark suite (bench/run.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

HANG_GUARD_S = 15.0


async def eventually(check: Callable[[], Awaitable[T | None]], what: str) -> T:
    """Call `check` until it returns something other than None, and return that."""
    deadline = time.monotonic() + HANG_GUARD_S
    while (got := await check()) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not seen after {HANG_GUARD_S:g} s; the event did not arrive")
        await asyncio.sleep(0.01)
    return got
