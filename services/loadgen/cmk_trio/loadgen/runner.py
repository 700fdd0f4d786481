"""Running a scenario under load and measuring it.

Closed loop: `concurrency` workers each send the next request when the previous answered.
Open loop: requests are started at a fixed `rate` whatever the answers; latency is measured
from each request's intended send time, so a stall shows up in the latencies of every
request it delayed (coordinated omission does not hide it).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

from cmk_trio.rpckit.errors import ServiceError
from cmk_trio.rpckit.status import status_code_of

MAX_LATENCY_US = 60_000_000  # one minute, in microseconds
PERCENTILES = (50.0, 90.0, 99.0, 99.9)

Request = Callable[[], Awaitable[object]]


@dataclass
class Result:
    """What a run measured."""

    scenario: str
    mode: str
    requests: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    histogram: HdrHistogram = field(default_factory=lambda: HdrHistogram(1, MAX_LATENCY_US, 3))

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def record(self, started: float, error: str | None) -> None:
        self.requests += 1
        micros = max(1, min(MAX_LATENCY_US, int((time.perf_counter() - started) * 1_000_000)))
        self.histogram.record_value(micros)
        if error is not None:
            self.errors[error] += 1

    def summary(self) -> dict[str, Any]:  # JSON for the report: figures, texts and a dict of latencies
        h = self.histogram
        latency = {f"p{p:g}": h.get_value_at_percentile(p) / 1000 for p in PERCENTILES}
        latency["max"] = h.get_max_value() / 1000
        return {
            "scenario": self.scenario,
            "mode": self.mode,
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "throughput_per_s": round(self.throughput, 1),
            "errors": dict(self.errors),
            "latency_ms": {k: round(v, 3) for k, v in latency.items()},
        }


async def _one(request: Request, result: Result, started: float, measuring: bool) -> None:
    error = None
    try:
        await request()
    except ServiceError as exc:
        error = f"{status_code_of(exc).name} {exc.reason.value}"
    except Exception as exc:  # a broken request is counted, not fatal to the run
        error = type(exc).__name__
    if measuring:
        result.record(started, error)


async def run_closed(
    request: Request,
    *,
    scenario: str,
    concurrency: int,
    duration: float | None,
    requests: int | None,
    warmup: float = 0.0,
    progress: Callable[[Result], None] | None = None,
) -> Result:
    """`concurrency` workers back to back, for `duration` seconds or `requests` requests."""
    result = Result(scenario, f"closed-loop x{concurrency}")
    if warmup > 0:
        warm_until = time.perf_counter() + warmup
        await asyncio.gather(*(_warm(request, warm_until) for _ in range(concurrency)))
    start = time.perf_counter()
    deadline = start + duration if duration else None
    budget = [requests if requests else None]

    async def worker() -> None:
        while True:
            if deadline is not None and time.perf_counter() >= deadline:
                return
            if budget[0] is not None:
                if budget[0] <= 0:
                    return
                budget[0] -= 1
            await _one(request, result, time.perf_counter(), True)

    reporter = asyncio.create_task(_report(result, start, progress)) if progress else None
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - start
    if reporter is not None:
        reporter.cancel()
    return result


async def run_open(
    request: Request,
    *,
    scenario: str,
    rate: float,
    duration: float | None,
    requests: int | None,
    warmup: float = 0.0,
    progress: Callable[[Result], None] | None = None,
) -> Result:
    """Start requests at `rate` per second; latency counts from each intended start."""
    result = Result(scenario, f"open-loop {rate:g}/s")
    interval = 1.0 / rate
    total = requests if requests else int((duration or 0) * rate)
    warm = int(warmup * rate)
    start = time.perf_counter()
    pending: set[asyncio.Task[None]] = set()
    reporter = asyncio.create_task(_report(result, start, progress)) if progress else None
    for i in range(warm + total):
        intended = start + i * interval
        delay = intended - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(_one(request, result, intended, i >= warm))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.gather(*pending)
    result.seconds = time.perf_counter() - start - warm * interval
    if reporter is not None:
        reporter.cancel()
    return result


async def _warm(request: Request, until: float) -> None:
    while time.perf_counter() < until:
        try:
            await request()
        except Exception:  # noqa: S112 (warm-up failures are not measured)
            continue


async def _report(result: Result, start: float, progress: Callable[[Result], None] | None) -> None:
    while progress is not None:
        await asyncio.sleep(1.0)
        result.seconds = time.perf_counter() - start
        progress(result)
