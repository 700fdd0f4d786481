"""The world of the fault runs: a tenant whose owner has a purge-protected vault, a key, and
speech resources that read their data through it, with the clients to reach all three."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cmk_trio.client.channel import open_channel
from cmk_trio.client.identity import ClientCredentials, IdentityClient
from cmk_trio.client.keyvault import KeyVaultClient
from cmk_trio.client.speech import SpeechClient
from cmk_trio.proto.identity.v1 import resources_pb2 as idres
from cmk_trio.proto.speech.v1 import resources_pb2 as spres
from cmk_trio.rpckit.clock import SystemClock
from cmk_trio.rpckit.errors import ServiceError
from tests.faults.harness import Ledger, Trio
from tests.identity.helpers import make_tenant

VAULT = "faults-kv"


@dataclass
class World:
    speech: SpeechClient
    vaults: KeyVaultClient
    operator_vaults: KeyVaultClient
    operator: IdentityClient
    resources: list[str]
    key_uri: str
    identities: dict[str, str]
    tenant_id: str
    subscription_id: str
    channels: list[Any] = field(default_factory=list)
    admin: IdentityClient | None = None
    """The tenant's administrator, Owner of the subscription (for callers of the HTTPS doors)."""

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()


async def prepare(trio: Trio) -> World:
    """The world, in the trio of processes."""
    endpoints = {name: service.endpoint for name, service in trio.services.items()}
    return await prepare_world(endpoints, trio.operator)


async def prepare_world(
    endpoints: dict[str, str], credentials: ClientCredentials, dial: Callable[[str], Any] = open_channel
) -> World:
    """A tenant whose owner has a purge-protected vault, a key, and two speech resources that
    read their data through it (customer-managed keys, following the key's newest version).
    `dial` opens a channel to an endpoint (over mutual TLS, for the containers)."""
    clock = SystemClock()
    id_channel = dial(endpoints["identity"])
    operator = IdentityClient(id_channel, credentials, clock=clock)
    tenant = await make_tenant(operator, id_channel, clock, "Faults")
    await operator.create_role_assignment(
        tenant.admin.object_id, idres.OWNER, f"/subscriptions/{tenant.subscription_id}"
    )
    kv_channel, sp_channel = dial(endpoints["keyvault"]), dial(endpoints["speech"])
    vaults = KeyVaultClient(kv_channel, tenant.admin_client.token_for)
    speech = SpeechClient(sp_channel, tenant.admin_client.token_for)
    requested = await speech.request_approval(tenant.subscription_id, "fault run")
    if requested.state != spres.APPROVED:  # the platform operator approves (no --auto-approve-cmk)
        await SpeechClient(sp_channel, operator.token_for).approve(tenant.subscription_id, "fault run")
    await vaults.create_vault(VAULT, tenant.subscription_id, "rg", "westeurope", purge_protection=True)
    key = await vaults.create_key(VAULT, "cmk")
    versionless = key.key_id.rsplit("/", 1)[0]
    resources = []
    for name in ("speech-a", "speech-b"):
        made = await speech.create_resource(tenant.subscription_id, "rg", name, "westeurope")
        await speech.set_encryption(made.name, key_uri=versionless, key_subscription_id=tenant.subscription_id)
        resources.append(made.name)
    identities = {r: (await speech.get_resource(r)).identity.principal_id for r in resources}
    return World(
        speech, vaults, KeyVaultClient(kv_channel, operator.token_for), operator, resources, versionless, identities,
        tenant.tenant_id, tenant.subscription_id, [id_channel, kv_channel, sp_channel], tenant.admin_client,
    )  # fmt: skip


async def readable(world: World, name: str) -> str | None:
    """The application's configuration, or None if the read is refused."""
    try:
        return (await world.speech.get_application(name)).configuration_json
    except ServiceError:
        return None


async def refused_now(world: World, name: str) -> bool:
    return await readable(world, name) is None


async def readable_now(world: World, name: str) -> bool:
    return await readable(world, name) is not None


def ambiguous(exc: ServiceError) -> bool:
    """A failure after which the change may or may not have been made (the answer was lost)."""
    return type(exc).__name__ in {"Unavailable", "DeadlineExceeded", "Internal", "Unknown", "Cancelled"}


async def workload(world: World, ledger: Ledger, rng: random.Random, stop: asyncio.Event) -> None:
    """Creates and updates applications and rotates the key, recording what was acknowledged.
    An answer lost to a fault leaves the change in doubt: both outcomes are then acceptable."""
    counter = 0
    while not stop.is_set():
        counter += 1
        ledger.operations += 1
        resource = world.resources[counter % len(world.resources)]
        choice = rng.random()
        try:
            if choice < 0.5 or not ledger.configs:
                config = json.dumps({"n": counter, "secret": f"s-{counter}"})
                try:
                    app = await world.speech.create_application(resource, f"app{counter}", config)
                except ServiceError as exc:
                    if ambiguous(exc):
                        ledger.in_doubt_creates.add(f"app{counter}")
                    raise
                ledger.configs[app.name] = {config}
            elif choice < 0.9:
                name = rng.choice(sorted(ledger.configs))
                current = await world.speech.get_application(name)
                config = json.dumps({"n": counter, "secret": f"u-{counter}"})
                try:
                    await world.speech.update_application(name, current.etag, current.display_name, config)
                except ServiceError as exc:
                    if ambiguous(exc):
                        ledger.configs[name].add(config)
                    raise
                ledger.configs[name] = {config}
            else:
                rotated = await world.vaults.rotate_key(world.key_uri)
                ledger.rotations.append(rotated.version)
        except ServiceError as exc:
            ledger.failed("workload", exc)
            await asyncio.sleep(0.05)
        except Exception as exc:
            ledger.failed("workload", exc)
            await asyncio.sleep(0.05)
