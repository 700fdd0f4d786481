"""The world of the fault runs: a tenant whose owner has a purge-protected vault, a key, and
speech resources that read their data through it, with the clients to reach all three."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cmk_trio.client.channel import open_channel
from cmk_trio.client.identity import IdentityClient
from cmk_trio.client.keyvault import KeyVaultClient
from cmk_trio.client.speech import SpeechClient
from cmk_trio.proto.identity.v1 import resources_pb2 as idres
from cmk_trio.rpckit.clock import SystemClock
from cmk_trio.rpckit.errors import ServiceError
from tests.faults.harness import Trio
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

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()


async def prepare(trio: Trio) -> World:
    """A tenant whose owner has a purge-protected vault, a key, and two speech resources that
    read their data through it (customer-managed keys, following the key's newest version)."""
    clock = SystemClock()
    id_channel = open_channel(trio.identity.endpoint)
    operator = IdentityClient(id_channel, trio.operator, clock=clock)
    tenant = await make_tenant(operator, id_channel, clock, "Faults")
    await operator.create_role_assignment(
        tenant.admin.object_id, idres.OWNER, f"/subscriptions/{tenant.subscription_id}"
    )
    kv_channel, sp_channel = open_channel(trio.keyvault.endpoint), open_channel(trio.speech.endpoint)
    vaults = KeyVaultClient(kv_channel, tenant.admin_client.token_for)
    speech = SpeechClient(sp_channel, tenant.admin_client.token_for)
    await speech.request_approval(tenant.subscription_id, "fault run")
    await vaults.create_vault(VAULT, tenant.subscription_id, "rg", "westeurope", purge_protection=True)
    key = await vaults.create_key(VAULT, "cmk")
    versionless = key.key_id.rsplit("/", 1)[0]
    resources = []
    for name in ("speech-a", "speech-b"):
        made = await speech.create_resource(tenant.subscription_id, "rg", name, "westeurope")
        await speech.set_encryption(
            made.name, key_uri=versionless, key_subscription_id=tenant.subscription_id, follow_latest_version=True
        )
        resources.append(made.name)
    identities = {r: (await speech.get_resource(r)).identity.principal_id for r in resources}
    return World(
        speech, vaults, KeyVaultClient(kv_channel, operator.token_for), operator, resources, versionless, identities,
        tenant.tenant_id, tenant.subscription_id, [id_channel, kv_channel, sp_channel],
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
