"""Another tenant's latency under a flood (issue 22, item 6), measured on a real trio.

The review held 1,500 calls in flight from one client against a trio under `cmk up`, more
than its whole cap of 1,000, and tenant A's calls were refused TOO_MANY_CALLS while tenant B
flooded its own principal list, while an anonymous client flooded gRPC IssueToken, and while
it flooded the HTTPS token endpoint: the cap on calls was one, shared by everyone. With the
cap shared fairly (see cmk_trio.rpckit.admission), this test starts `cmk up` in a process of
its own with a cap of CAP calls and the default shares, measures tenant A's latency for a
simple authenticated call (listing its own principals, one call after another) while nothing
else runs, and again under each flood, sent by a client in a third process, each flood
holding IN_FLIGHT calls in flight, more than the whole cap as in the review:

    tenant B's principal list   four principals of tenant B, one connection
    gRPC IssueToken             a client's credentials, no token (anonymous), one connection
    the HTTPS token endpoint    the same credentials, one request per connection

What must hold under each flood: not one of tenant A's calls is refused (before the shares,
the first flood had them refused TOO_MANY_CALLS), and their p99 stays within the bound
max(FACTOR x quiet p99, quiet p99 + SLACK_MS). Why that bound: a flood keeps IN_FLIGHT calls
in the service, which reads and answers (or refuses) calls in the order they arrive, so a
call of tenant A's waits behind up to IN_FLIGHT of them. On a 2-core machine whose other
core runs the flooding client, the service gets through at least 300 of them a second even
when the machine is shared with other work (450-570 a second were measured at a load average
of 5-8), so tenant A waits at most a second; SLACK_MS doubles that for the p99. The shares
cannot make it less: they decide which calls are served, not the order in which gRPC reads
them; bounding how many calls one connection may have in the service is the listener's
(issue 22, item 5).

    CMK_FAIRNESS_SAMPLES  tenant A's calls per phase (default 50: the everyday run; dev.py security runs 300)
    CMK_FAIRNESS_REPORT   write the figures as JSON to this path (SECURITY.md is rendered from it)
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest

from cmk_trio.client.identity import ClientCredentials, IdentityClient
from cmk_trio.rpckit.channels import open_channel
from cmk_trio.rpckit.clock import SystemClock
from cmk_trio.rpckit.errors import ServiceError
from tests.identity.helpers import make_principal, make_tenant
from tests.security.flood import client_tls

CMK = [sys.executable, "-m", "cmk_trio.cli"]
SAMPLES = int(os.environ.get("CMK_FAIRNESS_SAMPLES", "50"))
REPORT = os.environ.get("CMK_FAIRNESS_REPORT")
CAP = 200
"""The trio's CMK_MAX_CALLS here (the default shares: 40 for sign-ins, 40 kept for the
platform, 120 for the tenants, 20 per caller or client address, 50 per tenant)."""
IN_FLIGHT = 300
FACTOR = 10
SLACK_MS = 2000.0
FLOODS = (
    ("tenant B lists its principals", "principals"),
    ("anonymous gRPC IssueToken", "issue_token"),
    ("anonymous HTTPS token endpoint", "https_token"),
)
"""(what the report calls it, the flood's kind)."""
SETTLE_S = 2.0  # after the flood's first answers, before measuring: its connections made, at full strength
START_GUARD_S = 60.0  # a guard against a trio that does not start, not a speed claim


@dataclass
class Phase:
    """Tenant A's calls during one phase, and what the flood of that phase saw."""

    name: str
    samples: int
    refused: dict[str, int]
    p50_ms: float
    p99_ms: float
    max_ms: float
    flood: dict[str, Any] | None = None


@dataclass
class Trio:
    process: subprocess.Popen[str]
    banner: dict[str, Any]
    data_dir: Path


@pytest.fixture
def trio(tmp_path: Path) -> Iterator[Trio]:
    """`cmk up` in a process of its own, capped at CAP calls (no other CMK_* setting of ours)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CMK_")} | {"CMK_MAX_CALLS": str(CAP)}
    data_dir = tmp_path / "data"
    process = subprocess.Popen(
        [*CMK, "up", "--data-dir", str(data_dir), "--port-base", "0", "--output", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip
    try:
        line = process.stdout.readline()  # type: ignore[union-attr]
        assert line, "cmk up printed nothing"
        yield Trio(process, json.loads(line), data_dir)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


async def measure(name: str, client: IdentityClient, tenant_id: str, samples: int) -> Phase:
    """`samples` calls of tenant A's, one after another: their latencies and refusals."""
    latencies: list[float] = []
    refused: dict[str, int] = {}
    for _ in range(samples):
        started = time.perf_counter()
        try:
            await client.list_principals(tenant_id, page_size=10)
        except ServiceError as exc:
            refused[exc.reason.value] = refused.get(exc.reason.value, 0) + 1
        latencies.append((time.perf_counter() - started) * 1000)
    ordered = sorted(latencies)
    return Phase(
        name=name,
        samples=samples,
        refused=refused,
        p50_ms=round(statistics.median(ordered), 2),
        p99_ms=round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2),
        max_ms=round(ordered[-1], 2),
    )


async def under_flood(spec: dict[str, Any], name: str, client: IdentityClient, tenant_id: str) -> Phase:
    """Tenant A's phase while a client in another process floods as `spec` says."""
    flood = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.security.flood",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert flood.stdin is not None and flood.stdout is not None
    try:
        flood.stdin.write((json.dumps(spec) + "\n").encode())
        await flood.stdin.drain()
        started = await asyncio.wait_for(flood.stdout.readline(), START_GUARD_S)
        assert started.strip() == b"flooding", started
        await asyncio.sleep(SETTLE_S)
        phase = await measure(name, client, tenant_id, SAMPLES)
        flood.send_signal(signal.SIGTERM)
        phase.flood = json.loads(await asyncio.wait_for(flood.stdout.readline(), START_GUARD_S))
    finally:
        if flood.returncode is None:
            flood.kill()
        await flood.wait()

    return phase


def bound_ms(quiet_p99: float) -> float:
    return round(max(FACTOR * quiet_p99, quiet_p99 + SLACK_MS), 2)


@pytest.mark.timeout(180 + SAMPLES * 5)  # a hang guard: under a flood a call may take a second
async def test_another_tenants_p99_stays_within_its_bound_under_each_flood(trio: Trio) -> None:
    banner = trio.banner
    tls = client_tls(Path(banner["tls_dir"]))
    channel = open_channel(banner["services"]["identity"], tls)
    clock = SystemClock()
    try:
        operator_file = json.loads((trio.data_dir / "operator.json").read_text())
        operator = IdentityClient(
            channel, ClientCredentials(operator_file["tenant_id"], operator_file["client_id"],
                                       operator_file["client_secret"]), clock=clock,
        )  # fmt: skip
        a = await make_tenant(operator, channel, clock, "Tenant A")
        b = await make_tenant(operator, channel, clock, "Tenant B")
        flooders = [b.admin_credentials]
        for n in range(3):
            _, creds, _ = await make_principal(operator, channel, clock, b.tenant_id, f"admin {n}", admin=True)
            flooders.append(creds)
        _, app, _ = await make_principal(operator, channel, clock, b.tenant_id, "app")
        common = {"endpoint": banner["services"]["identity"], "tls_dir": banner["tls_dir"],
                  "oidc_url": banner["oidc"], "tenant_id": b.tenant_id}  # fmt: skip

        def spec(kind: str) -> dict[str, Any]:
            credentials = flooders if kind == "principals" else [app]
            return {**common, "kind": kind, "concurrency": IN_FLIGHT,
                    "credentials": [asdict(c) for c in credentials]}  # fmt: skip

        victim = a.admin_client
        await measure("warm-up", victim, a.tenant_id, 20)
        quiet = await measure("quiet", victim, a.tenant_id, SAMPLES)
        phases = [await under_flood(spec(kind), name, victim, a.tenant_id) for name, kind in FLOODS]
    finally:
        await channel.close()

    bound = bound_ms(quiet.p99_ms)
    figures = {"samples": SAMPLES, "cap": CAP, "in_flight": IN_FLIGHT, "factor": FACTOR, "slack_ms": SLACK_MS,
               "bound_ms": bound, "cpus": os.cpu_count(), "load_average": os.getloadavg()[0],
               "quiet": asdict(quiet), "floods": [asdict(p) for p in phases]}  # fmt: skip
    if REPORT is not None:
        await asyncio.to_thread(Path(REPORT).write_text, json.dumps(figures, indent=2) + "\n")
    assert not quiet.refused, quiet
    for phase in phases:
        assert phase.flood is not None and phase.flood["answered"] > 0, phase
        assert not phase.refused, f"tenant A refused under the flood of {phase.name}: {phase.refused}"
        assert phase.p99_ms <= bound, f"tenant A's p99 under the flood of {phase.name}: {phase} (bound {bound} ms)"
