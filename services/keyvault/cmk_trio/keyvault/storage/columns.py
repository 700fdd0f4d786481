"""The key vault's rows to domain objects and back: what the store reads, and the times and
columns it writes, on either engine."""

from __future__ import annotations

import json
from datetime import datetime

from cmk_trio.keyvault.model import (
    AccessPolicy,
    AuditEntry,
    AuditRecord,
    Key,
    KeyOperation,
    KeyPermission,
    KeyVersion,
    Secret,
    SecretPermission,
    SecretVersion,
    StoredRotationPolicy,
    Vault,
)
from cmk_trio.rpckit.storage import Row, SqlValue


def t(when: datetime | None) -> str | None:
    return when.isoformat(timespec="microseconds") if when is not None else None


def dt(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def need(text: str) -> datetime:
    return datetime.fromisoformat(text)


def vault(r: Row, policies: tuple[AccessPolicy, ...]) -> Vault:
    return Vault(
        vault_name=r["vault_name"],
        tenant_id=r["tenant_id"],
        subscription_id=r["subscription_id"],
        resource_group=r["resource_group"],
        location=r["location"],
        soft_delete=bool(r["soft_delete"]),
        retention_days=r["retention_days"],
        purge_protection=bool(r["purge_protection"]),
        create_time=need(r["create_time"]),
        update_time=need(r["update_time"]),
        delete_time=dt(r["delete_time"]),
        purge_time=dt(r["purge_time"]),
        access_policies=policies,
        vault_id=r["vault_id"],
        sku=r["sku"],
        tags=json.loads(r["tags"]),
    )


def policy(r: Row) -> AccessPolicy:
    names = [n for n in r["permissions"].split(",") if n]
    secret_names = [n for n in r["secret_permissions"].split(",") if n]
    return AccessPolicy(r["tenant_id"], r["object_id"], frozenset(KeyPermission(n) for n in names),
                        frozenset(SecretPermission(n) for n in secret_names))  # fmt: skip


def secret(r: Row) -> Secret:
    return Secret(r["vault_name"], r["secret_name"], need(r["create_time"]), dt(r["delete_time"]), dt(r["purge_time"]))


def secret_version(r: Row) -> SecretVersion:
    return SecretVersion(
        vault_name=r["vault_name"],
        secret_name=r["secret_name"],
        version=r["version"],
        content_type=r["content_type"],
        enabled=bool(r["enabled"]),
        not_before=dt(r["not_before"]),
        expires=dt(r["expires"]),
        tags=json.loads(r["tags"]),
        create_time=need(r["create_time"]),
        update_time=need(r["update_time"]),
        sealed_value=bytes(r["sealed_value"]),
    )


def key(r: Row) -> Key:
    return Key(r["vault_name"], r["key_name"], need(r["create_time"]), dt(r["delete_time"]), dt(r["purge_time"]))


def version(r: Row) -> KeyVersion:
    return KeyVersion(
        vault_name=r["vault_name"],
        key_name=r["key_name"],
        version=r["version"],
        key_size=r["key_size"],
        key_ops=tuple(KeyOperation(o) for o in r["key_ops"].split(",") if o),
        enabled=bool(r["enabled"]),
        not_before=dt(r["not_before"]),
        expires=dt(r["expires"]),
        tags=json.loads(r["tags"]),
        create_time=need(r["create_time"]),
        update_time=need(r["update_time"]),
        public_jwk=r["public_jwk"],
        sealed_private_key=bytes(r["sealed_private_key"]),
        curve=r["curve"],
    )


def rotation_policy(r: Row) -> StoredRotationPolicy:
    return StoredRotationPolicy(
        r["vault_name"], r["key_name"], r["policy"], need(r["update_time"]), r["notified_version"]
    )


def audit_record(r: Row) -> AuditRecord:
    entry = AuditEntry(
        time=need(r["time"]),
        request_id=r["request_id"],
        caller_object_id=r["caller_object_id"],
        tenant_id=r["tenant_id"],
        client_id=r["client_id"],
        resource_id=r["resource_id"],
        operation=r["operation"],
        vault_name=r["vault_name"],
        key_name=r["key_name"],
        key_version=r["key_version"],
        result=r["result"],
        reason=r["reason"],
        vault_id=r["vault_id"],
        count=int(r["count"]),
    )
    return AuditRecord(int(r["sequence"]), entry, bytes(r["mac"]))


def audit_columns(entry: AuditEntry) -> tuple[SqlValue, ...]:
    """The record's fields from time to reason, in the columns' order (the MAC's form)."""
    fields = entry.canonical()
    fields.pop("vault_id", None)
    fields.pop("count", None)
    return tuple(fields.values())
