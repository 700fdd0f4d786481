"""The key vault's store, on SQLite or PostgreSQL: rows in, domain objects out.

Every change and the event that announces it are written in one unit of work.
"""

from __future__ import annotations

import json
from datetime import datetime

from cmk_trio.keyvault.model import (
    AccessPolicy,
    AuditRecord,
    Checkpoint,
    Event,
    EventType,
    Key,
    KeyVersion,
    Secret,
    SecretVersion,
    StoredRotationPolicy,
    Vault,
)
from cmk_trio.keyvault.storage import columns as col
from cmk_trio.keyvault.storage.schema import SCHEMA
from cmk_trio.rpckit.storage import AUDIT, SqlStore, SqlUnitOfWork, SqlValue, Transaction, gapless


class SqlKeyVaultStore(SqlStore["SqlKeyVaultUnitOfWork"]):
    """The key vault's reads, and its unit of work, on either engine."""

    service = "keyvault"
    schema = SCHEMA

    def _begin(self, tx: Transaction) -> SqlKeyVaultUnitOfWork:
        return SqlKeyVaultUnitOfWork(tx)

    # --- vaults -----------------------------------------------------------------------

    async def get_vault(self, name: str) -> Vault | None:
        row = await self._db.fetch_one("SELECT * FROM vaults WHERE vault_name = ?", (name,))
        if row is None:
            return None
        policies = await self._db.fetch_all(
            "SELECT * FROM access_policies WHERE vault_name = ? ORDER BY object_id", (name,)
        )
        return col.vault(row, tuple(col.policy(p) for p in policies))

    async def list_vaults(self, *, subscription_id: str, deleted: bool, after: str | None, limit: int) -> list[Vault]:
        sql = (
            "SELECT vault_name FROM vaults WHERE subscription_id = ? AND vault_name > ?"
            " AND (delete_time IS NOT NULL) = ? ORDER BY vault_name LIMIT ?"
        )
        rows = await self._db.fetch_all(sql, (subscription_id, after or "", deleted, limit))
        found = [await self.get_vault(r["vault_name"]) for r in rows]
        return [v for v in found if v is not None]

    async def vaults_due_for_purge(self, now: datetime) -> list[str]:
        rows = await self._db.fetch_all(
            "SELECT vault_name FROM vaults WHERE purge_time IS NOT NULL AND purge_time <= ?", (col.t(now),)
        )
        return [r["vault_name"] for r in rows]

    # --- access policies --------------------------------------------------------------

    async def count_policies(self, vault_name: str) -> int:
        row = await self._db.fetch_one("SELECT COUNT(*) FROM access_policies WHERE vault_name = ?", (vault_name,))
        return int(row[0]) if row else 0

    # --- keys -------------------------------------------------------------------------

    async def get_key(self, vault_name: str, key_name: str) -> Key | None:
        row = await self._db.fetch_one(
            "SELECT * FROM keys WHERE vault_name = ? AND key_name = ?", (vault_name, key_name)
        )
        return col.key(row) if row else None

    async def list_keys(self, vault_name: str, *, deleted: bool, after: str | None, limit: int) -> list[Key]:
        sql = (
            "SELECT * FROM keys WHERE vault_name = ? AND key_name > ?"
            " AND (delete_time IS NOT NULL) = ? ORDER BY key_name LIMIT ?"
        )
        rows = await self._db.fetch_all(sql, (vault_name, after or "", deleted, limit))
        return [col.key(r) for r in rows]

    async def keys_due_for_purge(self, now: datetime) -> list[tuple[str, str]]:
        rows = await self._db.fetch_all(
            "SELECT vault_name, key_name FROM keys WHERE purge_time IS NOT NULL AND purge_time <= ?", (col.t(now),)
        )
        return [(r["vault_name"], r["key_name"]) for r in rows]

    async def get_version(self, vault_name: str, key_name: str, version: str) -> KeyVersion | None:
        row = await self._db.fetch_one(
            "SELECT * FROM key_versions WHERE vault_name = ? AND key_name = ? AND version = ?",
            (vault_name, key_name, version),
        )
        return col.version(row) if row else None

    async def latest_version(self, vault_name: str, key_name: str) -> KeyVersion | None:
        row = await self._db.fetch_one(
            "SELECT * FROM key_versions WHERE vault_name = ? AND key_name = ?"
            " ORDER BY create_time DESC, rowid DESC LIMIT 1",
            (vault_name, key_name),
        )
        return col.version(row) if row else None

    async def list_versions(self, vault_name: str, key_name: str, *, after: str | None, limit: int) -> list[KeyVersion]:
        rows = await self._db.fetch_all(
            "SELECT * FROM key_versions WHERE vault_name = ? AND key_name = ? AND version > ? ORDER BY version LIMIT ?",
            (vault_name, key_name, after or "", limit),
        )
        return [col.version(r) for r in rows]

    # --- secrets ----------------------------------------------------------------------

    async def get_secret(self, vault_name: str, secret_name: str) -> Secret | None:
        row = await self._db.fetch_one(
            "SELECT * FROM secrets WHERE vault_name = ? AND secret_name = ?", (vault_name, secret_name)
        )
        return col.secret(row) if row else None

    async def list_secrets(self, vault_name: str, *, deleted: bool, after: str | None, limit: int) -> list[Secret]:
        sql = (
            "SELECT * FROM secrets WHERE vault_name = ? AND secret_name > ?"
            " AND (delete_time IS NOT NULL) = ? ORDER BY secret_name LIMIT ?"
        )
        rows = await self._db.fetch_all(sql, (vault_name, after or "", deleted, limit))
        return [col.secret(r) for r in rows]

    async def secrets_due_for_purge(self, now: datetime) -> list[tuple[str, str]]:
        rows = await self._db.fetch_all(
            "SELECT vault_name, secret_name FROM secrets WHERE purge_time IS NOT NULL AND purge_time <= ?",
            (col.t(now),),
        )
        return [(r["vault_name"], r["secret_name"]) for r in rows]

    async def get_secret_version(self, vault_name: str, secret_name: str, version: str) -> SecretVersion | None:
        row = await self._db.fetch_one(
            "SELECT * FROM secret_versions WHERE vault_name = ? AND secret_name = ? AND version = ?",
            (vault_name, secret_name, version),
        )
        return col.secret_version(row) if row else None

    async def latest_secret_version(self, vault_name: str, secret_name: str) -> SecretVersion | None:
        row = await self._db.fetch_one(
            "SELECT * FROM secret_versions WHERE vault_name = ? AND secret_name = ?"
            " ORDER BY create_time DESC, seq DESC LIMIT 1",
            (vault_name, secret_name),
        )
        return col.secret_version(row) if row else None

    async def list_secret_versions(
        self, vault_name: str, secret_name: str, *, after: str | None, limit: int
    ) -> list[SecretVersion]:
        rows = await self._db.fetch_all(
            "SELECT * FROM secret_versions WHERE vault_name = ? AND secret_name = ? AND version > ?"
            " ORDER BY version LIMIT ?",
            (vault_name, secret_name, after or "", limit),
        )
        return [col.secret_version(r) for r in rows]

    # --- events -----------------------------------------------------------------------

    async def events_after(self, sequence: int, limit: int = 500) -> list[Event]:
        rows = await self._db.fetch_all(
            "SELECT * FROM events WHERE sequence > ? ORDER BY sequence LIMIT ?", (sequence, limit)
        )
        events = [
            Event(r["sequence"], EventType(r["type"]), col.need(r["time"]), r["vault_name"], r["key_name"],
                  r["version"], r["object_id"])
            for r in rows
        ]  # fmt: skip
        return gapless(events, sequence, lambda e: e.sequence)

    async def last_sequence(self) -> int:
        row = await self._db.fetch_one("SELECT COALESCE(MAX(sequence), 0) FROM events")
        return int(row[0]) if row else 0

    # --- rotation policies ------------------------------------------------------------

    async def get_rotation_policy(self, vault_name: str, key_name: str) -> StoredRotationPolicy | None:
        row = await self._db.fetch_one(
            "SELECT * FROM rotation_policies WHERE vault_name = ? AND key_name = ?", (vault_name, key_name)
        )
        return col.rotation_policy(row) if row else None

    async def live_rotation_policies(self) -> list[StoredRotationPolicy]:
        """The policies of keys that are neither deleted nor in a deleted vault."""
        rows = await self._db.fetch_all(
            "SELECT r.* FROM rotation_policies r"
            " JOIN keys k USING (vault_name, key_name) JOIN vaults v USING (vault_name)"
            " WHERE k.delete_time IS NULL AND v.delete_time IS NULL"
        )
        return [col.rotation_policy(r) for r in rows]

    # --- the audit log ----------------------------------------------------------------

    async def audit_records(
        self,
        *,
        after: int = 0,
        limit: int = 100,
        vault: Vault | None = None,
        vault_name: str | None = None,
        key_name: str | None = None,
        caller_object_id: str | None = None,
        result: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[AuditRecord]:
        """Records after sequence `after`, oldest first, that match every filter given."""
        sql = "SELECT * FROM audit_log WHERE sequence > ?"
        params: list[SqlValue] = [after]
        if vault is not None:
            # Its own records, and those written before vaults had ids under its name since
            # it was made (older ones are of an earlier vault of that name).
            sql += " AND (vault_id = ? OR (vault_id = '' AND vault_name = ? AND time >= ?))"
            params += [vault.vault_id, vault.vault_name, col.t(vault.create_time)]
        for column, value in (
            ("vault_name", vault_name),
            ("key_name", key_name),
            ("caller_object_id", caller_object_id),
            ("result", result),
        ):
            if value is not None:
                sql += f" AND {column} = ?"
                params.append(value)
        if since is not None:
            sql += " AND time >= ?"
            params.append(col.t(since))
        if until is not None:
            sql += " AND time < ?"
            params.append(col.t(until))
        rows = await self._db.fetch_all(sql + " ORDER BY sequence LIMIT ?", (*params, limit))
        return [col.audit_record(r) for r in rows]

    async def audit_head(self) -> tuple[int, bytes] | None:
        """The sequence number and MAC of the newest record, or None for an empty log."""
        row = await self._db.fetch_one("SELECT sequence, mac FROM audit_log ORDER BY sequence DESC LIMIT 1")
        return (int(row[0]), bytes(row[1])) if row else None

    async def latest_checkpoint(self) -> Checkpoint | None:
        row = await self._db.fetch_one("SELECT * FROM audit_checkpoints ORDER BY count DESC LIMIT 1")
        if row is None:
            return None
        return Checkpoint(int(row["count"]), bytes(row["head_mac"]), row["time"], bytes(row["signature"]))

    # --- the service's own keys -------------------------------------------------------

    async def get_service_key(self, name: str) -> tuple[bytes, bytes] | None:
        """A key of the service itself (the audit checkpoint key): its public key and its
        sealed private key."""
        row = await self._db.fetch_one("SELECT * FROM service_keys WHERE name = ?", (name,))
        return (bytes(row["public_key"]), bytes(row["sealed_private_key"])) if row else None

    async def vault_id(self, name: str) -> str | None:
        """The id of the vault now holding `name` (live or soft-deleted), if any."""
        row = await self._db.fetch_one("SELECT vault_id FROM vaults WHERE vault_name = ?", (name,))
        return str(row[0]) if row else None

    async def holds_keys(self) -> bool:
        """Whether any key material is stored (sealed under the master key)."""
        row = await self._db.fetch_one(
            "SELECT EXISTS (SELECT 1 FROM key_versions) OR EXISTS (SELECT 1 FROM service_keys)"
        )
        return bool(row and row[0])


class SqlKeyVaultUnitOfWork(SqlUnitOfWork):
    """The key vault's writes inside one transaction (write transactions run one at a time:
    what it reads stays as read until it commits)."""

    def __init__(self, tx: Transaction) -> None:
        super().__init__(tx)
        self._inserted: list[KeyVersion | SecretVersion] = []
        self._purged: dict[str, str] = {}

    @property
    def inserted_versions(self) -> tuple[KeyVersion | SecretVersion, ...]:
        return tuple(self._inserted)

    async def vault_id(self, name: str) -> str | None:
        if name in self._purged:
            return self._purged[name]
        row = await self._tx.fetch_one("SELECT vault_id FROM vaults WHERE vault_name = ?", (name,))
        return str(row[0]) if row else None

    async def latest_version_id(self, vault_name: str, key_name: str) -> str | None:
        row = await self._tx.fetch_one(
            "SELECT version FROM key_versions WHERE vault_name = ? AND key_name = ?"
            " ORDER BY create_time DESC, rowid DESC LIMIT 1",
            (vault_name, key_name),
        )
        return str(row[0]) if row else None

    async def get_policy(self, vault_name: str, object_id: str) -> AccessPolicy | None:
        row = await self._tx.fetch_one(
            "SELECT * FROM access_policies WHERE vault_name = ? AND object_id = ?", (vault_name, object_id)
        )
        return col.policy(row) if row else None

    async def count_policies(self, vault_name: str) -> int:
        row = await self._tx.fetch_one("SELECT COUNT(*) FROM access_policies WHERE vault_name = ?", (vault_name,))
        return int(row[0]) if row else 0

    async def insert_vault(self, v: Vault) -> None:
        await self._tx.execute(
            "INSERT INTO vaults (vault_name, tenant_id, subscription_id, resource_group, location, soft_delete,"
            " retention_days, purge_protection, create_time, update_time, vault_id, sku, tags)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                v.vault_name, v.tenant_id, v.subscription_id, v.resource_group, v.location, int(v.soft_delete),
                v.retention_days, int(v.purge_protection), col.t(v.create_time), col.t(v.update_time), v.vault_id,
                v.sku, json.dumps(v.tags, sort_keys=True),
            ),
        )  # fmt: skip
        for policy in v.access_policies:
            await self.put_policy(v.vault_name, policy)

    async def update_vault_flags(self, name: str, *, soft_delete: bool, purge_protection: bool, when: datetime) -> None:
        await self._tx.execute(
            "UPDATE vaults SET soft_delete = ?, purge_protection = ?, update_time = ? WHERE vault_name = ?",
            (int(soft_delete), int(purge_protection), col.t(when), name),
        )

    async def update_vault_labels(self, name: str, *, sku: str, tags: dict[str, str], when: datetime) -> None:
        await self._tx.execute(
            "UPDATE vaults SET sku = ?, tags = ?, update_time = ? WHERE vault_name = ?",
            (sku, json.dumps(tags, sort_keys=True), col.t(when), name),
        )

    async def delete_policies(self, vault_name: str) -> None:
        await self._tx.execute("DELETE FROM access_policies WHERE vault_name = ?", (vault_name,))

    async def mark_vault_deleted(self, name: str, deleted: datetime | None, purge: datetime | None) -> None:
        await self._tx.execute(
            "UPDATE vaults SET delete_time = ?, purge_time = ? WHERE vault_name = ?",
            (col.t(deleted), col.t(purge), name),
        )

    async def delete_vault(self, name: str) -> None:
        vault_id = await self.vault_id(name)
        await self._tx.execute("DELETE FROM vaults WHERE vault_name = ?", (name,))
        if vault_id is not None:
            self._purged[name] = vault_id  # the purge's own audit record still names it

    async def put_policy(self, vault_name: str, policy: AccessPolicy) -> None:
        await self._tx.execute(
            "INSERT INTO access_policies (vault_name, object_id, tenant_id, permissions, secret_permissions)"
            " VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (vault_name, object_id) DO UPDATE SET tenant_id = excluded.tenant_id,"
            " permissions = excluded.permissions, secret_permissions = excluded.secret_permissions",
            (vault_name, policy.object_id, policy.tenant_id, ",".join(sorted(policy.permissions)),
             ",".join(sorted(policy.secret_permissions))),
        )  # fmt: skip

    async def delete_policy(self, vault_name: str, object_id: str) -> bool:
        deleted = await self._tx.execute(
            "DELETE FROM access_policies WHERE vault_name = ? AND object_id = ?", (vault_name, object_id)
        )
        return deleted > 0

    async def insert_secret(self, secret: Secret) -> None:
        await self._tx.execute(
            "INSERT INTO secrets (vault_name, secret_name, create_time) VALUES (?, ?, ?)",
            (secret.vault_name, secret.secret_name, col.t(secret.create_time)),
        )

    async def mark_secret_deleted(
        self, vault_name: str, secret_name: str, deleted: datetime | None, purge: datetime | None
    ) -> None:
        await self._tx.execute(
            "UPDATE secrets SET delete_time = ?, purge_time = ? WHERE vault_name = ? AND secret_name = ?",
            (col.t(deleted), col.t(purge), vault_name, secret_name),
        )

    async def delete_secret(self, vault_name: str, secret_name: str) -> None:
        await self._tx.execute(
            "DELETE FROM secrets WHERE vault_name = ? AND secret_name = ?", (vault_name, secret_name)
        )

    async def insert_secret_version(self, v: SecretVersion) -> None:
        await self._tx.execute(
            "INSERT INTO secret_versions (vault_name, secret_name, version, content_type, enabled, not_before,"
            " expires, tags, create_time, update_time, sealed_value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                v.vault_name, v.secret_name, v.version, v.content_type, int(v.enabled), col.t(v.not_before),
                col.t(v.expires), json.dumps(v.tags, sort_keys=True), col.t(v.create_time), col.t(v.update_time),
                v.sealed_value,
            ),
        )  # fmt: skip
        self._inserted.append(v)

    async def update_secret_version(self, v: SecretVersion) -> None:
        await self._tx.execute(
            "UPDATE secret_versions SET content_type = ?, enabled = ?, not_before = ?, expires = ?, tags = ?,"
            " update_time = ? WHERE vault_name = ? AND secret_name = ? AND version = ?",
            (
                v.content_type, int(v.enabled), col.t(v.not_before), col.t(v.expires),
                json.dumps(v.tags, sort_keys=True), col.t(v.update_time), v.vault_name, v.secret_name, v.version,
            ),
        )  # fmt: skip

    async def insert_key(self, key: Key) -> None:
        await self._tx.execute(
            "INSERT INTO keys (vault_name, key_name, create_time) VALUES (?, ?, ?)",
            (key.vault_name, key.key_name, col.t(key.create_time)),
        )

    async def mark_key_deleted(
        self, vault_name: str, key_name: str, deleted: datetime | None, purge: datetime | None
    ) -> None:
        await self._tx.execute(
            "UPDATE keys SET delete_time = ?, purge_time = ? WHERE vault_name = ? AND key_name = ?",
            (col.t(deleted), col.t(purge), vault_name, key_name),
        )

    async def delete_key(self, vault_name: str, key_name: str) -> None:
        await self._tx.execute("DELETE FROM keys WHERE vault_name = ? AND key_name = ?", (vault_name, key_name))

    async def insert_version(self, v: KeyVersion) -> None:
        await self._tx.execute(
            "INSERT INTO key_versions (vault_name, key_name, version, key_size, key_ops, enabled, not_before,"
            " expires, tags, create_time, update_time, public_jwk, sealed_private_key, curve)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                v.vault_name, v.key_name, v.version, v.key_size, ",".join(v.key_ops), int(v.enabled),
                col.t(v.not_before), col.t(v.expires), json.dumps(v.tags, sort_keys=True), col.t(v.create_time),
                col.t(v.update_time), v.public_jwk, v.sealed_private_key, v.curve,
            ),
        )  # fmt: skip
        self._inserted.append(v)

    async def update_version(self, v: KeyVersion) -> None:
        await self._tx.execute(
            "UPDATE key_versions SET key_ops = ?, enabled = ?, not_before = ?, expires = ?, tags = ?, update_time = ?"
            " WHERE vault_name = ? AND key_name = ? AND version = ?",
            (
                ",".join(v.key_ops), int(v.enabled), col.t(v.not_before), col.t(v.expires),
                json.dumps(v.tags, sort_keys=True), col.t(v.update_time), v.vault_name, v.key_name, v.version,
            ),
        )  # fmt: skip

    async def append_event(self, event_type: EventType, when: datetime, **fields: str) -> None:
        """Append an event with the next sequence number, without gaps (write transactions run
        one at a time, so MAX()+1 is safe, and numbers commit in order)."""
        columns = ["type", "time", *fields]
        await self._tx.execute(
            f"INSERT INTO events (sequence, {', '.join(columns)})"  # noqa: S608 (column names are ours)
            f" VALUES ((SELECT COALESCE(MAX(sequence), 0) + 1 FROM events), {', '.join('?' * len(columns))})",
            (int(event_type), col.t(when), *fields.values()),
        )

    async def put_rotation_policy(self, vault_name: str, key_name: str, policy_json: str, when: datetime) -> None:
        await self._tx.execute(
            "INSERT INTO rotation_policies (vault_name, key_name, policy, update_time) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (vault_name, key_name) DO UPDATE SET policy = excluded.policy,"
            " update_time = excluded.update_time",
            (vault_name, key_name, policy_json, col.t(when)),
        )

    async def mark_rotation_notified(self, vault_name: str, key_name: str, version: str) -> None:
        await self._tx.execute(
            "UPDATE rotation_policies SET notified_version = ? WHERE vault_name = ? AND key_name = ?",
            (version, vault_name, key_name),
        )

    async def audit_head(self) -> tuple[int, bytes] | None:
        """The newest record's sequence number and MAC, read inside this transaction (so that
        the records appended after it chain to what is really the head)."""
        row = await self._tx.fetch_one("SELECT sequence, mac FROM audit_log ORDER BY sequence DESC LIMIT 1")
        return (int(row[0]), bytes(row[1])) if row else None

    async def insert_audit_records(self, records: list[AuditRecord]) -> None:
        rows = [(r.sequence, *col.audit_columns(r.entry), r.entry.vault_id, r.entry.count, r.mac) for r in records]
        await self._tx.execute_many(
            "INSERT INTO audit_log (sequence, time, request_id, caller_object_id, tenant_id, client_id,"
            " resource_id, operation, vault_name, key_name, key_version, result, reason, vault_id, count, mac)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
            announce=AUDIT,  # an append changes nothing that read caches hold
        )

    async def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        await self._tx.execute(
            "INSERT INTO audit_checkpoints (count, head_mac, time, signature) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (count) DO UPDATE SET head_mac = excluded.head_mac, time = excluded.time,"
            " signature = excluded.signature",
            (checkpoint.count, checkpoint.head, checkpoint.time, checkpoint.signature),
            announce=AUDIT,
        )

    async def insert_service_key(self, name: str, public_key: bytes, sealed_private_key: bytes) -> None:
        await self._tx.execute(
            "INSERT INTO service_keys (name, public_key, sealed_private_key) VALUES (?, ?, ?)",
            (name, public_key, sealed_private_key),
        )
