"""The scenarios `cmk load` runs, and the tenant, vault, key and resources they need,
prepared through the public API like any customer would."""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import grpc

from cmk_trio.client.channel import open_channel
from cmk_trio.client.identity import ClientCredentials, IdentityClient, principal_name
from cmk_trio.client.keyvault import KeyVaultClient
from cmk_trio.client.speech import SpeechClient
from cmk_trio.loadgen.runner import Request
from cmk_trio.proto.identity.v1 import resources_pb2 as idres
from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.clock import SystemClock
from cmk_trio.rpckit.token_cache import AccessToken, TokenCache

SCENARIOS = ("read", "read-mm", "unwrap", "token", "write", "mixed")
WRITE_POOL = 64
IDENTITY_GRANT = ["get", "wrapKey", "unwrapKey"]
"""What speech grants a resource's managed identity on the vault: what a revocation trial puts back."""
CONFIG = json.dumps({"commands": [{"name": "TurnOn", "examples": ["turn on the light"] * 8}], "padding": "x" * 700})


@dataclass
class Prepared:
    """What the scenarios act on, and the clients to act with."""

    speech: SpeechClient
    vaults: KeyVaultClient
    app_cmk: str
    app_mm: str
    writable: list[str]
    """Applications the write scenario updates in turn: more than the writers in flight, so
    that two writers never race for one etag."""
    key_id: str
    wrapped: bytes
    app_credentials: ClientCredentials
    owner: ClientCredentials
    """The tenant's admin, Owner of the subscription: what `speech` and `vaults` act as."""
    identity: IdentityClient
    channels: list[grpc.aio.Channel]
    unwrap_token: Callable[[str], Awaitable[str]] | None = None
    """Tokens of the customer-managed resource's managed identity, when the speech platform's
    credentials were given: `unwrap` then calls the vault exactly as speech does."""
    tenant_id: str = ""
    vault_name: str = ""
    resources: list[str] = field(default_factory=list)
    principals: list[str] = field(default_factory=list)
    """The object ids prepare made, the tenant's admin last."""

    async def unwrapping_identity(self) -> tuple[str, str, str]:
        """(vault name, tenant id, object id) of the customer-managed resource's managed identity,
        the principal whose access policy a revocation trial removes."""
        resource = self.app_cmk.split("/applications/")[0]
        identity = (await self.speech.get_resource(resource)).identity.principal_id
        return self.key_id.split("//")[1].split(".")[0], self.app_credentials.tenant_id, identity

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()

    async def clean_up(self) -> list[str]:
        """Delete what prepare made, as far as the API allows, and say what stays: the
        resources (with their applications and managed identities), the vault (soft-deleted;
        purge protection keeps it, name taken, for its retention days, as in the real
        service), and the principals. The directory cannot delete a tenant or subscription."""
        for name in self.resources:
            await self.speech.delete_resource(name)
        await self.vaults.delete_vault(self.vault_name)
        for object_id in self.principals:
            await self.identity.delete_principal(self.tenant_id, object_id)
        return [
            f"tenant {self.tenant_id} and its subscription (the directory has no delete)",
            f"vault {self.vault_name}, soft-deleted, with purge protection until its retention ends",
        ]


async def prepare(
    endpoints: dict[str, str],
    operator: ClientCredentials,
    dial: Callable[[str], grpc.aio.Channel] = open_channel,
    platform: ClientCredentials | None = None,
) -> Prepared:
    """A tenant with an Owner, an approved subscription, a vault with an RSA 2048 key, one
    customer-managed and one Microsoft-managed resource with an application each, and who
    unwraps (the vault's cold path): the customer-managed resource's managed identity, with
    tokens issued to the speech platform (`platform`, its credentials, as on a machine that
    runs the trio), or else an application principal given unwrapKey, which takes the same
    path through the vault."""
    channels = [dial(endpoints[n]) for n in ("identity", "keyvault", "speech")]
    op = IdentityClient(channels[0], operator)
    tag = os.urandom(3).hex()
    tenant = await op.create_tenant(f"load {tag}")
    sub = await op.create_subscription(tenant.tenant_id, "load")
    admin = await op.create_principal(tenant.tenant_id, idres.USER, "load admin", tenant_admin=True)
    secret = await op.add_client_secret(tenant.tenant_id, admin.object_id, "load")
    await op.create_role_assignment(admin.object_id, idres.OWNER, f"/subscriptions/{sub.subscription_id}")
    owner = ClientCredentials(tenant.tenant_id, secret.client_id, secret.secret_value)
    user = IdentityClient(channels[0], owner)
    speech = SpeechClient(channels[2], user.token_for)
    vaults = KeyVaultClient(channels[1], user.token_for)
    await speech.request_approval(sub.subscription_id)
    await SpeechClient(channels[2], op.token_for).approve(sub.subscription_id)
    vault = f"load-{tag}"
    await vaults.create_vault(vault, sub.subscription_id, "load", "westeurope", purge_protection=True)
    key = await vaults.create_key(vault, "load")
    cmk = await speech.create_resource(sub.subscription_id, "load", f"cmk-{tag}", "westeurope")
    mm = await speech.create_resource(sub.subscription_id, "load", f"mm-{tag}", "westeurope")
    await speech.set_encryption(cmk.name, key_uri=key.key_id, key_subscription_id=sub.subscription_id)
    app_cmk = await speech.create_application(cmk.name, "load", CONFIG)
    app_mm = await speech.create_application(mm.name, "load", CONFIG)
    writable = [(await speech.create_application(mm.name, f"write-{i}", CONFIG)).name for i in range(WRITE_POOL)]
    worker = await op.create_principal(tenant.tenant_id, idres.SERVICE_PRINCIPAL, "load unwrapper")
    worker_secret = await op.add_client_secret(tenant.tenant_id, worker.object_id, "load")
    await vaults.set_access_policy(vault, tenant.tenant_id, worker.object_id, ["unwrapKey"])
    wrapped = (await vaults.wrap(key.key_id, os.urandom(32))).ciphertext
    worker_creds = ClientCredentials(tenant.tenant_id, worker_secret.client_id, worker_secret.secret_value)
    unwrap_token = None
    if platform is not None:
        identity = (await speech.get_resource(cmk.name)).identity.principal_id
        speech_platform = IdentityClient(channels[0], platform)

        async def fetch(audience: str) -> AccessToken:
            issued = await speech_platform.issue_managed_identity_token(
                principal_name(tenant.tenant_id, identity), audience
            )
            return AccessToken.received(issued.access_token, issued.expires_in, datetime.now(UTC))

        unwrap_token = TokenCache(fetch, SystemClock()).get
    return Prepared(
        speech, vaults, app_cmk.name, app_mm.name, writable, key.key_id, wrapped, worker_creds, owner, op, channels,
        unwrap_token=unwrap_token, tenant_id=tenant.tenant_id, vault_name=vault, resources=[cmk.name, mm.name],
        principals=[worker.object_id, admin.object_id],
    )  # fmt: skip


def scenario(name: str, prepared: Prepared, weights: dict[str, int] | None = None) -> Request:
    """One request of a scenario, as an argument-less coroutine function."""
    p = prepared
    worker = IdentityClient(p.identity.channel, p.app_credentials)
    unwrapper = KeyVaultClient(p.vaults.channel, p.unwrap_token or worker.token_for)
    etags: dict[str, str] = {}
    turn = [0]

    async def read() -> object:
        return await p.speech.get_application(p.app_cmk)

    async def read_mm() -> object:
        return await p.speech.get_application(p.app_mm)

    async def unwrap() -> object:
        return await unwrapper.unwrap(p.key_id, p.wrapped)

    async def token() -> object:
        return await worker.issue_token(p.app_credentials, audiences.VAULT)

    async def write() -> object:
        turn[0] += 1
        name = p.writable[turn[0] % len(p.writable)]
        if name not in etags:
            etags[name] = (await p.speech.get_application(name)).etag
        updated = await p.speech.update_application(name, etags[name], "load", CONFIG)
        etags[name] = updated.etag
        return updated

    table = {"read": read, "read-mm": read_mm, "unwrap": unwrap, "token": token, "write": write}
    if name != "mixed":
        return table[name]
    mix = weights or {"read": 80, "read-mm": 10, "unwrap": 5, "write": 5}
    order = [table[n] for n, w in mix.items() for _ in range(w)]
    counter = [0]

    async def mixed() -> object:
        # A fixed interleaving in the weights' proportions: repeatable from run to run.
        counter[0] += 1
        return await order[counter[0] % len(order)]()

    return mixed
