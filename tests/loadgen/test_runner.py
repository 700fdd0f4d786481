"""The load runner: counts, errors by status and reason, and latency from the intended send
time in open loop (so a stall is not hidden by coordinated omission).

No assertion here depends on how fast the machine is: a stall is made by the test (an event
another request sets, or a loop blocked on purpose), and latencies are only bounded from
below by the intervals of the schedule, which a slower machine can only lengthen."""

from __future__ import annotations

import asyncio
import time

from cmk_trio.loadgen.runner import run_closed, run_open
from cmk_trio.rpckit.errors import PermissionDenied
from cmk_trio.rpckit.reasons import Reason

RATE = 200  # requests per second: one intended every 5 ms
INTERVAL_MS = 1000 / RATE


async def test_closed_loop_counts_requests_and_errors_by_reason():
    calls = [0]

    async def request() -> None:
        calls[0] += 1
        if calls[0] % 5 == 0:
            raise PermissionDenied(Reason.FORBIDDEN_BY_POLICY, "no")

    result = await run_closed(request, scenario="t", concurrency=4, duration=None, requests=50)
    summary = result.summary()
    assert summary["requests"] == 50 and summary["errors"] == {"PERMISSION_DENIED FORBIDDEN_BY_POLICY": 10}
    assert set(summary["latency_ms"]) == {"p50", "p90", "p99", "p99.9", "max"}


async def test_open_loop_starts_requests_while_one_is_stalled_and_reports_the_stall():
    released = asyncio.Event()
    started: list[int] = []
    answered: list[int] = []

    async def request() -> None:
        number = len(started)
        started.append(number)
        if number == 0:
            await released.wait()  # the first request answers only once the 50th has started
        elif number == 49:
            released.set()
        answered.append(number)

    # A closed loop of one would wait for the first answer forever; the open loop goes on
    # starting requests on schedule, and the 50th releases the first.
    result = await asyncio.wait_for(run_open(request, scenario="t", rate=RATE, duration=None, requests=100), 30)
    summary = result.summary()
    assert (summary["requests"], summary["errors"]) == (100, {})
    assert answered.index(0) > answered.index(49)  # the 49 after it were not held up behind it
    # It answered after the 50th request's intended start, and is measured from its own.
    assert summary["latency_ms"]["max"] >= 49 * INTERVAL_MS


async def test_open_loop_counts_the_time_a_late_request_waited_to_be_sent():
    first = [True]

    async def request() -> None:
        if first[0]:
            first[0] = False
            time.sleep(0.3)  # noqa: ASYNC251 (blocks the loop on purpose: every send is late)

    result = await run_open(request, scenario="t", rate=RATE, duration=None, requests=100)
    # Request i was meant to start at i * 5 ms but could not start before 300 ms: its latency
    # is at least 300 - 5 i ms. So requests 0 to 20, the slowest 21 of 100, took at least
    # 200 ms, and so did the 80th percentile; a runner timing from the actual send (coordinated
    # omission) would have reported them as fast as the rest.
    assert result.requests == 100
    assert result.histogram.get_value_at_percentile(80) >= 200_000  # microseconds
