"""The faults beyond plain kills: speech killed in the middle of enabling customer-managed
keys, the key vault paused (SIGSTOP: it holds its sockets and answers nothing), and a silent
partition between speech and the vault with a revocation made on the far side. Each returns
its figures (seconds from the moment that matters: the fault's end, or the revocation's
acknowledgement) and asserts what must hold whatever the timing."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import Any

from cmk_trio.proto.identity.v1 import resources_pb2 as idres
from cmk_trio.rpckit.errors import ServiceError
from tests.faults.harness import Trio, until
from tests.faults.world import VAULT, World, readable, readable_now, refused_now

PAUSE_S = 10.0
"""How long the vault is paused: past the keepalive (5 s + 3 s) that finds a dead peer."""
PARTITION_S = 12.0
"""How long the link between speech and the vault is cut."""


async def kills_during_enable(trio: Trio, world: World, rng: random.Random, kills: int) -> dict[str, Any]:
    """Kill speech at a random moment of the first enable of a fresh resource (the one that
    makes its managed identity and grants it), `kills` times: within the time an enable
    takes here, measured first on a resource of its own. Afterwards every interrupted enable
    must be resolved by speech itself: no managed identity in the directory that no resource
    records, and every resource can enable customer-managed keys (nothing stuck)."""
    probe = (await world.speech.create_resource(world.subscription_id, "rg", "enable-probe", "westeurope")).name
    started = time.monotonic()
    await world.speech.set_encryption(probe, key_uri=world.key_uri, key_subscription_id=world.subscription_id)
    window = time.monotonic() - started
    made: list[str] = [probe]
    answered = 0
    for i in range(kills):
        resource = (await world.speech.create_resource(world.subscription_id, "rg", f"enable-{i}", "westeurope")).name
        made.append(resource)
        enable = asyncio.ensure_future(
            world.speech.set_encryption(resource, key_uri=world.key_uri, key_subscription_id=world.subscription_id)
        )
        await asyncio.sleep(rng.uniform(0, window))
        trio.speech.kill9()
        with contextlib.suppress(ServiceError):
            await enable
            answered += 1  # it finished before the kill: a normal enable
        trio.speech.start()
        await trio.speech.wait_ready()
    resolved_in = await until(lambda: identities_match(world, made), "interrupted enables resolved by speech")
    stuck = []
    for resource in made:
        try:
            enabled = await world.speech.set_encryption(
                resource, key_uri=world.key_uri, key_subscription_id=world.subscription_id
            )
            if enabled.encryption.inaccessible_reason:
                stuck.append(f"{resource}: {enabled.encryption.inaccessible_reason}")
        except ServiceError as exc:
            stuck.append(f"{resource}: {exc.reason.value}")
    assert stuck == [], stuck
    assert await identities_match(world, made), "an identity left behind after the enables"
    return {"enable_kills": kills, "enables_answered_before_kill": answered, "enable_s": round(window, 3),
            "enable_kills_resolved_s": round(resolved_in, 3)}  # fmt: skip


async def identities_match(world: World, made: list[str]) -> bool:
    """The tenant's managed identities are exactly those its resources record."""
    recorded = set()
    for resource in [*world.resources, *made]:
        found = await world.speech.get_resource(resource)
        if found.identity.principal_id:
            recorded.add(found.identity.principal_id)
    listed = await world.operator.list_principals(world.tenant_id, idres.MANAGED_IDENTITY, page_size=1000)
    return {p.object_id for p in listed.principals} == recorded


async def vault_paused(trio: Trio, world: World, app: str) -> dict[str, Any]:
    """SIGSTOP the vault for PAUSE_S. Reads meanwhile are answered (from a data key cached
    while the stream was current) or refused with a cause; the slowest answer is measured.
    After SIGCONT: seconds until reads work with the vault's stream current again."""
    slowest = 0.0
    causes: dict[str, int] = {}
    trio.keyvault.pause()
    paused_at = time.monotonic()
    try:
        while time.monotonic() - paused_at < PAUSE_S:
            started = time.monotonic()
            try:
                await world.speech.get_application(app)
            except ServiceError as exc:
                causes[exc.reason.value] = causes.get(exc.reason.value, 0) + 1
            slowest = max(slowest, time.monotonic() - started)
            await asyncio.sleep(0.2)
    finally:
        trio.keyvault.resume()
    resumed = time.monotonic()
    await until(lambda: readable_now(world, app), "reads working once the vault runs again")
    return {"pause_s": PAUSE_S, "pause_slowest_read_s": round(slowest, 3), "pause_refusals": causes,
            "reading_after_resume_s": round(time.monotonic() - resumed, 3)}  # fmt: skip


async def revocation_across_a_partition(trio: Trio, world: World, resource: str, app: str) -> dict[str, Any]:
    """Cut speech off from the vault without either side being told, then remove the
    resource's access policy in the vault (acknowledged by the vault, which speech cannot
    hear). Speech must stop serving the resource's data once it notices the dead link (the
    keepalive: within 10 s), not when its cached data key expires. Then heal, restore the
    policy, and measure how soon reads work again."""
    assert await readable(world, app) is not None  # the data key is cached now
    trio.vault_link.partition()
    await world.vaults.remove_access_policy(VAULT, world.identities[resource])
    revoked = time.monotonic()
    refused_in = await until(lambda: refused_now(world, app), "reads refused across the partition")
    # It stays refused while the link is down (nothing served from a stale cache).
    while time.monotonic() - revoked < PARTITION_S:
        assert await readable(world, app) is None, "a read served across the partition after the revocation"
        await asyncio.sleep(0.25)
    await world.vaults.update_access_policy(
        VAULT, world.tenant_id, world.identities[resource], add=["get", "wrapKey", "unwrapKey"]
    )
    trio.vault_link.heal()
    healed = time.monotonic()
    await until(lambda: readable_now(world, app), "reads working once the link is back")
    return {"partition_s": PARTITION_S, "revocation_across_partition_s": round(refused_in, 3),
            "reading_after_heal_s": round(time.monotonic() - healed, 3)}  # fmt: skip
