"""The gRPC implementations of the gateways the speech domain needs: the key vault (with a
given bearer token) and identity (as the platform that owns the managed identities)."""

from __future__ import annotations

import grpc

from cmk_trio.client.calls import DEFAULT_TIMEOUT, deadline, fixed_token
from cmk_trio.client.identity import IdentityClient, principal_name
from cmk_trio.client.keyvault import KeyVaultClient
from cmk_trio.proto.keyvault.v1 import resources_pb2 as kvres
from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.clock import Clock
from cmk_trio.rpckit.token_cache import AccessToken, TokenCache
from cmk_trio.speech.customer_keys import KEY_PERMISSIONS, KeyInfo, VaultInfo
from cmk_trio.speech.errors import NotFound

VAULT_DEADLINE_S = DEFAULT_TIMEOUT / 2
"""How long speech waits for the key vault to wrap or unwrap a data key: half a caller's own
default deadline, so that a vault that does not answer (paused, or a network that drops
packets: no error, only silence) is reported to the caller as CUSTOMER_KEY_VAULT_UNREACHABLE
before the caller's deadline passes and it learns only DEADLINE_EXCEEDED."""

OPERATION_NAMES = {kvres.WRAP_KEY: "wrapKey", kvres.UNWRAP_KEY: "unwrapKey", kvres.ENCRYPT: "encrypt",
                   kvres.DECRYPT: "decrypt", kvres.SIGN: "sign", kvres.VERIFY: "verify"}  # fmt: skip


class GrpcVaultGateway:
    """The key vault service over one channel and one client; each call carries the token it
    is given (a view of the client with that token: concurrent calls for different
    identities share the channel)."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._kv = KeyVaultClient(channel, fixed_token(""))

    def _as(self, token: str) -> KeyVaultClient:
        return self._kv.with_token(token)

    async def get_vault(self, token: str, vault_name: str) -> VaultInfo:
        kv = self._as(token)
        v = await kv.get_vault(vault_name)
        return VaultInfo(v.vault_name, v.tenant_id, v.subscription_id, v.location, v.soft_delete_enabled,
                         v.purge_protection_enabled)  # fmt: skip

    async def grant(self, token: str, vault_name: str, tenant_id: str, object_id: str) -> frozenset[str] | None:
        kv = self._as(token)
        before = next((p for p in (await kv.get_vault(vault_name)).access_policies if p.object_id == object_id), None)
        await kv.update_access_policy(vault_name, tenant_id, object_id, add=KEY_PERMISSIONS)
        return frozenset(before.key_permissions) if before is not None else None

    async def restore(
        self, token: str, vault_name: str, tenant_id: str, object_id: str, before: frozenset[str] | None
    ) -> None:
        kv = self._as(token)
        if before is None:
            await kv.remove_access_policy(vault_name, object_id)
        else:
            await kv.set_access_policy(vault_name, tenant_id, object_id, sorted(before))

    async def get_key(self, token: str, key: str) -> KeyInfo:
        kv = self._as(token)
        k = await kv.get_key(key)
        ops = frozenset(OPERATION_NAMES[o] for o in k.key_operations if o in OPERATION_NAMES)
        return KeyInfo(k.key_id, k.key_size if k.key_type == kvres.RSA else 0, k.enabled, ops)

    async def wrap(self, token: str, key_id: str, plaintext: bytes) -> tuple[str, bytes]:
        kv = self._as(token)
        with deadline(VAULT_DEADLINE_S):
            reply = await kv.wrap(key_id, plaintext)
        return reply.key_id, reply.ciphertext

    async def unwrap(self, token: str, key_id: str, wrapped: bytes) -> bytes:
        kv = self._as(token)
        with deadline(VAULT_DEADLINE_S):
            return (await kv.unwrap(key_id, wrapped)).plaintext


class GrpcIdentityGateway:
    """Identity, as the speech platform principal: managed identities and their vault tokens
    (cached per identity, renewed before they expire)."""

    def __init__(self, client: IdentityClient, clock: Clock) -> None:
        self._client = client
        self._clock = clock
        self._tokens: dict[str, TokenCache] = {}

    async def create_identity(self, tenant_id: str, resource_id: str) -> str:
        return (await self._client.create_managed_identity(tenant_id, resource_id)).object_id

    async def delete_identity(self, tenant_id: str, object_id: str) -> None:
        self.forget_token(object_id)
        try:
            await self._client.delete_managed_identity(tenant_id, object_id)
        except NotFound:
            pass  # already gone: the goal is reached

    async def identity_token(self, tenant_id: str, object_id: str) -> str:
        cache = self._tokens.get(object_id)
        if cache is None:

            async def fetch(audience: str) -> AccessToken:
                issued = await self._client.issue_managed_identity_token(principal_name(tenant_id, object_id), audience)
                return AccessToken.received(issued.access_token, issued.expires_in, self._clock.now())

            cache = self._tokens[object_id] = TokenCache(fetch, self._clock)
        return await cache.get(audiences.VAULT)

    def forget_token(self, object_id: str | None = None) -> None:
        if object_id is None:
            self._tokens.clear()
        else:
            self._tokens.pop(object_id, None)

    async def tenant_of(self, subscription_id: str) -> str | None:
        try:
            return (await self._client.get_subscription(subscription_id)).tenant_id
        except NotFound:
            return None
