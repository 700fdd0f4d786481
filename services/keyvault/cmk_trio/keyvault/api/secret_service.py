"""cmk.keyvault.v1.SecretService: secrets and their versions."""

from __future__ import annotations

from google.protobuf import empty_pb2

from cmk_trio.keyvault.api.convert import Converter, secret_attributes_of
from cmk_trio.keyvault.api.trail import AuditTrail, CallScope
from cmk_trio.keyvault.model import Vault
from cmk_trio.keyvault.vault_secrets import Secrets
from cmk_trio.platform.key_names import SecretRef
from cmk_trio.proto.keyvault.v1 import keyvault_service_pb2 as pb
from cmk_trio.proto.keyvault.v1 import keyvault_service_pb2_grpc as pb_grpc
from cmk_trio.proto.keyvault.v1 import resources_pb2 as res
from cmk_trio.rpckit.storage import decode_page_token, encode_page_token, page_size_of
from cmk_trio.rpckit.types import Context
from cmk_trio.rpckit.validation import mask_paths

SECRET_FIELDS = {"content_type", "enabled", "not_before", "expires", "tags"}


class SecretApi(pb_grpc.SecretServiceServicer):
    """cmk.keyvault.v1.SecretService."""

    def __init__(self, secrets: Secrets, convert: Converter, trail: AuditTrail) -> None:
        self._s = secrets
        self._c = convert
        self._trail = trail

    def _ref(self, scope: CallScope, value: str, field: str = "name") -> SecretRef:
        ref = self._s.parse(field, value)
        scope.vault_name, scope.key_name, scope.key_version = ref.vault_name, ref.secret_name, ref.version or ""
        return ref

    async def _vault(self, name: str) -> Vault | None:
        return await self._s.store.get_vault(name)

    async def SetSecret(self, request: pb.SetSecretRequest, context: Context) -> res.Secret:
        async with self._trail.call("SetSecret") as scope:
            vault = scope.vault(request.parent, "parent")
            scope.key_name = request.secret_name[:127]
            made = await self._s.set(scope.authenticated, vault, request.secret_name, request.secret.value,
                                     secret_attributes_of(request.secret, None))  # fmt: skip
            return self._c.secret(made.version, await self._vault(vault), made.value)

    async def GetSecret(self, request: pb.GetSecretRequest, context: Context) -> res.Secret:
        async with self._trail.call("GetSecret") as scope:
            ref = self._ref(scope, request.name)
            got = await self._s.get(scope.authenticated, ref)
            scope.key_version = got.version.version
            return self._c.secret(got.version, await self._vault(ref.vault_name), got.value)

    async def ListSecrets(self, request: pb.ListSecretsRequest, context: Context) -> pb.ListSecretsResponse:
        async with self._trail.call("ListSecrets") as scope:
            vault = scope.vault(request.parent, "parent")
            after, limit = decode_page_token("secrets", request.page_token), page_size_of(request.page_size)
            found = await self._s.list_secrets(scope.authenticated, vault, deleted=False, after=after, limit=limit)
            v = await self._vault(vault)
            return pb.ListSecretsResponse(
                secrets=[self._c.secret(latest, v) for _, latest in found if latest is not None],
                next_page_token=encode_page_token("secrets", found[-1][0].secret_name) if len(found) == limit else "",
            )

    async def ListSecretVersions(
        self, request: pb.ListSecretVersionsRequest, context: Context
    ) -> pb.ListSecretVersionsResponse:
        async with self._trail.call("ListSecretVersions") as scope:
            ref = self._ref(scope, request.parent, "parent")
            after, limit = decode_page_token("secretVersions", request.page_token), page_size_of(request.page_size)
            found = await self._s.list_versions(scope.authenticated, ref, after=after, limit=limit)
            v = await self._vault(ref.vault_name)
            return pb.ListSecretVersionsResponse(
                versions=[self._c.secret(s, v) for s in found],
                next_page_token=encode_page_token("secretVersions", found[-1].version) if len(found) == limit else "",
            )

    async def UpdateSecret(self, request: pb.UpdateSecretRequest, context: Context) -> res.Secret:
        async with self._trail.call("UpdateSecret") as scope:
            ref = self._ref(scope, request.name)
            paths = mask_paths(request.update_mask, SECRET_FIELDS)
            updated = await self._s.update(scope.authenticated, ref, secret_attributes_of(request.attributes, paths))
            scope.key_version = updated.version
            return self._c.secret(updated, await self._vault(ref.vault_name))

    async def DeleteSecret(self, request: pb.DeleteSecretRequest, context: Context) -> res.DeletedSecret:
        async with self._trail.call("DeleteSecret") as scope:
            ref = self._ref(scope, request.name)
            secret, latest = await self._s.delete(scope.authenticated, ref)
            return self._c.deleted_secret(secret, latest, await self._vault(ref.vault_name))

    async def GetDeletedSecret(self, request: pb.GetDeletedSecretRequest, context: Context) -> res.DeletedSecret:
        async with self._trail.call("GetDeletedSecret") as scope:
            ref = self._ref(scope, request.name)
            secret, latest = await self._s.get_deleted(scope.authenticated, ref)
            return self._c.deleted_secret(secret, latest, await self._vault(ref.vault_name))

    async def ListDeletedSecrets(
        self, request: pb.ListDeletedSecretsRequest, context: Context
    ) -> pb.ListDeletedSecretsResponse:
        async with self._trail.call("ListDeletedSecrets") as scope:
            vault = scope.vault(request.parent, "parent")
            after, limit = decode_page_token("deletedSecrets", request.page_token), page_size_of(request.page_size)
            found = await self._s.list_secrets(scope.authenticated, vault, deleted=True, after=after, limit=limit)
            v = await self._vault(vault)
            token = encode_page_token("deletedSecrets", found[-1][0].secret_name) if len(found) == limit else ""
            return pb.ListDeletedSecretsResponse(
                deleted_secrets=[self._c.deleted_secret(s, latest, v) for s, latest in found], next_page_token=token
            )

    async def RecoverDeletedSecret(self, request: pb.RecoverDeletedSecretRequest, context: Context) -> res.Secret:
        async with self._trail.call("RecoverDeletedSecret") as scope:
            ref = self._ref(scope, request.name)
            recovered = await self._s.recover(scope.authenticated, ref)
            return self._c.secret(recovered, await self._vault(ref.vault_name))

    async def PurgeDeletedSecret(self, request: pb.PurgeDeletedSecretRequest, context: Context) -> empty_pb2.Empty:
        async with self._trail.call("PurgeDeletedSecret") as scope:
            await self._s.purge(scope.authenticated, self._ref(scope, request.name))
            return empty_pb2.Empty()

    async def BackupSecret(self, request: pb.BackupSecretRequest, context: Context) -> pb.BackupSecretResponse:
        async with self._trail.call("BackupSecret") as scope:
            ref = self._ref(scope, request.name)
            return pb.BackupSecretResponse(backup=await self._s.backup(scope.authenticated, ref))

    async def RestoreSecret(self, request: pb.RestoreSecretRequest, context: Context) -> res.Secret:
        async with self._trail.call("RestoreSecret") as scope:
            vault = scope.vault(request.parent, "parent")
            restored = await self._s.restore(scope.authenticated, vault, request.backup)
            scope.key_name, scope.key_version = restored.secret_name, restored.version
            return self._c.secret(restored, await self._vault(vault))
