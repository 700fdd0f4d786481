"""Faults across containers, on compose.yaml brought up with Compose v2: each service's
container killed (the restart policy brings it back on its volumes), the key vault paused and
resumed, the link between speech and the vault cut and the one between the vault and identity
cut past the staleness bound (`network disconnect`, then `connect`), and the whole stack taken
down and brought up again with its volumes. A workload of application writes and key
rotations runs through every fault, a ledger keeping what was acknowledged, and every fault
ends with each acknowledged write read back.

Timings go to RELIABILITY.md (the containers section). Only hang guards, and the promises at
twice their target, are asserted: a busy machine must not make the suite flaky, while a
regression (a revocation held for a cache's lifetime, a backoff of minutes) still fails it."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import os
import random
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from cmk_trio.rpckit.errors import ServiceError
from tests.containers import engine, report
from tests.containers.stack import SERVICES, Stack
from tests.faults import harness
from tests.faults.harness import Ledger
from tests.faults.world import VAULT, World, prepare_world, readable, readable_now, refused_now, workload

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROOT = Path(__file__).resolve().parents[2]
STALENESS_S = 3
PAUSE_S = 10.0
PARTITION_S = 8.0
GUARD_FACTOR = 2
HANG_GUARD_S = 120.0
TARGETS = {name: target for name, (target, _) in report.TARGETS.items()}
"""The promises, in seconds (tests/containers/report.py says what each is)."""


@pytest.fixture(scope="module")
def stack(container_engine: None) -> Iterator[Stack]:
    stack = Stack(engine.COMPOSE_V2, [ROOT / "compose.yaml"], settings={
        "CMK_REVOCATION_MAX_STALENESS_SECONDS": str(STALENESS_S), "CMK_EVENT_HEARTBEAT_SECONDS": "1",
    })  # fmt: skip
    try:
        stack.up()
        yield stack
    finally:
        stack.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(stack: Stack) -> AsyncIterator[World]:
    for service in SERVICES:
        await stack.wait_serving(service)
    made = await prepare_world(stack.endpoints(), stack.operator(), dial=stack.dial)
    try:
        yield made
    finally:
        await made.close()


@pytest.fixture(scope="module")
def ledger() -> Ledger:
    return Ledger()


@pytest.fixture(scope="module")
def figures(container_figures: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = container_figures.setdefault("faults", {})
    return found


async def until(check: Callable[[], Awaitable[bool]], what: str) -> float:
    """Seconds (to the millisecond) until `check()` holds; a hang guard, not a speed claim."""
    return round(await harness.until(check, what, guard=HANG_GUARD_S), 3)


@contextlib.asynccontextmanager
async def under_load(world: World, ledger: Ledger) -> AsyncIterator[None]:
    """The workload runs for as long as the block does."""
    stop = asyncio.Event()
    rng = random.Random(len(ledger.configs))  # noqa: S311 (which writes; repeatable, not a secret)
    task = asyncio.create_task(workload(world, ledger, rng, stop))
    try:
        await asyncio.sleep(0.5)
        yield
        await asyncio.sleep(0.5)
    finally:
        stop.set()
        await task


async def lost_writes(world: World, ledger: Ledger) -> list[str]:
    """Acknowledged writes that do not read back. A refused read is retried (the stack may
    still be recovering); a value that is not one the ledger allows is a loss."""
    lost = []
    deadline = time.monotonic() + 60  # for the whole check: a stack that does not recover fails it once
    for name, accepted in sorted(ledger.configs.items()):
        value = await readable(world, name)
        while value is None and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            value = await readable(world, name)
        if value not in accepted:
            lost.append(name)
    return lost


def check_promise(figures: dict[str, Any], name: str, seconds: float) -> None:
    figures[name] = seconds
    assert seconds <= GUARD_FACTOR * TARGETS[name], f"{name}: {seconds:.2f} s, target {TARGETS[name]:g} s"


def reader_of(ledger: Ledger, resource: str) -> str:
    return next(n for n in sorted(ledger.configs) if n.lower().startswith(resource.lower() + "/"))


async def record_losses(world: World, ledger: Ledger, figures: dict[str, Any]) -> None:
    lost = await lost_writes(world, ledger)
    figures["lost"] = figures.get("lost", 0) + len(lost)
    figures["acknowledged"] = len(ledger.configs)
    assert lost == [], f"acknowledged writes lost: {lost}"


async def test_killed_containers_come_back_with_their_data(
    stack: Stack, world: World, ledger: Ledger, figures: dict[str, Any]
):
    serving: dict[str, float] = {}
    for service in SERVICES:
        async with under_load(world, ledger):
            restarts = stack.restarts(service)
            os.kill(stack.pid(service), signal.SIGKILL)  # a crash, as the restart policy sees one
            killed = time.monotonic()
            await until(functools.partial(restarted, stack, service, restarts), f"{service} restarted by its policy")
            await stack.wait_serving(service)
            serving[service] = round(time.monotonic() - killed, 3)
            for other in SERVICES:
                await stack.wait_serving(other)
        await record_losses(world, ledger, figures)
    figures["serving_after_kill_s"] = serving
    assert ledger.configs, "the workload acknowledged nothing"
    await world.vaults.get_key(world.key_uri)  # the vault's keys outlived its container
    # Revocation is still immediate after the restarts.
    resource = world.resources[0]
    reader = reader_of(ledger, resource)
    await until(lambda: readable_now(world, reader), "reads after the kills")
    await world.vaults.remove_access_policy(VAULT, world.identities[resource])
    check_promise(figures, "revocation_after_kills_s", await until(lambda: refused_now(world, reader), "revoked"))
    await world.vaults.update_access_policy(
        VAULT, world.tenant_id, world.identities[resource], add=["get", "wrapKey", "unwrapKey"]
    )
    await until(lambda: readable_now(world, reader), "reads after access was restored")


async def test_a_paused_vault_fails_speech_closed_with_the_cause_then_recovers(
    stack: Stack, world: World, ledger: Ledger, figures: dict[str, Any]
):
    reader = reader_of(ledger, world.resources[0])
    causes: dict[str, int] = {}
    async with under_load(world, ledger):
        engine.podman("pause", stack.container("keyvault"))
        paused = time.monotonic()
        try:
            while time.monotonic() - paused < PAUSE_S:
                try:
                    await world.speech.get_application(reader)
                except ServiceError as exc:
                    causes[exc.reason.value] = causes.get(exc.reason.value, 0) + 1
                await asyncio.sleep(0.2)
        finally:
            engine.podman("unpause", stack.container("keyvault"))
        check_promise(figures, "reading_after_unpause_s", await until(lambda: readable_now(world, reader), "reads"))
    figures["pause_s"], figures["pause_refusals"] = PAUSE_S, causes
    assert causes, "every read was served while the vault was paused past the staleness bound"
    assert set(causes) == {"CUSTOMER_KEY_VAULT_UNREACHABLE"}, causes
    await record_losses(world, ledger, figures)


async def test_speech_cut_off_the_vault_fails_closed_and_honours_a_revocation_made_meanwhile(
    stack: Stack, world: World, ledger: Ledger, figures: dict[str, Any]
):
    """Until speech notices that it is cut off the vault (its keepalive, at most about 8 s),
    it may serve a data key it cached before the partition: the revocation cannot reach it.
    Once a read has been refused for the vault's sake, no read may be served again until the
    link is back. A refusal for another cause (a moment without identity's heartbeat under a
    busy machine, REVOCATIONS_UNKNOWN) says nothing about the vault, and does not start that."""
    resource = world.resources[1]
    reader = reader_of(ledger, resource)
    await until(lambda: readable_now(world, reader), "reads before the partition")
    causes: dict[str, int] = {}
    timeline: list[tuple[float, str]] = []
    vault_reasons = {"CUSTOMER_KEY_VAULT_UNREACHABLE", "CUSTOMER_KEY_ACCESS_REVOKED"}

    async def refused_for_the_vault() -> bool:
        outcome = await read_outcome(world, reader)
        timeline.append((round(time.monotonic() - revoked, 3), outcome))
        return outcome in vault_reasons

    async with under_load(world, ledger):
        try:
            engine.podman("network", "disconnect", stack.network_of("vault-speech"), stack.container("speech"))
            try:
                await world.vaults.remove_access_policy(VAULT, world.identities[resource])  # speech cannot hear it
                revoked = time.monotonic()
                figures["vault_link_revocation_refused_s"] = await until(
                    refused_for_the_vault, "reads refused with speech cut off the vault"
                )
                while time.monotonic() - revoked < PARTITION_S:
                    outcome = await read_outcome(world, reader)
                    timeline.append((round(time.monotonic() - revoked, 3), outcome))
                    assert outcome != "served", f"a read served across the partition after the revocation: {timeline}"
                    causes[outcome] = causes.get(outcome, 0) + 1
                    await asyncio.sleep(0.25)
            finally:
                engine.podman("network", "connect", stack.network_of("vault-speech"), stack.container("speech"))
            # The link is back and access is still revoked: speech must now say so (not serve
            # the data key it cached before the partition, nor keep blaming the link).
            relinked = time.monotonic()
            await until(lambda: refused_with(world, reader, "CUSTOMER_KEY_ACCESS_REVOKED"), "the revocation heard")
            check_promise(figures, "revocation_heard_after_vault_link_s", round(time.monotonic() - relinked, 3))
        finally:
            # Restored whatever happened above, so that a failure here does not fail the tests after it.
            await world.vaults.update_access_policy(
                VAULT, world.tenant_id, world.identities[resource], add=["get", "wrapKey", "unwrapKey"]
            )
        restored = await until(lambda: readable_now(world, reader), "reads once access was restored")
        check_promise(figures, "reading_after_access_restored_s", restored)
    figures["vault_link_refusals"] = causes
    assert causes, "no read was tried while speech was cut off the vault"
    assert set(causes) <= vault_reasons | {"REVOCATIONS_UNKNOWN"}, (causes, timeline)
    await record_losses(world, ledger, figures)


async def test_the_vault_cut_off_identity_past_the_staleness_bound_fails_closed_then_recovers(
    stack: Stack, world: World, ledger: Ledger, figures: dict[str, Any]
):
    reader = reader_of(ledger, world.resources[0])
    async with under_load(world, ledger):
        engine.podman("network", "disconnect", stack.network_of("directory-vault"), stack.container("keyvault"))
        cut = time.monotonic()
        try:
            closed = await until(lambda: not_serving(stack, "keyvault"), "the vault failing closed")
            figures["identity_link_failed_closed_s"] = closed
            # It serves no key operation while it cannot hear identity's revocations.
            with pytest.raises(ServiceError) as refused:
                await world.vaults.wrap(world.key_uri, b"k" * 32)
            assert refused.value.reason.value == "REVOCATIONS_UNKNOWN", refused.value
            await asyncio.sleep(max(0.0, STALENESS_S + 1 - (time.monotonic() - cut)))
        finally:
            engine.podman("network", "connect", stack.network_of("directory-vault"), stack.container("keyvault"))
        returned = time.monotonic()
        await stack.wait_serving("keyvault")
        check_promise(figures, "vault_serving_after_identity_link_s", round(time.monotonic() - returned, 3))
        await until(lambda: readable_now(world, reader), "reads once the vault follows identity again")
        check_promise(figures, "reading_after_identity_link_s", round(time.monotonic() - returned, 3))
    await record_losses(world, ledger, figures)


async def read_outcome(world: World, name: str) -> str:
    """The word "served", or the reason the read was refused."""
    try:
        await world.speech.get_application(name)
    except ServiceError as exc:
        return exc.reason.value
    return "served"


async def refused_with(world: World, name: str, reason: str) -> bool:
    return await read_outcome(world, name) == reason


async def restarted(stack: Stack, service: str, before: int) -> bool:
    return stack.restarts(service) > before


async def not_serving(stack: Stack, service: str) -> bool:
    """The service is up and says it cannot serve (not merely unreachable)."""
    return await stack.health(stack.endpoints()[service]) == "NOT_SERVING"


async def test_down_then_up_keeps_every_volume(stack: Stack, world: World, ledger: Ledger, figures: dict[str, Any]):
    def fingerprints() -> dict[str, str]:
        files = {"operator": stack.volume("operator") / "operator.json"}
        files |= {f"{s}-keys": next(stack.volume(f"{s}-keys").iterdir()) for s in SERVICES}
        return {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in files.items()}

    before, operator = fingerprints(), stack.operator()
    started = time.monotonic()
    stack.down(volumes=False)
    figures["down_s"] = round(time.monotonic() - started, 3)
    started = time.monotonic()
    stack.up()
    for service in SERVICES:
        await stack.wait_serving(service)
    figures["up_again_s"] = round(time.monotonic() - started, 3)
    assert fingerprints() == before, "the operator credential or a master key changed across down and up"
    assert stack.operator() == operator
    await record_losses(world, ledger, figures)
    verdict = await world.operator_vaults.verify_audit()
    assert verdict.ok, verdict.problem
