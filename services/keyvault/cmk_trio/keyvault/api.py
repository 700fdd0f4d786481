"""The gRPC face of the key vault: requests to domain calls and back, and the guard that
authenticates and audits every call. No rules live here."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from google.protobuf import empty_pb2, field_mask_pb2

from cmk_trio.keyvault import errors
from cmk_trio.keyvault.audit import AuditLog
from cmk_trio.keyvault.crypto import Padding
from cmk_trio.keyvault.keys import CryptoResult, KeyAttributes, KeyRef, Keys, key_operations
from cmk_trio.keyvault.model import AuditEntry, AuditRecord, Checkpoint, Event, Key, KeyVersion, Vault
from cmk_trio.keyvault.rotation import NOTIFY, ROTATE, LifetimeAction, Rotation, RotationPolicy
from cmk_trio.keyvault.vaults import Access, Vaults, vault_name
from cmk_trio.proto.keyvault.v1 import keyvault_service_pb2 as pb
from cmk_trio.proto.keyvault.v1 import keyvault_service_pb2_grpc as pb_grpc
from cmk_trio.proto.keyvault.v1 import resources_pb2 as res
from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.auth import bearer_token
from cmk_trio.rpckit.clock import Clock
from cmk_trio.rpckit.errors import ServiceError, invalid_field
from cmk_trio.rpckit.events import ChangeNotifier, tail
from cmk_trio.rpckit.observe import current_request_id, request_id_from
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.storage import decode_page_token, encode_page_token, page_size_of
from cmk_trio.rpckit.timestamps import from_timestamp, to_timestamp
from cmk_trio.rpckit.tokens import OPERATOR_ROLE, PLATFORM_ROLE, TokenValidator, VerifiedToken
from cmk_trio.rpckit.types import Context

ALGORITHMS: dict[int, Padding] = {
    res.RSA_OAEP_256: Padding.RSA_OAEP_256,
    res.RSA_OAEP: Padding.RSA_OAEP,
    res.RSA1_5: Padding.RSA1_5,
}
OPERATIONS_PB = {
    "encrypt": res.ENCRYPT,
    "decrypt": res.DECRYPT,
    "wrapKey": res.WRAP_KEY,
    "unwrapKey": res.UNWRAP_KEY,
    "sign": res.SIGN,
    "verify": res.VERIFY,
}
RECOVERY_LEVELS = {
    "Purgeable": res.PURGEABLE,
    "Recoverable+Purgeable": res.RECOVERABLE_PURGEABLE,
    "Recoverable": res.RECOVERABLE,
}


# --- the guard -----------------------------------------------------------------------------


@dataclass
class CallScope:
    """What the audit record of one call says; filled in as the call learns it."""

    request_id: str
    operation: str
    caller: VerifiedToken | None = None
    vault_name: str = ""
    key_name: str = ""
    key_version: str = ""

    def name(self, ref: KeyRef) -> None:
        self.vault_name, self.key_name = ref.vault_name, ref.key_name
        self.key_version = ref.version or ""


class Guard:
    """Authenticates a call's bearer token for an audience, and writes its audit record,
    allowed or denied, before the call answers."""

    def __init__(self, validator: TokenValidator, audit: AuditLog, clock: Clock) -> None:
        self._validator = validator
        self._audit = audit
        self._clock = clock

    @asynccontextmanager
    async def call(self, context: Context, operation: str, audience: str) -> AsyncIterator[CallScope]:
        metadata = context.invocation_metadata() or ()
        scope = CallScope(request_id=current_request_id() or request_id_from(metadata), operation=operation)
        try:
            scope.caller = await self._validator.validate(bearer_token(metadata), audience=audience)
            yield scope
        except ServiceError as exc:
            await self._audit.append(self._entry(scope, "denied", exc.reason.value))
            raise
        except Exception:
            await self._audit.append(self._entry(scope, "error", Reason.INTERNAL.value))
            raise
        await self._audit.append(self._entry(scope, "allowed", ""))

    async def require_operator(self, context: Context) -> None:
        """Authenticate a management call and require the platform operator (audited)."""
        async with self.call(context, "AdvanceClock", audiences.MANAGEMENT) as scope:
            if OPERATOR_ROLE not in _caller(scope).roles:
                raise errors.PermissionDenied(Reason.OPERATOR_REQUIRED, "only the platform operator may do this")

    def _entry(self, scope: CallScope, result: str, reason: str) -> AuditEntry:
        caller = scope.caller
        return AuditEntry(
            time=self._clock.now(),
            request_id=scope.request_id,
            caller_object_id=caller.object_id if caller else "",
            tenant_id=caller.tenant_id if caller else "",
            client_id=caller.client_id if caller else "",
            resource_id=caller.resource_id if caller else "",
            operation=scope.operation,
            vault_name=scope.vault_name,
            key_name=scope.key_name,
            key_version=scope.key_version,
            result=result,
            reason=reason,
        )


def _caller(scope: CallScope) -> VerifiedToken:
    if scope.caller is None:  # the guard sets it before the body runs
        raise errors.Unauthenticated(Reason.TOKEN_MISSING, "this call needs a bearer token")
    return scope.caller


# --- domain to proto ---------------------------------------------------------------------


class Converter:
    """Domain objects to messages; knows the vault DNS suffix for URIs."""

    def __init__(self, keys: Keys) -> None:
        self._keys = keys

    def vault(self, v: Vault) -> res.Vault:
        return res.Vault(
            name=f"vaults/{v.vault_name}",
            vault_name=v.vault_name,
            vault_uri=self._keys.vault_uri(v.vault_name),
            tenant_id=v.tenant_id,
            subscription_id=v.subscription_id,
            resource_group=v.resource_group,
            location=v.location,
            soft_delete_enabled=v.soft_delete,
            soft_delete_retention_days=v.retention_days,
            purge_protection_enabled=v.purge_protection,
            access_policies=[
                res.AccessPolicy(tenant_id=p.tenant_id, object_id=p.object_id, key_permissions=sorted(p.permissions))
                for p in v.access_policies
            ],
            create_time=to_timestamp(v.create_time),
            delete_time=to_timestamp(v.delete_time),
            purge_time=to_timestamp(v.purge_time),
            resource_id=v.resource_id,
        )

    def version(self, k: KeyVersion, vault: Vault | None = None) -> res.KeyVersion:
        level = vault.recovery_level.value if vault else ""
        return res.KeyVersion(
            name=f"vaults/{k.vault_name}/keys/{k.key_name}/versions/{k.version}",
            key_id=self._keys.key_id(k.vault_name, k.key_name, k.version),
            version=k.version,
            key_type=res.RSA,
            key_size=k.key_size,
            key_operations=[OPERATIONS_PB[o.value] for o in k.key_ops],
            public_jwk=k.public_jwk,
            enabled=k.enabled,
            not_before=to_timestamp(k.not_before),
            expires=to_timestamp(k.expires),
            create_time=to_timestamp(k.create_time),
            update_time=to_timestamp(k.update_time),
            recovery_level=RECOVERY_LEVELS.get(level, res.RECOVERY_LEVEL_UNSPECIFIED),
            recoverable_days=vault.retention_days if vault and vault.soft_delete else 0,
            tags=k.tags,
        )

    def deleted(self, key: Key, latest: KeyVersion | None, vault: Vault | None) -> res.DeletedKey:
        return res.DeletedKey(
            key=self.version(latest, vault) if latest else None,
            recovery_id=f"https://{key.vault_name}.{self._keys.dns_suffix}/deletedkeys/{key.key_name}",
            deleted_date=to_timestamp(key.delete_time),
            scheduled_purge_date=to_timestamp(key.purge_time),
        )


def audit_record_pb(r: AuditRecord) -> res.AuditRecord:
    e = r.entry
    return res.AuditRecord(
        sequence=r.sequence, time=to_timestamp(e.time), request_id=e.request_id, caller_object_id=e.caller_object_id,
        tenant_id=e.tenant_id, client_id=e.client_id, resource_id=e.resource_id, operation=e.operation,
        vault_name=e.vault_name, key_name=e.key_name, key_version=e.key_version, result=e.result,
        reason=e.reason, mac=r.mac.hex(),
    )  # fmt: skip


def checkpoint_pb(c: Checkpoint) -> res.AuditCheckpoint:
    return res.AuditCheckpoint(
        count=c.count, head=c.head.hex(), time=c.time, signature=base64.b64encode(c.signature).decode()
    )


def rotation_policy_pb(ref: KeyRef, p: RotationPolicy) -> res.KeyRotationPolicy:
    kinds = {ROTATE: res.ROTATE, NOTIFY: res.NOTIFY}
    return res.KeyRotationPolicy(
        name=f"vaults/{ref.vault_name}/keys/{ref.key_name}/rotationPolicy",
        lifetime_actions=[
            res.LifetimeAction(
                action=kinds[a.action], time_after_create=a.time_after_create, time_before_expiry=a.time_before_expiry
            )
            for a in p.actions
        ],
        expiry_time=p.expiry_time,
        update_time=to_timestamp(p.update_time),
    )


def event_pb(e: Event) -> res.Event:
    return res.Event(
        sequence=e.sequence, type=res.EventType.ValueType(e.type), time=to_timestamp(e.time), vault_name=e.vault_name,
        key_name=e.key_name, version=e.version, object_id=e.object_id,
    )  # fmt: skip


# --- requests to domain ---------------------------------------------------------------------


def _attributes(message: res.KeyVersion, paths: set[str] | None) -> KeyAttributes:
    def wanted(name: str) -> bool:
        return paths is None or name in paths

    ops = None
    if wanted("key_operations") and (paths is not None or message.key_operations):
        names = []
        for op in message.key_operations:
            name = next((k for k, v in OPERATIONS_PB.items() if v == op), None)
            if name is None:
                raise invalid_field("key.key_operations", Reason.KEY_OPERATION_UNKNOWN, f"unknown operation {op}")
            names.append(name)
        ops = key_operations("key.key_operations", names)
    return KeyAttributes(
        key_ops=ops,
        enabled=message.enabled if paths is not None and "enabled" in paths else None,
        not_before=_time_field(message, "not_before") if wanted("not_before") else None,
        expires=_time_field(message, "expires") if wanted("expires") else None,
        tags=dict(message.tags) if wanted("tags") and (paths is not None or message.tags) else None,
    )


def _time_field(message: res.KeyVersion, name: Literal["not_before", "expires"]) -> datetime | None:
    return from_timestamp(getattr(message, name)) if message.HasField(name) else None


def _algorithm(value: int) -> Padding:
    algorithm = ALGORITHMS.get(value)
    if algorithm is None:
        raise invalid_field("algorithm", Reason.ALGORITHM_UNKNOWN, "use RSA_OAEP_256 (or RSA_OAEP, RSA1_5)")
    return algorithm


def _mask(mask: field_mask_pb2.FieldMask, allowed: set[str]) -> set[str]:
    paths = set(mask.paths)
    if not paths or paths - allowed:
        raise invalid_field(
            "update_mask", Reason.UPDATE_MASK_INVALID, f"name the fields to change among: {', '.join(sorted(allowed))}"
        )
    return paths


def _vault_of(scope: CallScope, name: str) -> str:
    prefix = "vaults/"
    raw = name[len(prefix) :] if name.startswith(prefix) else name
    canonical = vault_name("name", raw)
    scope.vault_name = canonical
    return canonical


# --- servicers ------------------------------------------------------------------------------


class VaultApi(pb_grpc.VaultServiceServicer):
    """cmk.keyvault.v1.VaultService."""

    def __init__(self, vaults: Vaults, convert: Converter, guard: Guard) -> None:
        self._v = vaults
        self._c = convert
        self._guard = guard

    def _call(self, context: Context, operation: str) -> Any:
        return self._guard.call(context, operation, audiences.MANAGEMENT)

    async def CreateVault(self, request: pb.CreateVaultRequest, context: Context) -> res.Vault:
        async with self._call(context, "CreateVault") as scope:
            v = request.vault
            scope.vault_name = v.vault_name[:64]
            created = await self._v.create(
                _caller(scope),
                name=v.vault_name,
                subscription_id=v.subscription_id,
                resource_group=v.resource_group,
                location=v.location,
                soft_delete=v.soft_delete_enabled if v.HasField("soft_delete_enabled") else None,
                retention_days=v.soft_delete_retention_days,
                purge_protection=v.purge_protection_enabled,
            )
            return self._c.vault(created)

    async def GetVault(self, request: pb.GetVaultRequest, context: Context) -> res.Vault:
        async with self._call(context, "GetVault") as scope:
            return self._c.vault(await self._v.get(_caller(scope), _vault_of(scope, request.name)))

    async def _list(
        self, context: Context, operation: str, subscription_id: str, size: int, token: str, deleted: bool
    ) -> pb.ListVaultsResponse:
        async with self._call(context, operation) as scope:
            after, limit = decode_page_token("vaults", token), page_size_of(size)
            found = await self._v.list_vaults(
                _caller(scope), subscription_id, deleted=deleted, after=after, limit=limit
            )
            next_token = encode_page_token("vaults", found[-1].vault_name) if len(found) == limit else ""
            return pb.ListVaultsResponse(vaults=[self._c.vault(v) for v in found], next_page_token=next_token)

    async def ListVaults(self, request: pb.ListVaultsRequest, context: Context) -> pb.ListVaultsResponse:
        return await self._list(
            context, "ListVaults", request.subscription_id, request.page_size, request.page_token, False
        )

    async def ListDeletedVaults(self, request: pb.ListDeletedVaultsRequest, context: Context) -> pb.ListVaultsResponse:
        return await self._list(
            context, "ListDeletedVaults", request.subscription_id, request.page_size, request.page_token, True
        )

    async def UpdateVault(self, request: pb.UpdateVaultRequest, context: Context) -> res.Vault:
        async with self._call(context, "UpdateVault") as scope:
            name = _vault_of(scope, request.vault.name)
            paths = _mask(request.update_mask, {"purge_protection_enabled", "soft_delete_enabled"})
            updated = await self._v.update(
                _caller(scope),
                name,
                soft_delete=request.vault.soft_delete_enabled if "soft_delete_enabled" in paths else None,
                purge_protection=request.vault.purge_protection_enabled
                if "purge_protection_enabled" in paths
                else None,
            )
            return self._c.vault(updated)

    async def DeleteVault(self, request: pb.DeleteVaultRequest, context: Context) -> empty_pb2.Empty:
        async with self._call(context, "DeleteVault") as scope:
            await self._v.delete(_caller(scope), _vault_of(scope, request.name))
            return empty_pb2.Empty()

    async def RecoverVault(self, request: pb.RecoverVaultRequest, context: Context) -> res.Vault:
        async with self._call(context, "RecoverVault") as scope:
            return self._c.vault(await self._v.recover(_caller(scope), _vault_of(scope, request.name)))

    async def PurgeVault(self, request: pb.PurgeVaultRequest, context: Context) -> empty_pb2.Empty:
        async with self._call(context, "PurgeVault") as scope:
            await self._v.purge(_caller(scope), _vault_of(scope, request.name))
            return empty_pb2.Empty()

    async def SetAccessPolicy(self, request: pb.SetAccessPolicyRequest, context: Context) -> res.Vault:
        async with self._call(context, "SetAccessPolicy") as scope:
            p = request.access_policy
            vault = await self._v.set_policy(
                _caller(scope), _vault_of(scope, request.name), p.tenant_id, p.object_id, p.key_permissions
            )
            return self._c.vault(vault)

    async def UpdateAccessPolicy(self, request: pb.UpdateAccessPolicyRequest, context: Context) -> res.Vault:
        async with self._call(context, "UpdateAccessPolicy") as scope:
            vault = await self._v.update_policy(
                _caller(scope), _vault_of(scope, request.name), request.tenant_id, request.object_id,
                request.add_permissions, request.remove_permissions,
            )  # fmt: skip
            return self._c.vault(vault)

    async def RemoveAccessPolicy(self, request: pb.RemoveAccessPolicyRequest, context: Context) -> res.Vault:
        async with self._call(context, "RemoveAccessPolicy") as scope:
            vault = await self._v.remove_policy(_caller(scope), _vault_of(scope, request.name), request.object_id)
            return self._c.vault(vault)


class KeyApi(pb_grpc.KeyServiceServicer):
    """cmk.keyvault.v1.KeyService."""

    def __init__(self, keys: Keys, rotation: Rotation, convert: Converter, guard: Guard) -> None:
        self._k = keys
        self._rotation = rotation
        self._c = convert
        self._guard = guard

    def _call(self, context: Context, operation: str) -> Any:
        return self._guard.call(context, operation, audiences.VAULT)

    def _ref(self, scope: CallScope, value: str, field: str = "key") -> KeyRef:
        ref = self._k.parse(field, value)
        scope.name(ref)
        return ref

    async def _vault(self, name: str) -> Vault | None:
        return await self._k.store.get_vault(name)

    async def _version_pb(self, scope: CallScope, version: KeyVersion) -> res.KeyVersion:
        scope.key_version = version.version
        return self._c.version(version, await self._vault(version.vault_name))

    async def CreateKey(self, request: pb.CreateKeyRequest, context: Context) -> res.KeyVersion:
        async with self._call(context, "CreateKey") as scope:
            vault = _vault_of(scope, request.parent)
            scope.key_name = request.key_name[:127]
            created = await self._k.create(
                _caller(scope), vault, request.key_name, size=request.key.key_size or 2048,
                attributes=_attributes(request.key, None),
            )  # fmt: skip
            return await self._version_pb(scope, created)

    async def ImportKey(self, request: pb.ImportKeyRequest, context: Context) -> res.KeyVersion:
        async with self._call(context, "ImportKey") as scope:
            vault = _vault_of(scope, request.parent)
            scope.key_name = request.key_name[:127]
            try:
                jwk = json.loads(request.key_material)
            except ValueError:
                raise invalid_field("key_material", Reason.KEY_MATERIAL_INVALID, "must be a JWK as JSON") from None
            if not isinstance(jwk, dict):
                raise invalid_field("key_material", Reason.KEY_MATERIAL_INVALID, "must be a JWK object")
            created = await self._k.create(
                _caller(scope), vault, request.key_name, size=0, attributes=_attributes(request.key, None), jwk=jwk
            )
            return await self._version_pb(scope, created)

    async def GetKey(self, request: pb.GetKeyRequest, context: Context) -> res.KeyVersion:
        async with self._call(context, "GetKey") as scope:
            return await self._version_pb(scope, await self._k.get(_caller(scope), self._ref(scope, request.key)))

    async def ListKeys(self, request: pb.ListKeysRequest, context: Context) -> pb.ListKeysResponse:
        async with self._call(context, "ListKeys") as scope:
            vault = _vault_of(scope, request.parent)
            after, limit = decode_page_token("keys", request.page_token), page_size_of(request.page_size)
            found = await self._k.list_keys(_caller(scope), vault, deleted=False, after=after, limit=limit)
            v = await self._vault(vault)
            return pb.ListKeysResponse(
                keys=[self._c.version(latest, v) for _, latest in found if latest is not None],
                next_page_token=encode_page_token("keys", found[-1][0].key_name) if len(found) == limit else "",
            )

    async def ListDeletedKeys(self, request: pb.ListKeysRequest, context: Context) -> pb.ListDeletedKeysResponse:
        async with self._call(context, "ListDeletedKeys") as scope:
            vault = _vault_of(scope, request.parent)
            after, limit = decode_page_token("deletedKeys", request.page_token), page_size_of(request.page_size)
            found = await self._k.list_keys(_caller(scope), vault, deleted=True, after=after, limit=limit)
            v = await self._vault(vault)
            return pb.ListDeletedKeysResponse(
                deleted_keys=[self._c.deleted(key, latest, v) for key, latest in found],
                next_page_token=encode_page_token("deletedKeys", found[-1][0].key_name) if len(found) == limit else "",
            )

    async def ListKeyVersions(self, request: pb.ListKeyVersionsRequest, context: Context) -> pb.ListKeyVersionsResponse:
        async with self._call(context, "ListKeyVersions") as scope:
            ref = self._ref(scope, request.key)
            after, limit = decode_page_token("versions", request.page_token), page_size_of(request.page_size)
            found = await self._k.list_versions(_caller(scope), ref, after=after, limit=limit)
            v = await self._vault(ref.vault_name)
            return pb.ListKeyVersionsResponse(
                versions=[self._c.version(k, v) for k in found],
                next_page_token=encode_page_token("versions", found[-1].version) if len(found) == limit else "",
            )

    async def UpdateKey(self, request: pb.UpdateKeyRequest, context: Context) -> res.KeyVersion:
        async with self._call(context, "UpdateKey") as scope:
            ref = self._ref(scope, request.key)
            paths = _mask(request.update_mask, {"enabled", "not_before", "expires", "key_operations", "tags"})
            updated = await self._k.update(_caller(scope), ref, _attributes(request.attributes, paths))
            return await self._version_pb(scope, updated)

    async def RotateKey(self, request: pb.RotateKeyRequest, context: Context) -> res.KeyVersion:
        async with self._call(context, "RotateKey") as scope:
            return await self._version_pb(scope, await self._k.rotate(_caller(scope), self._ref(scope, request.key)))

    async def GetKeyRotationPolicy(
        self, request: pb.GetKeyRotationPolicyRequest, context: Context
    ) -> res.KeyRotationPolicy:
        async with self._call(context, "GetKeyRotationPolicy") as scope:
            ref = self._ref(scope, request.key)
            return rotation_policy_pb(ref, await self._rotation.get(_caller(scope), ref))

    async def UpdateKeyRotationPolicy(
        self, request: pb.UpdateKeyRotationPolicyRequest, context: Context
    ) -> res.KeyRotationPolicy:
        async with self._call(context, "UpdateKeyRotationPolicy") as scope:
            ref = self._ref(scope, request.key)
            names = {res.ROTATE: ROTATE, res.NOTIFY: NOTIFY}
            actions = []
            for i, a in enumerate(request.policy.lifetime_actions):
                if a.action not in names:
                    raise invalid_field(f"policy.lifetime_actions[{i}].action", Reason.ENUM_UNKNOWN, "ROTATE or NOTIFY")
                actions.append(LifetimeAction(names[a.action], a.time_after_create, a.time_before_expiry))
            policy = RotationPolicy(tuple(actions), request.policy.expiry_time)
            return rotation_policy_pb(ref, await self._rotation.set(_caller(scope), ref, policy))

    def _crypto_reply(self, scope: CallScope, result: CryptoResult) -> tuple[str, bool]:
        scope.key_version = result.version.version
        kid = self._k.key_id(result.version.vault_name, result.version.key_name, result.version.version)
        return kid, result.algorithm.recommended

    async def WrapKey(self, request: pb.WrapKeyRequest, context: Context) -> pb.WrapKeyResponse:
        async with self._call(context, "WrapKey") as scope:
            ref = self._ref(scope, request.key)
            result = await self._k.wrap(_caller(scope), ref, _algorithm(request.algorithm), request.plaintext)
            kid, recommended = self._crypto_reply(scope, result)
            return pb.WrapKeyResponse(key_id=kid, ciphertext=result.data, algorithm_recommended=recommended)

    async def Encrypt(self, request: pb.WrapKeyRequest, context: Context) -> pb.WrapKeyResponse:
        async with self._call(context, "Encrypt") as scope:
            ref = self._ref(scope, request.key)
            result = await self._k.encrypt(_caller(scope), ref, _algorithm(request.algorithm), request.plaintext)
            kid, recommended = self._crypto_reply(scope, result)
            return pb.WrapKeyResponse(key_id=kid, ciphertext=result.data, algorithm_recommended=recommended)

    async def UnwrapKey(self, request: pb.UnwrapKeyRequest, context: Context) -> pb.UnwrapKeyResponse:
        async with self._call(context, "UnwrapKey") as scope:
            ref = self._ref(scope, request.key)
            result = await self._k.unwrap(_caller(scope), ref, _algorithm(request.algorithm), request.ciphertext)
            kid, recommended = self._crypto_reply(scope, result)
            return pb.UnwrapKeyResponse(key_id=kid, plaintext=result.data, algorithm_recommended=recommended)

    async def Decrypt(self, request: pb.UnwrapKeyRequest, context: Context) -> pb.UnwrapKeyResponse:
        async with self._call(context, "Decrypt") as scope:
            ref = self._ref(scope, request.key)
            result = await self._k.decrypt(_caller(scope), ref, _algorithm(request.algorithm), request.ciphertext)
            kid, recommended = self._crypto_reply(scope, result)
            return pb.UnwrapKeyResponse(key_id=kid, plaintext=result.data, algorithm_recommended=recommended)

    async def DeleteKey(self, request: pb.DeleteKeyRequest, context: Context) -> res.DeletedKey:
        async with self._call(context, "DeleteKey") as scope:
            ref = self._ref(scope, request.key)
            latest = await self._k.store.latest_version(ref.vault_name, ref.key_name)
            key = await self._k.delete(_caller(scope), ref)
            return self._c.deleted(key, latest, await self._vault(ref.vault_name))

    async def GetDeletedKey(self, request: pb.GetDeletedKeyRequest, context: Context) -> res.DeletedKey:
        async with self._call(context, "GetDeletedKey") as scope:
            ref = self._ref(scope, request.key)
            key, latest = await self._k.get_deleted(_caller(scope), ref)
            return self._c.deleted(key, latest, await self._vault(ref.vault_name))

    async def RecoverDeletedKey(self, request: pb.RecoverDeletedKeyRequest, context: Context) -> res.KeyVersion:
        async with self._call(context, "RecoverDeletedKey") as scope:
            ref = self._ref(scope, request.key)
            return await self._version_pb(scope, await self._k.recover(_caller(scope), ref))

    async def PurgeDeletedKey(self, request: pb.PurgeDeletedKeyRequest, context: Context) -> empty_pb2.Empty:
        async with self._call(context, "PurgeDeletedKey") as scope:
            await self._k.purge(_caller(scope), self._ref(scope, request.key))
            return empty_pb2.Empty()


class AuditApi(pb_grpc.AuditServiceServicer):
    """cmk.keyvault.v1.AuditService."""

    def __init__(self, audit: AuditLog, vaults: Vaults, guard: Guard, notifier: ChangeNotifier) -> None:
        self._audit = audit
        self._vaults = vaults
        self._guard = guard
        self._notifier = notifier

    def _call(self, context: Context, operation: str) -> Any:
        return self._guard.call(context, operation, audiences.MANAGEMENT)

    async def _may_read(self, caller: VerifiedToken, vault: str) -> None:
        if OPERATOR_ROLE in caller.roles:
            return
        if not vault:
            raise errors.PermissionDenied(
                Reason.OPERATOR_REQUIRED, "only the platform operator may read the audit records of every vault"
            )
        found = await self._vaults.store.get_vault(vault)
        if found is None:
            raise errors.vault_not_found(vault)
        await self._vaults.require(caller, found.resource_id, Access.READ)

    async def ListAuditRecords(
        self, request: pb.ListAuditRecordsRequest, context: Context
    ) -> pb.ListAuditRecordsResponse:
        async with self._call(context, "ListAuditRecords") as scope:
            vault = vault_name("vault_name", request.vault_name) if request.vault_name else ""
            scope.vault_name = vault
            await self._may_read(_caller(scope), vault)
            if request.result and request.result not in ("allowed", "denied", "error"):
                raise invalid_field("result", Reason.FIELD_INVALID, "must be allowed, denied or error")
            token = decode_page_token("audit", request.page_token)
            limit = page_size_of(request.page_size)
            found = await self._audit.query(
                vault_name=vault or None,
                key_name=request.key_name or None,
                caller_object_id=request.caller_object_id or None,
                result=request.result or None,
                since=from_timestamp(request.start_time) if request.HasField("start_time") else None,
                until=from_timestamp(request.end_time) if request.HasField("end_time") else None,
                after=int(token) if token and token.isdigit() else 0,
                limit=limit,
            )
            return pb.ListAuditRecordsResponse(
                records=[audit_record_pb(r) for r in found],
                next_page_token=encode_page_token("audit", str(found[-1].sequence)) if len(found) == limit else "",
            )

    async def StreamAuditRecords(
        self, request: pb.StreamAuditRecordsRequest, context: Context
    ) -> AsyncIterator[res.AuditRecord]:
        async with self._call(context, "StreamAuditRecords") as scope:
            self._require_operator(_caller(scope))
            if request.after_sequence < 0:
                raise invalid_field("after_sequence", Reason.FIELD_INVALID, "must not be negative")

        async def fetch(after: int, limit: int) -> list[AuditRecord]:
            return await self._audit.query(after=after, limit=limit)

        async for record in tail(fetch, lambda r: r.sequence, self._audit.appended, request.after_sequence):
            yield audit_record_pb(record)

    async def CreateAuditCheckpoint(
        self, request: pb.CreateAuditCheckpointRequest, context: Context
    ) -> res.AuditCheckpoint:
        async with self._call(context, "CreateAuditCheckpoint") as scope:
            self._require_operator(_caller(scope))
            return checkpoint_pb(await self._audit.checkpoint())

    async def VerifyAuditLog(self, request: pb.VerifyAuditLogRequest, context: Context) -> pb.VerifyAuditLogResponse:
        async with self._call(context, "VerifyAuditLog") as scope:
            self._require_operator(_caller(scope))
            given: list[Checkpoint] = []
            if request.HasField("checkpoint"):
                c = request.checkpoint
                try:
                    given.append(Checkpoint(int(c.count), bytes.fromhex(c.head), c.time, base64.b64decode(c.signature)))
                except ValueError:
                    raise invalid_field("checkpoint", Reason.FIELD_INVALID, "is not a checkpoint of this log") from None
            result = await self._audit.verify(given)
            return pb.VerifyAuditLogResponse(
                ok=result.ok,
                records=result.records,
                first_broken_record=result.first_broken or 0,
                problem=result.problem,
            )

    async def GetAuditPublicKey(
        self, request: pb.GetAuditPublicKeyRequest, context: Context
    ) -> pb.GetAuditPublicKeyResponse:
        async with self._call(context, "GetAuditPublicKey"):
            return pb.GetAuditPublicKeyResponse(public_key=base64.b64encode(self._audit.public_key).decode())

    @staticmethod
    def _require_operator(caller: VerifiedToken) -> None:
        if OPERATOR_ROLE not in caller.roles:
            raise errors.PermissionDenied(Reason.OPERATOR_REQUIRED, "only the platform operator may do this")

    async def WatchEvents(self, request: pb.WatchEventsRequest, context: Context) -> AsyncIterator[res.Event]:
        async with self._call(context, "WatchEvents") as scope:
            caller = _caller(scope)
            if not ({OPERATOR_ROLE, PLATFORM_ROLE} & caller.roles):
                raise errors.PermissionDenied(
                    Reason.PLATFORM_PRINCIPAL_REQUIRED,
                    "only platform services and the operator may read the event stream",
                )
            last = await self._vaults.store.last_sequence()
            if not 0 <= request.after_sequence <= last:
                raise errors.FailedPrecondition(
                    Reason.EVENT_CURSOR_AHEAD,
                    f"the cursor {request.after_sequence} is not within 0-{last}; start from 0",
                    metadata={"last_sequence": str(last)},
                )
        events = tail(self._vaults.store.events_after, lambda e: e.sequence, self._notifier, request.after_sequence)
        async for event in events:
            yield event_pb(event)
