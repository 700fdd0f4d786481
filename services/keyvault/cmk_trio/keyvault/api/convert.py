"""Domain objects to messages and requests to domain values, for the key vault's servicers."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Literal

from cmk_trio.keyvault.crypto import Curve, Padding, Signature
from cmk_trio.keyvault.key_attributes import KeyAttributes, key_operations
from cmk_trio.keyvault.keys import Keys
from cmk_trio.keyvault.model import AuditRecord, Checkpoint, Event, Key, KeyVersion, Secret, SecretVersion, Vault
from cmk_trio.keyvault.rotation import NOTIFY, ROTATE, RotationPolicy
from cmk_trio.keyvault.vault_secrets import SecretAttributes
from cmk_trio.platform import key_names
from cmk_trio.platform.key_names import KeyRef, vault_name
from cmk_trio.proto.keyvault.v1 import resources_pb2 as res
from cmk_trio.rpckit.errors import invalid_field
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.timestamps import from_timestamp, to_timestamp

ALGORITHMS: dict[int, Padding] = {
    res.RSA_OAEP_256: Padding.RSA_OAEP_256,
    res.RSA_OAEP: Padding.RSA_OAEP,
    res.RSA1_5: Padding.RSA1_5,
}
CURVES_PB: dict[str, res.KeyCurve.ValueType] = {"P-256": res.P_256, "P-384": res.P_384, "P-521": res.P_521}
CURVES: dict[int, Curve] = {number: Curve(name) for name, number in CURVES_PB.items()}
SIGNATURES: dict[int, Signature] = {
    res.RS256: Signature.RS256,
    res.RS384: Signature.RS384,
    res.RS512: Signature.RS512,
    res.PS256: Signature.PS256,
    res.PS384: Signature.PS384,
    res.PS512: Signature.PS512,
    res.ES256: Signature.ES256,
    res.ES384: Signature.ES384,
    res.ES512: Signature.ES512,
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
                res.AccessPolicy(
                    tenant_id=p.tenant_id,
                    object_id=p.object_id,
                    key_permissions=sorted(p.permissions),
                    secret_permissions=sorted(p.secret_permissions),
                )
                for p in v.access_policies
            ],
            create_time=to_timestamp(v.create_time),
            delete_time=to_timestamp(v.delete_time),
            purge_time=to_timestamp(v.purge_time),
            resource_id=v.resource_id,
            sku=v.sku,
            tags=v.tags,
        )

    def version(self, k: KeyVersion, vault: Vault | None = None) -> res.KeyVersion:
        level = vault.recovery_level.value if vault else ""
        return res.KeyVersion(
            name=f"vaults/{k.vault_name}/keys/{k.key_name}/versions/{k.version}",
            key_id=self._keys.key_id(k.vault_name, k.key_name, k.version),
            version=k.version,
            key_type=res.EC if k.curve else res.RSA,
            key_size=k.key_size,
            curve=CURVES_PB.get(k.curve, res.KEY_CURVE_UNSPECIFIED),
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

    def secret(self, s: SecretVersion, vault: Vault | None, value: str = "") -> res.Secret:
        """A secret version's message; with its value only where the call reads it."""
        level = vault.recovery_level.value if vault else ""
        return res.Secret(
            name=f"vaults/{s.vault_name}/secrets/{s.secret_name}/versions/{s.version}",
            secret_id=key_names.secret_id(s.vault_name, s.secret_name, s.version, self._keys.dns_suffix),
            version=s.version,
            value=value,
            content_type=s.content_type,
            enabled=s.enabled,
            not_before=to_timestamp(s.not_before),
            expires=to_timestamp(s.expires),
            create_time=to_timestamp(s.create_time),
            update_time=to_timestamp(s.update_time),
            recovery_level=RECOVERY_LEVELS.get(level, res.RECOVERY_LEVEL_UNSPECIFIED),
            recoverable_days=vault.retention_days if vault and vault.soft_delete else 0,
            tags=s.tags,
        )

    def deleted_secret(self, secret: Secret, latest: SecretVersion | None, vault: Vault | None) -> res.DeletedSecret:
        return res.DeletedSecret(
            secret=self.secret(latest, vault) if latest else None,
            recovery_id=f"https://{secret.vault_name}.{self._keys.dns_suffix}/deletedsecrets/{secret.secret_name}",
            delete_time=to_timestamp(secret.delete_time),
            purge_time=to_timestamp(secret.purge_time),
        )

    def deleted(self, key: Key, latest: KeyVersion | None, vault: Vault | None) -> res.DeletedKey:
        return res.DeletedKey(
            key=self.version(latest, vault) if latest else None,
            recovery_id=f"https://{key.vault_name}.{self._keys.dns_suffix}/deletedkeys/{key.key_name}",
            delete_time=to_timestamp(key.delete_time),
            purge_time=to_timestamp(key.purge_time),
        )


def audit_record_pb(r: AuditRecord) -> res.AuditRecord:
    e = r.entry
    return res.AuditRecord(
        sequence=r.sequence, time=to_timestamp(e.time), request_id=e.request_id, caller_object_id=e.caller_object_id,
        tenant_id=e.tenant_id, client_id=e.client_id, resource_id=e.resource_id, operation=e.operation,
        vault_name=e.vault_name, key_name=e.key_name, key_version=e.key_version, result=e.result,
        reason=e.reason, mac=r.mac.hex(), vault_id=e.vault_id, count=e.count,
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


def attributes_of(message: res.KeyVersion, paths: set[str] | None) -> KeyAttributes:
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


def _time_field(
    message: res.KeyVersion | res.Secret, name: Literal["not_before", "expires"], what: str = "key"
) -> datetime | None:
    return from_timestamp(f"{what}.{name}", getattr(message, name)) if message.HasField(name) else None


def secret_attributes_of(message: res.Secret, paths: set[str] | None) -> SecretAttributes:
    """What a SetSecret (paths None: every field given) or an UpdateSecret (the mask's paths)
    asks to set."""

    def wanted(name: str) -> bool:
        return paths is None or name in paths

    return SecretAttributes(
        content_type=message.content_type if wanted("content_type") else None,
        enabled=message.enabled if paths is not None and "enabled" in paths else None,
        not_before=_time_field(message, "not_before", "secret") if wanted("not_before") else None,
        expires=_time_field(message, "expires", "secret") if wanted("expires") else None,
        tags=dict(message.tags) if wanted("tags") and (paths is not None or message.tags) else None,
    )


def algorithm_of(value: int) -> Padding:
    algorithm = ALGORITHMS.get(value)
    if algorithm is None:
        raise invalid_field("algorithm", Reason.ALGORITHM_UNKNOWN, "use RSA_OAEP_256 (or RSA_OAEP, RSA1_5)")
    return algorithm


def signature_of(value: int) -> Signature:
    algorithm = SIGNATURES.get(value)
    if algorithm is None:
        raise invalid_field("algorithm", Reason.ALGORITHM_UNKNOWN, "use RS256-512, PS256-512 (RSA) or ES256-512 (EC)")
    return algorithm


def key_kind_of(message: res.KeyVersion) -> tuple[int, Curve | None]:
    """The size and curve a CreateKey asks for: RSA (key_size, 2048 by default) or EC (curve)."""
    if message.key_type == res.EC:
        curve = CURVES.get(message.curve)
        if curve is None:
            raise invalid_field("key.curve", Reason.KEY_CURVE_INVALID, "an EC key needs a curve: P_256, P_384 or P_521")
        return curve.bits, curve
    if message.key_type not in (res.RSA, res.KEY_TYPE_UNSPECIFIED):
        raise invalid_field("key.key_type", Reason.ENUM_UNKNOWN, "RSA or EC")
    if message.curve != res.KEY_CURVE_UNSPECIFIED:
        raise invalid_field("key.curve", Reason.KEY_CURVE_INVALID, "only EC keys have a curve")
    return message.key_size or 2048, None


def vault_of(name: str, field: str = "name") -> str:
    """A vault named by its resource name (vaults/{vault}) or by its name alone."""
    prefix = "vaults/"
    return vault_name(field, name[len(prefix) :] if name.startswith(prefix) else name)
