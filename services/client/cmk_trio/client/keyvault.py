"""Client of the key vault service: vaults and policies with a management token, keys and
key operations with a vault token, audit with a management token."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

import grpc
from google.protobuf import field_mask_pb2
from google.protobuf.message import Message

from cmk_trio.client.calls import DEFAULT_TIMEOUT, Tokens, call_as, fixed_token
from cmk_trio.proto.keyvault.v1 import keyvault_service_pb2 as pb
from cmk_trio.proto.keyvault.v1 import keyvault_service_pb2_grpc as pb_grpc
from cmk_trio.proto.keyvault.v1 import resources_pb2 as res
from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.status import error_from_rpc

R = TypeVar("R")


class KeyVaultClient:
    """The key vault's API. `tokens(audience)` returns a bearer token for an audience
    (an IdentityClient's `token_for` does)."""

    def __init__(self, channel: grpc.aio.Channel, tokens: Tokens, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.channel = channel
        self.vaults = pb_grpc.VaultServiceStub(channel)
        self.keys = pb_grpc.KeyServiceStub(channel)
        self.secrets = pb_grpc.SecretServiceStub(channel)
        self.audit = pb_grpc.AuditServiceStub(channel)
        self.events = pb_grpc.EventServiceStub(channel)
        self._tokens = tokens
        self.timeout = timeout
        """Seconds each call may take (a `deadline` block overrides it)."""

    def with_token(self, token: str) -> KeyVaultClient:
        """This client with `token` for each call: a service acting for one of its resources,
        with the token it got for that resource's identity. The channel and stubs are
        shared; only this small view is made."""
        view = copy.copy(self)
        view._tokens = fixed_token(token)
        return view

    async def _mgmt(self, method: Callable[..., Awaitable[R]], request: Message) -> R:
        return await call_as(self._tokens, audiences.MANAGEMENT, method, request, timeout=self.timeout)

    async def _data(self, method: Callable[..., Awaitable[R]], request: Message) -> R:
        return await call_as(self._tokens, audiences.VAULT, method, request, timeout=self.timeout)

    # --- vaults -----------------------------------------------------------------------

    async def create_vault(
        self, name: str, subscription_id: str, resource_group: str, location: str, *,
        soft_delete: bool = True, retention_days: int = 90, purge_protection: bool = False, sku: str = "",
        tags: Mapping[str, str] | None = None, access_policies: Iterable[res.AccessPolicy] | None = None,
    ) -> res.Vault:  # fmt: skip
        """A new vault. Its creator gets an entry with every permission, unless
        `access_policies` is given: then those are its entries, and only those."""
        vault = res.Vault(
            vault_name=name, subscription_id=subscription_id, resource_group=resource_group, location=location,
            soft_delete_enabled=soft_delete, soft_delete_retention_days=retention_days,
            purge_protection_enabled=purge_protection, sku=sku, tags=tags,
            access_policies=list(access_policies or ()),
        )  # fmt: skip
        explicit = access_policies is not None
        return await self._mgmt(
            self.vaults.CreateVault, pb.CreateVaultRequest(vault=vault, explicit_access_policies=explicit)
        )

    async def check_vault_name(self, name: str) -> pb.CheckVaultNameAvailabilityResponse:
        """Whether a vault could be made under `name` now (names are global), and why not."""
        request = pb.CheckVaultNameAvailabilityRequest(vault_name=name)
        return await self._mgmt(self.vaults.CheckVaultNameAvailability, request)

    async def get_vault(self, name: str) -> res.Vault:
        return await self._mgmt(self.vaults.GetVault, pb.GetVaultRequest(name=f"vaults/{name}"))

    async def list_vaults(self, subscription_id: str, *, page_token: str = "") -> pb.ListVaultsResponse:
        request = pb.ListVaultsRequest(parent=f"subscriptions/{subscription_id}", page_token=page_token)
        return await self._mgmt(self.vaults.ListVaults, request)

    async def list_deleted_vaults(self, subscription_id: str, *, page_token: str = "") -> pb.ListDeletedVaultsResponse:
        request = pb.ListDeletedVaultsRequest(parent=f"subscriptions/{subscription_id}", page_token=page_token)
        return await self._mgmt(self.vaults.ListDeletedVaults, request)

    async def update_vault(
        self, name: str, *, purge_protection: bool | None = None, soft_delete: bool | None = None,
        sku: str | None = None, tags: Mapping[str, str] | None = None,
    ) -> res.Vault:  # fmt: skip
        """Turn purge protection or soft-delete on, set the pricing tier, replace the tags."""
        vault = res.Vault(name=f"vaults/{name}", sku=sku or "", tags=tags)
        paths = [path for path, value in (("sku", sku), ("tags", tags)) if value is not None]
        if purge_protection is not None:
            vault.purge_protection_enabled = purge_protection
            paths.append("purge_protection_enabled")
        if soft_delete is not None:
            vault.soft_delete_enabled = soft_delete
            paths.append("soft_delete_enabled")
        mask = field_mask_pb2.FieldMask(paths=paths)
        return await self._mgmt(self.vaults.UpdateVault, pb.UpdateVaultRequest(vault=vault, update_mask=mask))

    async def delete_vault(self, name: str) -> None:
        await self._mgmt(self.vaults.DeleteVault, pb.DeleteVaultRequest(name=f"vaults/{name}"))

    async def recover_vault(self, name: str) -> res.Vault:
        return await self._mgmt(self.vaults.RecoverVault, pb.RecoverVaultRequest(name=f"vaults/{name}"))

    async def purge_vault(self, name: str) -> None:
        await self._mgmt(self.vaults.PurgeVault, pb.PurgeVaultRequest(name=f"vaults/{name}"))

    async def set_access_policy(
        self, vault: str, tenant_id: str, object_id: str, permissions: Iterable[str], secrets: Iterable[str] = ()
    ) -> res.Vault:
        """Replace a principal's entry: `permissions` on keys, `secrets` on secrets."""
        policy = res.AccessPolicy(tenant_id=tenant_id, object_id=object_id, key_permissions=list(permissions),
                                  secret_permissions=list(secrets))  # fmt: skip
        return await self._mgmt(
            self.vaults.SetAccessPolicy, pb.SetAccessPolicyRequest(name=f"vaults/{vault}", access_policy=policy)
        )

    async def replace_access_policies(self, vault: str, policies: Iterable[res.AccessPolicy]) -> res.Vault:
        """Make the vault's entries exactly `policies`, all or nothing."""
        request = pb.ReplaceAccessPoliciesRequest(name=f"vaults/{vault}", access_policies=list(policies))
        return await self._mgmt(self.vaults.ReplaceAccessPolicies, request)

    async def update_access_policy(
        self,
        vault: str,
        tenant_id: str,
        object_id: str,
        *,
        add: Iterable[str] = (),
        remove: Iterable[str] = (),
        add_secrets: Iterable[str] = (),
        remove_secrets: Iterable[str] = (),
    ) -> res.Vault:
        request = pb.UpdateAccessPolicyRequest(
            name=f"vaults/{vault}", tenant_id=tenant_id, object_id=object_id,
            add_permissions=list(add), remove_permissions=list(remove),
            add_secret_permissions=list(add_secrets), remove_secret_permissions=list(remove_secrets),
        )  # fmt: skip
        return await self._mgmt(self.vaults.UpdateAccessPolicy, request)

    async def remove_access_policy(self, vault: str, object_id: str) -> res.Vault:
        return await self._mgmt(
            self.vaults.RemoveAccessPolicy, pb.RemoveAccessPolicyRequest(name=f"vaults/{vault}", object_id=object_id)
        )

    # --- keys -------------------------------------------------------------------------

    async def create_key(
        self,
        vault: str,
        name: str,
        *,
        size: int = 2048,
        curve: res.KeyCurve.ValueType | None = None,
        attributes: res.KeyVersion | None = None,
    ) -> res.KeyVersion:
        """An RSA key of `size` bits, or with `curve` (res.P_256, P_384, P_521) an EC key."""
        key = res.KeyVersion()
        if attributes is not None:
            key.CopyFrom(attributes)
        if curve is not None:
            key.key_type, key.curve = res.EC, curve
        else:
            key.key_size = size
        return await self._data(
            self.keys.CreateKey, pb.CreateKeyRequest(parent=f"vaults/{vault}", key_name=name, key=key)
        )

    async def import_key(self, vault: str, name: str, jwk_json: str) -> res.KeyVersion:
        return await self._data(
            self.keys.ImportKey, pb.ImportKeyRequest(parent=f"vaults/{vault}", key_name=name, key_material=jwk_json)
        )

    async def get_key(self, key: str) -> res.KeyVersion:
        return await self._data(self.keys.GetKey, pb.GetKeyRequest(name=key))

    async def list_keys(self, vault: str, *, page_token: str = "") -> pb.ListKeysResponse:
        return await self._data(self.keys.ListKeys, pb.ListKeysRequest(parent=f"vaults/{vault}", page_token=page_token))

    async def list_versions(self, key: str, *, page_token: str = "") -> pb.ListKeyVersionsResponse:
        return await self._data(self.keys.ListKeyVersions, pb.ListKeyVersionsRequest(parent=key, page_token=page_token))

    async def update_key(self, key: str, attributes: res.KeyVersion, paths: Iterable[str]) -> res.KeyVersion:
        mask = field_mask_pb2.FieldMask(paths=list(paths))
        return await self._data(
            self.keys.UpdateKey, pb.UpdateKeyRequest(name=key, attributes=attributes, update_mask=mask)
        )

    async def rotate_key(self, key: str) -> res.KeyVersion:
        return await self._data(self.keys.RotateKey, pb.RotateKeyRequest(name=key))

    async def wrap(self, key: str, plaintext: bytes, algorithm: int = res.RSA_OAEP_256) -> pb.WrapKeyResponse:
        request = pb.WrapKeyRequest(
            name=key, algorithm=res.EncryptionAlgorithm.ValueType(algorithm), plaintext=plaintext
        )
        return await self._data(self.keys.WrapKey, request)

    async def unwrap(self, key: str, ciphertext: bytes, algorithm: int = res.RSA_OAEP_256) -> pb.UnwrapKeyResponse:
        request = pb.UnwrapKeyRequest(
            name=key, algorithm=res.EncryptionAlgorithm.ValueType(algorithm), ciphertext=ciphertext
        )
        return await self._data(self.keys.UnwrapKey, request)

    async def sign(self, key: str, algorithm: res.SignatureAlgorithm.ValueType, digest: bytes) -> pb.SignResponse:
        return await self._data(self.keys.Sign, pb.SignRequest(name=key, algorithm=algorithm, digest=digest))

    async def verify(
        self, key: str, algorithm: res.SignatureAlgorithm.ValueType, digest: bytes, signature: bytes
    ) -> pb.VerifyResponse:
        request = pb.VerifyRequest(name=key, algorithm=algorithm, digest=digest, signature=signature)
        return await self._data(self.keys.Verify, request)

    async def delete_key(self, key: str) -> res.DeletedKey:
        return await self._data(self.keys.DeleteKey, pb.DeleteKeyRequest(name=key))

    async def get_deleted_key(self, key: str) -> res.DeletedKey:
        return await self._data(self.keys.GetDeletedKey, pb.GetDeletedKeyRequest(name=key))

    async def list_deleted_keys(self, vault: str) -> pb.ListDeletedKeysResponse:
        return await self._data(self.keys.ListDeletedKeys, pb.ListDeletedKeysRequest(parent=f"vaults/{vault}"))

    async def recover_key(self, key: str) -> res.KeyVersion:
        return await self._data(self.keys.RecoverDeletedKey, pb.RecoverDeletedKeyRequest(name=key))

    async def backup_key(self, key: str) -> bytes:
        return (await self._data(self.keys.BackupKey, pb.BackupKeyRequest(name=key))).backup

    async def restore_key(self, vault: str, backup: bytes) -> res.KeyVersion:
        return await self._data(self.keys.RestoreKey, pb.RestoreKeyRequest(parent=f"vaults/{vault}", backup=backup))

    async def purge_key(self, key: str) -> None:
        await self._data(self.keys.PurgeDeletedKey, pb.PurgeDeletedKeyRequest(name=key))

    # --- secrets ----------------------------------------------------------------------

    async def set_secret(
        self, vault: str, name: str, value: str, *, attributes: res.Secret | None = None
    ) -> res.Secret:
        secret = res.Secret()
        if attributes is not None:
            secret.CopyFrom(attributes)
        secret.value = value
        return await self._data(
            self.secrets.SetSecret, pb.SetSecretRequest(parent=f"vaults/{vault}", secret_name=name, secret=secret)
        )

    async def get_secret(self, secret: str) -> res.Secret:
        return await self._data(self.secrets.GetSecret, pb.GetSecretRequest(name=secret))

    async def list_secrets(self, vault: str, *, page_token: str = "") -> pb.ListSecretsResponse:
        request = pb.ListSecretsRequest(parent=f"vaults/{vault}", page_token=page_token)
        return await self._data(self.secrets.ListSecrets, request)

    async def list_secret_versions(self, secret: str, *, page_token: str = "") -> pb.ListSecretVersionsResponse:
        request = pb.ListSecretVersionsRequest(parent=secret, page_token=page_token)
        return await self._data(self.secrets.ListSecretVersions, request)

    async def update_secret(self, secret: str, attributes: res.Secret, paths: Iterable[str]) -> res.Secret:
        mask = field_mask_pb2.FieldMask(paths=list(paths))
        request = pb.UpdateSecretRequest(name=secret, attributes=attributes, update_mask=mask)
        return await self._data(self.secrets.UpdateSecret, request)

    async def delete_secret(self, secret: str) -> res.DeletedSecret:
        return await self._data(self.secrets.DeleteSecret, pb.DeleteSecretRequest(name=secret))

    async def get_deleted_secret(self, secret: str) -> res.DeletedSecret:
        return await self._data(self.secrets.GetDeletedSecret, pb.GetDeletedSecretRequest(name=secret))

    async def list_deleted_secrets(self, vault: str) -> pb.ListDeletedSecretsResponse:
        request = pb.ListDeletedSecretsRequest(parent=f"vaults/{vault}")
        return await self._data(self.secrets.ListDeletedSecrets, request)

    async def recover_secret(self, secret: str) -> res.Secret:
        return await self._data(self.secrets.RecoverDeletedSecret, pb.RecoverDeletedSecretRequest(name=secret))

    async def purge_secret(self, secret: str) -> None:
        await self._data(self.secrets.PurgeDeletedSecret, pb.PurgeDeletedSecretRequest(name=secret))

    async def backup_secret(self, secret: str) -> bytes:
        return (await self._data(self.secrets.BackupSecret, pb.BackupSecretRequest(name=secret))).backup

    async def restore_secret(self, vault: str, backup: bytes) -> res.Secret:
        request = pb.RestoreSecretRequest(parent=f"vaults/{vault}", backup=backup)
        return await self._data(self.secrets.RestoreSecret, request)

    # --- audit and events -------------------------------------------------------------

    async def list_audit(
        self, vault: str = "", *, result: str = "", page_token: str = "", page_size: int = 0, key_name: str = "",
        caller_object_id: str = "",
    ) -> pb.ListAuditRecordsResponse:  # fmt: skip
        request = pb.ListAuditRecordsRequest(
            parent=f"vaults/{vault}" if vault else "", result=result, page_token=page_token, page_size=page_size,
            key_name=key_name, caller_object_id=caller_object_id,
        )  # fmt: skip
        return await self._mgmt(self.audit.ListAuditRecords, request)

    async def checkpoint(self) -> res.AuditCheckpoint:
        return await self._mgmt(self.audit.CreateAuditCheckpoint, pb.CreateAuditCheckpointRequest())

    async def verify_audit(self, checkpoint: res.AuditCheckpoint | None = None) -> pb.VerifyAuditLogResponse:
        request = (
            pb.VerifyAuditLogRequest(checkpoint=checkpoint) if checkpoint is not None else pb.VerifyAuditLogRequest()
        )
        return await self._mgmt(self.audit.VerifyAuditLog, request)

    async def watch_events(
        self, after_sequence: int = 0, on_heartbeat: Callable[[], None] | None = None
    ) -> AsyncIterator[res.Event]:
        """The vault's event stream from `after_sequence`. Heartbeats (sent once the replay is
        current, and when idle) are not yielded: `on_heartbeat` is told of them."""
        request = pb.WatchEventsRequest(after_sequence=after_sequence)
        async for event in self._stream(self.events.WatchEvents, request):
            if event.type == res.HEARTBEAT:
                if on_heartbeat is not None:
                    on_heartbeat()
                continue
            yield event

    async def stream_audit(self, after_sequence: int = 0) -> AsyncIterator[res.AuditRecord]:
        request = pb.StreamAuditRecordsRequest(after_sequence=after_sequence)
        async for record in self._stream(self.audit.StreamAuditRecords, request):
            yield record

    # a stub's streaming method, whose items are that method's messages
    async def _stream(self, method: Any, request: Message) -> AsyncIterator[Any]:
        token = await self._tokens(audiences.MANAGEMENT)
        stream = method(request, metadata=(("authorization", f"Bearer {token}"),))
        try:
            async for item in stream:
                yield item
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from exc
        finally:
            stream.cancel()
