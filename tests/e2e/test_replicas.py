"""Two processes of each service on one PostgreSQL database, as `cmk up --replicas 2` starts
them: a revocation made through one replica is refused by the other, the lease on background
work passes on when its holder is killed, reads go on through a replica killed under them,
and the seed walks green across them."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from cmk_trio.client.channel import open_channel
from cmk_trio.client.identity import ClientCredentials, IdentityClient
from cmk_trio.client.keyvault import KeyVaultClient
from cmk_trio.launcher.replicas import Replica, RunningReplicas, start_replicas
from cmk_trio.proto.identity.v1 import resources_pb2 as idres
from cmk_trio.rpckit.clock import SystemClock
from cmk_trio.rpckit.errors import PermissionDenied
from cmk_trio.rpckit.reasons import Reason
from tests.identity.helpers import make_principal, make_tenant
from tests.waiting import eventually

DATA_KEY = bytes(range(32))


@pytest.fixture
async def replicas(tmp_path: Path, postgres_url: str) -> AsyncIterator[RunningReplicas]:
    running = await start_replicas(tmp_path / "data", 0, replicas=2, database_url=postgres_url)
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def replicas_tls(tmp_path: Path, postgres_url: str) -> AsyncIterator[RunningReplicas]:
    """As `cmk up --replicas 2` starts them by default: every call mutual TLS."""
    running = await start_replicas(tmp_path / "data", 0, replicas=2, database_url=postgres_url, mutual_tls=True)
    try:
        yield running
    finally:
        await running.stop()


async def a_customer_with_a_key(running: RunningReplicas, channels: list[grpc.aio.Channel]) -> tuple[Any, ...]:
    """A tenant whose administrator owns a vault and key (made through key vault replica 0),
    and an application principal allowed to wrap and unwrap with it."""
    clock = SystemClock()
    id_channel = open_channel(running.endpoints["identity"])
    channels.append(id_channel)
    assert running.operator_file is not None
    operator = IdentityClient(id_channel, ClientCredentials.from_file(running.operator_file), clock=clock)
    tenant = await make_tenant(operator, id_channel, clock, "Contoso")
    await operator.create_role_assignment(
        tenant.admin.object_id, idres.OWNER, f"/subscriptions/{tenant.subscription_id}"
    )
    app, _, app_client = await make_principal(operator, id_channel, clock, tenant.tenant_id, "app")
    first = open_channel(running.replicas["keyvault"][0].endpoint)
    channels.append(first)
    admin_vaults = KeyVaultClient(first, tenant.admin_client.token_for)
    await admin_vaults.create_vault("kv1", tenant.subscription_id, "rg1", "westeurope")
    key = await admin_vaults.create_key("kv1", "cmk")
    await admin_vaults.set_access_policy("kv1", tenant.tenant_id, app.object_id, ["wrapKey", "unwrapKey", "get"])
    return tenant, admin_vaults, app, app_client, key


async def test_a_revocation_through_one_replica_is_refused_by_the_other(replicas):
    channels: list[grpc.aio.Channel] = []
    try:
        _, admin_vaults, app, app_client, key = await a_customer_with_a_key(replicas, channels)
        second = open_channel(replicas.replicas["keyvault"][1].endpoint)
        channels.append(second)
        app_vaults = KeyVaultClient(second, app_client.token_for)
        wrapped = (await app_vaults.wrap(key.key_id, DATA_KEY)).ciphertext
        assert (await app_vaults.unwrap(key.key_id, wrapped)).plaintext == DATA_KEY  # replica 1 caches the policy
        await admin_vaults.remove_access_policy("kv1", app.object_id)  # through replica 0

        async def refused() -> PermissionDenied | None:
            try:
                await app_vaults.unwrap(key.key_id, wrapped)
            except PermissionDenied as exc:
                return exc
            return None

        refusal = await eventually(refused, "replica 1 refusing after the removal through replica 0")
        assert refusal.reason is Reason.FORBIDDEN_BY_POLICY
    finally:
        for channel in channels:
            await channel.close()


async def test_the_lease_on_background_work_passes_on_when_its_holder_is_killed(replicas):
    for service in ("identity", "keyvault", "speech"):
        group = replicas.replicas[service]

        async def one_holder(group: list[Replica] = group) -> Replica | None:
            held = [r for r in group if await asyncio.to_thread(r.holds_lease)]
            return held[0] if len(held) == 1 else None

        holder = await eventually(one_holder, f"one {service} replica holding the lease")
        holder.process.kill()  # kill -9: no goodbye to the database
        await holder.process.wait()
        survivor = await eventually(one_holder, f"another {service} replica taking the lease over")
        assert survivor is not holder


async def test_reads_go_on_through_a_replica_killed_under_them(replicas):
    channels: list[grpc.aio.Channel] = []
    try:
        tenant, _, _, _, key = await a_customer_with_a_key(replicas, channels)
        both = open_channel(replicas.endpoints["keyvault"])  # balanced over the two replicas
        channels.append(both)
        reader = KeyVaultClient(both, tenant.admin_client.token_for)
        failures = 0

        async def read(n: int) -> None:
            nonlocal failures
            for _ in range(n):
                try:
                    await reader.get_key(key.key_id.rsplit("/", 1)[0])
                except Exception:
                    failures += 1

        await read(20)
        loader = asyncio.create_task(read(200))
        await asyncio.sleep(0.2)
        replicas.replicas["keyvault"][1].process.kill()
        await loader
        assert failures == 0
    finally:
        for channel in channels:
            await channel.close()


async def test_the_seed_walks_green_across_replicas_over_mutual_tls(replicas_tls):
    """Found in review: a list of endpoints was its own TLS authority, which no certificate
    names; one authority (the first replica's) is set for the whole list."""
    replicas = replicas_tls
    endpoints = replicas.endpoints
    data_dir = replicas.operator_file.parent if replicas.operator_file else None
    demo = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cmk_trio.cli", "--output", "json",
        "--endpoint", endpoints["identity"], "--keyvault-endpoint", endpoints["keyvault"],
        "--speech-endpoint", endpoints["speech"],
        "demo", "--data-dir", str(data_dir),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await demo.communicate()
    report = json.loads(out)
    assert report["ok"], [s for s in report["steps"] if not s["ok"]]
    assert any("byte-for-byte the same" in s["detail"] for s in report["steps"])  # the stored ciphertext was looked at
