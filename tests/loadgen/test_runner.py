"""The load runner: counts, errors by status and reason, and latency from the intended send
time in open loop (so a stall is not hidden by coordinated omission)."""

from __future__ import annotations

import asyncio

from cmk_trio.loadgen.runner import run_closed, run_open
from cmk_trio.rpckit.errors import PermissionDenied
from cmk_trio.rpckit.reasons import Reason


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


async def test_open_loop_measures_from_the_intended_send_time():
    stalled = [False]

    async def request() -> None:
        if not stalled[0]:
            stalled[0] = True
            await asyncio.sleep(0.3)  # one slow answer...

    # ...does not delay the others in open loop, but every request the stall overlaps would
    # have waited in a closed loop of one; the open loop reports the slow one truthfully.
    result = await run_open(request, scenario="t", rate=200, duration=None, requests=100)
    summary = result.summary()
    assert summary["requests"] == 100 and summary["latency_ms"]["max"] >= 250
    assert summary["latency_ms"]["p50"] < 100
