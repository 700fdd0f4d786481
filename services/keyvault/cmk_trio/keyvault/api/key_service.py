"""cmk.keyvault.v1.KeyService: keys, versions and the cryptographic operations."""

from __future__ import annotations

from google.protobuf import empty_pb2

from cmk_trio.keyvault.api.convert import (
    Converter,
    algorithm_of,
    attributes_of,
    key_kind_of,
    rotation_policy_pb,
    signature_of,
)
from cmk_trio.keyvault.api.trail import AuditTrail, CallScope
from cmk_trio.keyvault.key_attributes import CryptoResult
from cmk_trio.keyvault.key_backup import KeyBackups
from cmk_trio.keyvault.keys import Keys
from cmk_trio.keyvault.model import KeyVersion, Vault
from cmk_trio.keyvault.rotation import NOTIFY, ROTATE, LifetimeAction, Rotation, RotationPolicy
from cmk_trio.platform.key_names import KeyRef
from cmk_trio.proto.keyvault.v1 import keyvault_service_pb2 as pb
from cmk_trio.proto.keyvault.v1 import keyvault_service_pb2_grpc as pb_grpc
from cmk_trio.proto.keyvault.v1 import resources_pb2 as res
from cmk_trio.rpckit import json_input
from cmk_trio.rpckit.errors import invalid_field
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.storage import decode_page_token, encode_page_token, page_size_of
from cmk_trio.rpckit.types import Context
from cmk_trio.rpckit.validation import mask_paths


class KeyApi(pb_grpc.KeyServiceServicer):
    """cmk.keyvault.v1.KeyService."""

    def __init__(
        self, keys: Keys, backups: KeyBackups, rotation: Rotation, convert: Converter, trail: AuditTrail
    ) -> None:
        self._k = keys
        self._backups = backups
        self._rotation = rotation
        self._c = convert
        self._trail = trail

    def _ref(self, scope: CallScope, value: str, field: str = "name") -> KeyRef:
        ref = self._k.parse(field, value)
        scope.name(ref)
        return ref

    async def _vault(self, name: str) -> Vault | None:
        return await self._k.store.get_vault(name)

    async def _version_pb(self, scope: CallScope, version: KeyVersion) -> res.KeyVersion:
        scope.key_version = version.version
        return self._c.version(version, await self._vault(version.vault_name))

    async def CreateKey(self, request: pb.CreateKeyRequest, context: Context) -> res.KeyVersion:
        async with self._trail.call("CreateKey") as scope:
            vault = scope.vault(request.parent, "parent")
            scope.key_name = request.key_name[:127]
            size, curve = key_kind_of(request.key)
            created = await self._k.create(
                scope.authenticated, vault, request.key_name, size=size, curve=curve,
                attributes=attributes_of(request.key, None),
            )  # fmt: skip
            return await self._version_pb(scope, created)

    async def ImportKey(self, request: pb.ImportKeyRequest, context: Context) -> res.KeyVersion:
        async with self._trail.call("ImportKey") as scope:
            vault = scope.vault(request.parent, "parent")
            scope.key_name = request.key_name[:127]
            try:
                jwk = json_input.loads(request.key_material)
            except ValueError:
                raise invalid_field("key_material", Reason.KEY_MATERIAL_INVALID, "must be a JWK as JSON") from None
            if not isinstance(jwk, dict):
                raise invalid_field("key_material", Reason.KEY_MATERIAL_INVALID, "must be a JWK object")
            created = await self._k.create(
                scope.authenticated,
                vault,
                request.key_name,
                size=0,
                attributes=attributes_of(request.key, None),
                jwk=jwk,
            )
            return await self._version_pb(scope, created)

    async def GetKey(self, request: pb.GetKeyRequest, context: Context) -> res.KeyVersion:
        async with self._trail.call("GetKey") as scope:
            return await self._version_pb(scope, await self._k.get(scope.authenticated, self._ref(scope, request.name)))

    async def ListKeys(self, request: pb.ListKeysRequest, context: Context) -> pb.ListKeysResponse:
        async with self._trail.call("ListKeys") as scope:
            vault = scope.vault(request.parent, "parent")
            after, limit = decode_page_token("keys", request.page_token), page_size_of(request.page_size)
            found = await self._k.list_keys(scope.authenticated, vault, deleted=False, after=after, limit=limit)
            v = await self._vault(vault)
            return pb.ListKeysResponse(
                keys=[self._c.version(latest, v) for _, latest in found if latest is not None],
                next_page_token=encode_page_token("keys", found[-1][0].key_name) if len(found) == limit else "",
            )

    async def ListDeletedKeys(self, request: pb.ListDeletedKeysRequest, context: Context) -> pb.ListDeletedKeysResponse:
        async with self._trail.call("ListDeletedKeys") as scope:
            vault = scope.vault(request.parent, "parent")
            after, limit = decode_page_token("deletedKeys", request.page_token), page_size_of(request.page_size)
            found = await self._k.list_keys(scope.authenticated, vault, deleted=True, after=after, limit=limit)
            v = await self._vault(vault)
            return pb.ListDeletedKeysResponse(
                deleted_keys=[self._c.deleted(key, latest, v) for key, latest in found],
                next_page_token=encode_page_token("deletedKeys", found[-1][0].key_name) if len(found) == limit else "",
            )

    async def ListKeyVersions(self, request: pb.ListKeyVersionsRequest, context: Context) -> pb.ListKeyVersionsResponse:
        async with self._trail.call("ListKeyVersions") as scope:
            ref = self._ref(scope, request.parent, "parent")
            after, limit = decode_page_token("versions", request.page_token), page_size_of(request.page_size)
            found = await self._k.list_versions(scope.authenticated, ref, after=after, limit=limit)
            v = await self._vault(ref.vault_name)
            return pb.ListKeyVersionsResponse(
                versions=[self._c.version(k, v) for k in found],
                next_page_token=encode_page_token("versions", found[-1].version) if len(found) == limit else "",
            )

    async def UpdateKey(self, request: pb.UpdateKeyRequest, context: Context) -> res.KeyVersion:
        async with self._trail.call("UpdateKey") as scope:
            ref = self._ref(scope, request.name)
            paths = mask_paths(request.update_mask, {"enabled", "not_before", "expires", "key_operations", "tags"})
            updated = await self._k.update(scope.authenticated, ref, attributes_of(request.attributes, paths))
            return await self._version_pb(scope, updated)

    async def RotateKey(self, request: pb.RotateKeyRequest, context: Context) -> res.KeyVersion:
        async with self._trail.call("RotateKey") as scope:
            return await self._version_pb(
                scope, await self._k.rotate(scope.authenticated, self._ref(scope, request.name))
            )

    async def GetKeyRotationPolicy(
        self, request: pb.GetKeyRotationPolicyRequest, context: Context
    ) -> res.KeyRotationPolicy:
        async with self._trail.call("GetKeyRotationPolicy") as scope:
            ref = self._ref(scope, request.name)
            return rotation_policy_pb(ref, await self._rotation.get(scope.authenticated, ref))

    async def UpdateKeyRotationPolicy(
        self, request: pb.UpdateKeyRotationPolicyRequest, context: Context
    ) -> res.KeyRotationPolicy:
        async with self._trail.call("UpdateKeyRotationPolicy") as scope:
            ref = self._ref(scope, request.name)
            names = {res.ROTATE: ROTATE, res.NOTIFY: NOTIFY}
            actions = []
            for i, a in enumerate(request.policy.lifetime_actions):
                if a.action not in names:
                    raise invalid_field(f"policy.lifetime_actions[{i}].action", Reason.ENUM_UNKNOWN, "ROTATE or NOTIFY")
                actions.append(LifetimeAction(names[a.action], a.time_after_create, a.time_before_expiry))
            policy = RotationPolicy(tuple(actions), request.policy.expiry_time)
            return rotation_policy_pb(ref, await self._rotation.set(scope.authenticated, ref, policy))

    def _crypto_reply(self, scope: CallScope, result: CryptoResult) -> tuple[str, bool]:
        scope.key_version = result.version.version
        kid = self._k.key_id(result.version.vault_name, result.version.key_name, result.version.version)
        return kid, result.algorithm.recommended

    async def WrapKey(self, request: pb.WrapKeyRequest, context: Context) -> pb.WrapKeyResponse:
        async with self._trail.call("WrapKey") as scope:
            ref = self._ref(scope, request.name)
            result = await self._k.wrap(scope.authenticated, ref, algorithm_of(request.algorithm), request.plaintext)
            kid, recommended = self._crypto_reply(scope, result)
            return pb.WrapKeyResponse(key_id=kid, ciphertext=result.data, algorithm_recommended=recommended)

    async def Encrypt(self, request: pb.EncryptRequest, context: Context) -> pb.EncryptResponse:
        async with self._trail.call("Encrypt") as scope:
            ref = self._ref(scope, request.name)
            result = await self._k.encrypt(scope.authenticated, ref, algorithm_of(request.algorithm), request.plaintext)
            kid, recommended = self._crypto_reply(scope, result)
            return pb.EncryptResponse(key_id=kid, ciphertext=result.data, algorithm_recommended=recommended)

    async def UnwrapKey(self, request: pb.UnwrapKeyRequest, context: Context) -> pb.UnwrapKeyResponse:
        async with self._trail.call("UnwrapKey") as scope:
            ref = self._ref(scope, request.name)
            result = await self._k.unwrap(scope.authenticated, ref, algorithm_of(request.algorithm), request.ciphertext)
            kid, recommended = self._crypto_reply(scope, result)
            return pb.UnwrapKeyResponse(key_id=kid, plaintext=result.data, algorithm_recommended=recommended)

    async def Decrypt(self, request: pb.DecryptRequest, context: Context) -> pb.DecryptResponse:
        async with self._trail.call("Decrypt") as scope:
            ref = self._ref(scope, request.name)
            result = await self._k.decrypt(
                scope.authenticated, ref, algorithm_of(request.algorithm), request.ciphertext
            )
            kid, recommended = self._crypto_reply(scope, result)
            return pb.DecryptResponse(key_id=kid, plaintext=result.data, algorithm_recommended=recommended)

    async def Sign(self, request: pb.SignRequest, context: Context) -> pb.SignResponse:
        async with self._trail.call("Sign") as scope:
            ref = self._ref(scope, request.name)
            result = await self._k.sign(scope.authenticated, ref, signature_of(request.algorithm), request.digest)
            kid, _ = self._crypto_reply(scope, result)
            return pb.SignResponse(key_id=kid, signature=result.data)

    async def Verify(self, request: pb.VerifyRequest, context: Context) -> pb.VerifyResponse:
        async with self._trail.call("Verify") as scope:
            ref = self._ref(scope, request.name)
            version, valid = await self._k.verify(
                scope.authenticated, ref, signature_of(request.algorithm), request.digest, request.signature
            )
            scope.key_version = version.version
            return pb.VerifyResponse(key_id=self._k.key_id(version.vault_name, version.key_name, version.version),
                                     valid=valid)  # fmt: skip

    async def DeleteKey(self, request: pb.DeleteKeyRequest, context: Context) -> res.DeletedKey:
        async with self._trail.call("DeleteKey") as scope:
            ref = self._ref(scope, request.name)
            latest = await self._k.store.latest_version(ref.vault_name, ref.key_name)
            key = await self._k.delete(scope.authenticated, ref)
            return self._c.deleted(key, latest, await self._vault(ref.vault_name))

    async def GetDeletedKey(self, request: pb.GetDeletedKeyRequest, context: Context) -> res.DeletedKey:
        async with self._trail.call("GetDeletedKey") as scope:
            ref = self._ref(scope, request.name)
            key, latest = await self._k.get_deleted(scope.authenticated, ref)
            return self._c.deleted(key, latest, await self._vault(ref.vault_name))

    async def RecoverDeletedKey(self, request: pb.RecoverDeletedKeyRequest, context: Context) -> res.KeyVersion:
        async with self._trail.call("RecoverDeletedKey") as scope:
            ref = self._ref(scope, request.name)
            return await self._version_pb(scope, await self._k.recover(scope.authenticated, ref))

    async def BackupKey(self, request: pb.BackupKeyRequest, context: Context) -> pb.BackupKeyResponse:
        async with self._trail.call("BackupKey") as scope:
            ref = self._ref(scope, request.name)
            return pb.BackupKeyResponse(backup=await self._backups.backup(scope.authenticated, ref))

    async def RestoreKey(self, request: pb.RestoreKeyRequest, context: Context) -> res.KeyVersion:
        async with self._trail.call("RestoreKey") as scope:
            vault = scope.vault(request.parent, "parent")
            restored = await self._backups.restore(scope.authenticated, vault, request.backup)
            scope.key_name = restored.key_name
            return await self._version_pb(scope, restored)

    async def PurgeDeletedKey(self, request: pb.PurgeDeletedKeyRequest, context: Context) -> empty_pb2.Empty:
        async with self._trail.call("PurgeDeletedKey") as scope:
            await self._k.purge(scope.authenticated, self._ref(scope, request.name))
            return empty_pb2.Empty()
