"""The scale step of the benchmark suite: a trio of its own filled with many resources and
applications through the public API, then measured: list pagination latency, database size,
the service process's memory (RSS) and its start-up time on the full data."""

from __future__ import annotations

import asyncio
import functools
import random
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from cmk_trio.loadgen.scenarios import CONFIG, Prepared

CONCURRENCY = 32
CMK_EVERY = 10
"""Every tenth resource is encrypted with the customer-managed key, the rest with
Microsoft-managed keys: start-up and listing see both kinds."""
PAGE_SIZE = 100
SAMPLED_RESOURCES = 50


def database_mib(data_dir: Path) -> dict[str, float]:
    """Each service's SQLite file with its WAL sidecars, in MiB."""
    sizes: dict[str, float] = {}
    for path in data_dir.glob("*.db*"):
        service = path.name.split(".db")[0]
        sizes[service] = sizes.get(service, 0.0) + path.stat().st_size / 2**20
    return {k: round(v, 2) for k, v in sorted(sizes.items())}


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    """p50, p99 and max of some milliseconds (the suite's few-sample measures)."""
    ordered = sorted(samples_ms)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))]

    return {"p50_ms": round(at(0.5), 2), "p99_ms": round(at(0.99), 2), "max_ms": round(ordered[-1], 2)}


async def _bounded(jobs: list[Callable[[], Awaitable[Any]]]) -> list[Any]:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(job: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            return await job()

    return await asyncio.gather(*(one(j) for j in jobs))


async def fill(prepared: Prepared, resources: int, applications: int) -> dict[str, Any]:
    """`resources` resources in the prepared subscription, each with `applications`
    applications; returns what was made and how long it took."""
    subscription = prepared.app_cmk.split("/")[2]
    started = time.perf_counter()

    async def resource(i: int) -> str:
        made = await prepared.speech.create_resource(subscription, "scale", f"scale-{i:05d}", "westeurope")
        if i % CMK_EVERY == 0:
            await prepared.speech.set_encryption(made.name, key_uri=prepared.key_id, key_subscription_id=subscription)
        return made.name

    names: list[str] = await _bounded([functools.partial(resource, i) for i in range(resources)])
    made_resources = time.perf_counter()
    await _bounded([
        functools.partial(prepared.speech.create_application, name, f"app-{j}", CONFIG)
        for name in names for j in range(applications)
    ])  # fmt: skip
    done = time.perf_counter()
    return {
        "resources": resources,
        "applications_per_resource": applications,
        "customer_managed_resources": len(range(0, resources, CMK_EVERY)),
        "resources_per_s": round(resources / (made_resources - started), 1),
        "applications_per_s": round(resources * applications / (done - made_resources), 1),
        "names": names,
    }


async def paginate(prepared: Prepared, names: list[str]) -> dict[str, Any]:
    """Every page of the subscription's resources, and every page of the applications of a
    sample of resources (keyset pagination: the last page should cost what the first does)."""
    subscription = prepared.app_cmk.split("/")[2]
    resource_pages: list[float] = []
    token, listed = "", 0
    while True:
        started = time.perf_counter()
        page = await prepared.speech.list_resources(subscription, page_token=token, page_size=PAGE_SIZE)
        resource_pages.append((time.perf_counter() - started) * 1000)
        listed += len(page.resources)
        token = page.next_page_token
        if not token:
            break
    app_pages: list[float] = []
    apps_listed = 0
    sample = random.Random(7).sample(names, min(SAMPLED_RESOURCES, len(names)))  # noqa: S311 (repeatable)
    for name in sample:
        token = ""
        while True:
            started = time.perf_counter()
            apps = await prepared.speech.list_applications(name, page_size=PAGE_SIZE // 4, page_token=token)
            app_pages.append((time.perf_counter() - started) * 1000)
            apps_listed += len(apps.applications)
            token = apps.next_page_token
            if not token:
                break
    return {
        "resources_listed": listed,
        "resource_pages": {"pages": len(resource_pages), "page_size": PAGE_SIZE, **percentiles(resource_pages)},
        "applications_listed": apps_listed,
        "application_pages": {"pages": len(app_pages), "page_size": PAGE_SIZE // 4, **percentiles(app_pages)},
    }


async def restart(
    process: subprocess.Popen[str],
    start: Callable[[], tuple[subprocess.Popen[str], dict[str, Any]]],
    ready: Callable[[dict[str, Any]], Awaitable[None]],
) -> tuple[subprocess.Popen[str], dict[str, Any], dict[str, float]]:
    """Stop the trio and start it again on the same data: seconds to its banner (listening)
    and to its first answered read (serving the data)."""
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
    started = time.perf_counter()
    process, banner = start()
    listening = time.perf_counter()
    await ready(banner)
    serving = time.perf_counter()
    return process, banner, {"listening_s": round(listening - started, 2), "first_read_s": round(serving - started, 2)}
