"""Callers that go away: storms of calls on every write path, each cancelled by its client
after 0-30 ms (at whatever await the service has reached), and then the service must still
write and audit. A vault on SQLite once wedged for good here: a cancellation during BEGIN left
its connection inside a transaction, and from then on every audited call answered
AUDIT_UNAVAILABLE until the process was restarted.

    python3 dev.py faults            10 storms per write path, writes RELIABILITY.md's section
    python3 dev.py faults --bounded  2 storms per write path, as .ci/run runs it

The services run as processes (tests/faults/harness.py), the way an operator runs them."""

from __future__ import annotations

import asyncio
import json
import os
import random
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cmk_trio.proto.identity.v1 import resources_pb2 as idres
from cmk_trio.rpckit.errors import Aborted, ServiceError
from tests.faults.harness import start_trio
from tests.faults.world import VAULT, World, prepare
from tests.reports import write_section

pytestmark = [pytest.mark.faults, pytest.mark.timeout(1800)]

STORMS = 10 if int(os.environ.get("CMK_FAULT_KILLS", "3")) >= 10 else 2
CALLS_PER_STORM = 20
CANCEL_AFTER_S = (0.0, 0.03)
REPORT = os.environ.get("CMK_FAULT_REPORT", "")
SEED = int(os.environ.get("CMK_FAULT_SEED", "20261203"))
DATA_KEY = bytes(range(32))


def write_paths(world: World) -> dict[str, Callable[[int], Awaitable[Any]]]:
    """One call of each write path, made distinct by `n`: the vault's access policies, keys,
    rotation and an audited wrap; speech's applications, LUIS keys and encryption settings;
    identity's principals, secrets and role assignments."""
    resource = world.resources[0]
    scope = f"/subscriptions/{world.subscription_id}"
    principals: list[str] = []

    async def principal(n: int) -> Any:
        made = await world.operator.create_principal(world.tenant_id, idres.SERVICE_PRINCIPAL, f"storm-{n}")
        principals.append(made.object_id)
        return made

    async def secret(n: int) -> Any:
        return await world.operator.add_client_secret(world.tenant_id, principals[-1], f"storm-{n}")

    async def role(n: int) -> Any:
        return await world.operator.create_role_assignment(principals[-1], idres.READER, scope)

    return {
        "keyvault SetAccessPolicy": lambda n: world.vaults.set_access_policy(
            VAULT, world.tenant_id, str(uuid.UUID(int=n)), ["get", "wrapKey"]
        ),
        "keyvault RemoveAccessPolicy": lambda n: world.vaults.remove_access_policy(VAULT, str(uuid.UUID(int=n))),
        "keyvault CreateKey": lambda n: world.vaults.create_key(VAULT, f"storm-{n}"),
        "keyvault RotateKey": lambda n: world.vaults.rotate_key(world.key_uri),
        "keyvault WrapKey (audited)": lambda n: world.vaults.wrap(world.key_uri, DATA_KEY),
        "speech CreateApplication": lambda n: world.speech.create_application(
            resource, f"storm{n}", json.dumps({"n": n})
        ),
        "speech SetLuisKeys": lambda n: world.speech.set_luis_keys(resource, f"author-{n}", f"predict-{n}"),
        "speech SetEncryption": lambda n: world.speech.set_encryption(
            resource, key_uri=world.key_uri, key_subscription_id=world.subscription_id
        ),
        "identity CreatePrincipal": principal,
        "identity AddClientSecret": secret,
        "identity CreateRoleAssignment": role,
    }


async def storm(call: Callable[[int], Awaitable[Any]], first: int, rng: random.Random) -> tuple[int, int]:
    """CALLS_PER_STORM calls at once, each cancelled by its client after 0-30 ms; how many
    were cancelled and how many answered first."""

    async def one(n: int) -> bool:
        try:
            async with asyncio.timeout(rng.uniform(*CANCEL_AFTER_S)):
                await call(n)
            return False
        except TimeoutError:
            return True
        except ServiceError:
            return False  # answered (a refusal is an answer): not this storm's concern

    cancelled = await asyncio.gather(*(one(first + i) for i in range(CALLS_PER_STORM)))
    return sum(cancelled), CALLS_PER_STORM - sum(cancelled)


async def still_writes_and_audits(world: World, paths: dict[str, Callable[[int], Awaitable[Any]]], n: int) -> list[str]:
    """Every write path answers again, and the vault's audit chain grows and verifies."""
    failures = []
    before = (await world.operator_vaults.verify_audit()).records
    for name, call in paths.items():
        for attempt in range(3):
            try:
                async with asyncio.timeout(10):
                    await call(n)
                break
            except Aborted:
                # A concurrency conflict (the rewrap that a rotation starts in the background
                # changed the resource meanwhile): read again and retry, as AIP-193 says.
                if attempt == 2:
                    failures.append(f"{name}: ABORTED three times in a row")
            except (ServiceError, TimeoutError) as exc:
                failures.append(f"{name}: {getattr(exc, 'reason', type(exc).__name__)}")
                break
    verdict = await world.operator_vaults.verify_audit()
    if not verdict.ok or verdict.records <= before:
        failures.append(f"audit log: ok={verdict.ok}, {before} -> {verdict.records} records")
    return failures


async def test_callers_that_go_away_at_any_moment_leave_every_write_path_working(tmp_path: Path):
    rng = random.Random(SEED)  # noqa: S311 (the moments of the cancellations, repeatable by seed)
    trio = await start_trio(tmp_path)
    try:
        world = await prepare(trio)
        paths = write_paths(world)
        await paths["identity CreatePrincipal"](0)  # the principal the secret and role paths use
        figures: dict[str, Any] = {"storms": STORMS, "calls": CALLS_PER_STORM, "seed": SEED, "paths": {}}
        failures: list[str] = []
        n = 1000
        for name, call in paths.items():
            cancelled = answered = 0
            for _ in range(STORMS):
                c, a = await storm(call, n, rng)
                n += CALLS_PER_STORM
                cancelled, answered = cancelled + c, answered + a
                failures += [f"after a storm on {name}: {f}" for f in await still_writes_and_audits(world, paths, n)]
                n += 1
            figures["paths"][name] = (cancelled, answered)
        for service in trio.services.values():
            assert service.process is not None and service.process.poll() is None, f"{service.name} died"
        figures["failures"] = failures
        if REPORT:
            write_report(Path(REPORT), figures)
        assert failures == [], failures
        assert sum(c for c, _ in figures["paths"].values()) > 0  # the storms did cancel calls mid-way
        await world.close()
    finally:
        await trio.stop()


def write_report(path: Path, figures: dict[str, Any]) -> None:
    rows = [f"| {name} | {c} | {a} |" for name, (c, a) in figures["paths"].items()]
    total = sum(c for c, _ in figures["paths"].values())
    lines = [
        "## Callers that go away",
        "",
        f"Written by `python3 dev.py faults` on {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} "
        f"(seed {figures['seed']}). The three services ran as processes on SQLite. On each write path, "
        f"{figures['storms']} storms of {figures['calls']} calls at once, each cancelled by its client after a "
        f"random {CANCEL_AFTER_S[0] * 1000:.0f}-{CANCEL_AFTER_S[1] * 1000:.0f} ms (at whatever await the service "
        "had reached); after every storm, one call of every write path had to answer, and the vault's audit "
        "chain had to grow and verify.",
        "",
        "| write path | calls cancelled by their client | answered before the cancellation |",
        "| --- | --- | --- |",
        *rows,
        "",
        f"Calls cancelled: {total}. Write paths that failed after a storm: {len(figures['failures'])}.",
        *[f"- {f}" for f in figures["failures"]],
        "",
    ]
    write_section(path, "cancellations", "\n".join(lines))
