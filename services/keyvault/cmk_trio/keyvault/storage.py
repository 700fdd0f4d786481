"""The key vault's SQLite schema and queries. Rows in, domain objects out.

Every change and the event that announces it are written in one transaction.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import aiosqlite

from cmk_trio.keyvault.model import (
    AccessPolicy,
    Event,
    EventType,
    Key,
    KeyOperation,
    KeyPermission,
    KeyVersion,
    Vault,
)
from cmk_trio.rpckit.storage import Database, Migration, open_database

MIGRATIONS = (
    Migration(
        1,
        "vaults, access policies, keys, key versions, audit log, events",
        (
            """CREATE TABLE vaults (
                vault_name TEXT PRIMARY KEY,
                tenant_id TEXT NOT NULL,
                subscription_id TEXT NOT NULL,
                resource_group TEXT NOT NULL,
                location TEXT NOT NULL,
                soft_delete INTEGER NOT NULL,
                retention_days INTEGER NOT NULL,
                purge_protection INTEGER NOT NULL,
                create_time TEXT NOT NULL,
                update_time TEXT NOT NULL,
                delete_time TEXT,
                purge_time TEXT)""",
            "CREATE INDEX vaults_by_subscription ON vaults(subscription_id, vault_name)",
            """CREATE TABLE access_policies (
                vault_name TEXT NOT NULL REFERENCES vaults(vault_name) ON DELETE CASCADE,
                object_id TEXT NOT NULL,
                tenant_id TEXT NOT NULL,
                permissions TEXT NOT NULL,
                PRIMARY KEY (vault_name, object_id))""",
            """CREATE TABLE keys (
                vault_name TEXT NOT NULL REFERENCES vaults(vault_name) ON DELETE CASCADE,
                key_name TEXT NOT NULL COLLATE NOCASE,
                create_time TEXT NOT NULL,
                delete_time TEXT,
                purge_time TEXT,
                PRIMARY KEY (vault_name, key_name))""",
            """CREATE TABLE key_versions (
                vault_name TEXT NOT NULL,
                key_name TEXT NOT NULL COLLATE NOCASE,
                version TEXT NOT NULL,
                key_size INTEGER NOT NULL,
                key_ops TEXT NOT NULL,
                enabled INTEGER NOT NULL,
                not_before TEXT,
                expires TEXT,
                tags TEXT NOT NULL,
                create_time TEXT NOT NULL,
                update_time TEXT NOT NULL,
                public_jwk TEXT NOT NULL,
                sealed_private_key BLOB NOT NULL,
                PRIMARY KEY (vault_name, key_name, version),
                FOREIGN KEY (vault_name, key_name) REFERENCES keys(vault_name, key_name) ON DELETE CASCADE)""",
            "CREATE INDEX key_versions_by_time ON key_versions(vault_name, key_name, create_time)",
            """CREATE TABLE rotation_policies (
                vault_name TEXT NOT NULL,
                key_name TEXT NOT NULL COLLATE NOCASE,
                policy TEXT NOT NULL,
                update_time TEXT NOT NULL,
                notified_version TEXT NOT NULL DEFAULT '',
                PRIMARY KEY (vault_name, key_name),
                FOREIGN KEY (vault_name, key_name) REFERENCES keys(vault_name, key_name) ON DELETE CASCADE)""",
            """CREATE TABLE audit_log (
                sequence INTEGER PRIMARY KEY,
                time TEXT NOT NULL,
                request_id TEXT NOT NULL,
                caller_object_id TEXT NOT NULL,
                tenant_id TEXT NOT NULL,
                client_id TEXT NOT NULL,
                resource_id TEXT NOT NULL,
                operation TEXT NOT NULL,
                vault_name TEXT NOT NULL,
                key_name TEXT NOT NULL,
                key_version TEXT NOT NULL,
                result TEXT NOT NULL,
                reason TEXT NOT NULL,
                mac BLOB NOT NULL)""",
            "CREATE INDEX audit_by_vault ON audit_log(vault_name, sequence)",
            """CREATE TABLE audit_checkpoints (
                count INTEGER PRIMARY KEY,
                head_mac BLOB NOT NULL,
                time TEXT NOT NULL,
                signature BLOB NOT NULL)""",
            """CREATE TABLE service_keys (
                name TEXT PRIMARY KEY,
                public_key BLOB NOT NULL,
                sealed_private_key BLOB NOT NULL)""",
            """CREATE TABLE events (
                sequence INTEGER PRIMARY KEY,
                type INTEGER NOT NULL,
                time TEXT NOT NULL,
                vault_name TEXT NOT NULL DEFAULT '',
                key_name TEXT NOT NULL DEFAULT '',
                version TEXT NOT NULL DEFAULT '',
                object_id TEXT NOT NULL DEFAULT '')""",
        ),
    ),
)


def _t(when: datetime | None) -> str | None:
    return when.isoformat(timespec="microseconds") if when is not None else None


def _dt(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _need(text: str) -> datetime:
    return datetime.fromisoformat(text)


class KeyVaultStore:
    """All reads and writes of the key vault database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @classmethod
    async def open(cls, path: Path) -> KeyVaultStore:
        return cls(await open_database(path, MIGRATIONS))

    async def close(self) -> None:
        await self.db.close()

    # --- vaults -----------------------------------------------------------------------

    async def insert_vault(self, tx: aiosqlite.Connection, v: Vault) -> None:
        await tx.execute(
            "INSERT INTO vaults (vault_name, tenant_id, subscription_id, resource_group, location, soft_delete,"
            " retention_days, purge_protection, create_time, update_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                v.vault_name, v.tenant_id, v.subscription_id, v.resource_group, v.location, int(v.soft_delete),
                v.retention_days, int(v.purge_protection), _t(v.create_time), _t(v.update_time),
            ),
        )  # fmt: skip
        for policy in v.access_policies:
            await self.put_policy(tx, v.vault_name, policy)

    async def update_vault_flags(
        self, tx: aiosqlite.Connection, name: str, *, soft_delete: bool, purge_protection: bool, when: datetime
    ) -> None:
        await tx.execute(
            "UPDATE vaults SET soft_delete = ?, purge_protection = ?, update_time = ? WHERE vault_name = ?",
            (int(soft_delete), int(purge_protection), _t(when), name),
        )

    async def mark_vault_deleted(
        self, tx: aiosqlite.Connection, name: str, deleted: datetime | None, purge: datetime | None
    ) -> None:
        await tx.execute(
            "UPDATE vaults SET delete_time = ?, purge_time = ? WHERE vault_name = ?", (_t(deleted), _t(purge), name)
        )

    async def delete_vault(self, tx: aiosqlite.Connection, name: str) -> None:
        await tx.execute("DELETE FROM vaults WHERE vault_name = ?", (name,))

    async def get_vault(self, name: str) -> Vault | None:
        row = await self.db.fetch_one("SELECT * FROM vaults WHERE vault_name = ?", (name,))
        if row is None:
            return None
        policies = await self.db.fetch_all(
            "SELECT * FROM access_policies WHERE vault_name = ? ORDER BY object_id", (name,)
        )
        return _vault(row, tuple(_policy(p) for p in policies))

    async def list_vaults(self, *, subscription_id: str, deleted: bool, after: str | None, limit: int) -> list[Vault]:
        sql = (
            "SELECT vault_name FROM vaults WHERE subscription_id = ? AND vault_name > ?"
            " AND (delete_time IS NOT NULL) = ? ORDER BY vault_name LIMIT ?"
        )
        rows = await self.db.fetch_all(sql, (subscription_id, after or "", int(deleted), limit))
        found = [await self.get_vault(r["vault_name"]) for r in rows]
        return [v for v in found if v is not None]

    async def vaults_due_for_purge(self, now: datetime) -> list[str]:
        rows = await self.db.fetch_all(
            "SELECT vault_name FROM vaults WHERE purge_time IS NOT NULL AND purge_time <= ?", (_t(now),)
        )
        return [r["vault_name"] for r in rows]

    # --- access policies --------------------------------------------------------------

    async def put_policy(self, tx: aiosqlite.Connection, vault_name: str, policy: AccessPolicy) -> None:
        await tx.execute(
            "INSERT INTO access_policies (vault_name, object_id, tenant_id, permissions) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (vault_name, object_id) DO UPDATE SET tenant_id = excluded.tenant_id,"
            " permissions = excluded.permissions",
            (vault_name, policy.object_id, policy.tenant_id, ",".join(sorted(policy.permissions))),
        )

    async def delete_policy(self, tx: aiosqlite.Connection, vault_name: str, object_id: str) -> bool:
        cursor = await tx.execute(
            "DELETE FROM access_policies WHERE vault_name = ? AND object_id = ?", (vault_name, object_id)
        )
        return cursor.rowcount > 0

    async def count_policies(self, vault_name: str) -> int:
        row = await self.db.fetch_one("SELECT COUNT(*) FROM access_policies WHERE vault_name = ?", (vault_name,))
        return int(row[0]) if row else 0

    # --- keys -------------------------------------------------------------------------

    async def insert_key(self, tx: aiosqlite.Connection, key: Key) -> None:
        await tx.execute(
            "INSERT INTO keys (vault_name, key_name, create_time) VALUES (?, ?, ?)",
            (key.vault_name, key.key_name, _t(key.create_time)),
        )

    async def get_key(self, vault_name: str, key_name: str) -> Key | None:
        row = await self.db.fetch_one(
            "SELECT * FROM keys WHERE vault_name = ? AND key_name = ?", (vault_name, key_name)
        )
        return _key(row) if row else None

    async def list_keys(self, vault_name: str, *, deleted: bool, after: str | None, limit: int) -> list[Key]:
        sql = (
            "SELECT * FROM keys WHERE vault_name = ? AND key_name > ?"
            " AND (delete_time IS NOT NULL) = ? ORDER BY key_name LIMIT ?"
        )
        rows = await self.db.fetch_all(sql, (vault_name, after or "", int(deleted), limit))
        return [_key(r) for r in rows]

    async def mark_key_deleted(
        self, tx: aiosqlite.Connection, vault_name: str, key_name: str, deleted: datetime | None, purge: datetime | None
    ) -> None:
        await tx.execute(
            "UPDATE keys SET delete_time = ?, purge_time = ? WHERE vault_name = ? AND key_name = ?",
            (_t(deleted), _t(purge), vault_name, key_name),
        )

    async def delete_key(self, tx: aiosqlite.Connection, vault_name: str, key_name: str) -> None:
        await tx.execute("DELETE FROM keys WHERE vault_name = ? AND key_name = ?", (vault_name, key_name))

    async def keys_due_for_purge(self, now: datetime) -> list[tuple[str, str]]:
        rows = await self.db.fetch_all(
            "SELECT vault_name, key_name FROM keys WHERE purge_time IS NOT NULL AND purge_time <= ?", (_t(now),)
        )
        return [(r["vault_name"], r["key_name"]) for r in rows]

    async def insert_version(self, tx: aiosqlite.Connection, v: KeyVersion) -> None:
        await tx.execute(
            "INSERT INTO key_versions (vault_name, key_name, version, key_size, key_ops, enabled, not_before,"
            " expires, tags, create_time, update_time, public_jwk, sealed_private_key)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                v.vault_name, v.key_name, v.version, v.key_size, ",".join(v.key_ops), int(v.enabled),
                _t(v.not_before), _t(v.expires), json.dumps(v.tags, sort_keys=True), _t(v.create_time),
                _t(v.update_time), v.public_jwk, v.sealed_private_key,
            ),
        )  # fmt: skip

    async def update_version(self, tx: aiosqlite.Connection, v: KeyVersion) -> None:
        await tx.execute(
            "UPDATE key_versions SET key_ops = ?, enabled = ?, not_before = ?, expires = ?, tags = ?, update_time = ?"
            " WHERE vault_name = ? AND key_name = ? AND version = ?",
            (
                ",".join(v.key_ops), int(v.enabled), _t(v.not_before), _t(v.expires),
                json.dumps(v.tags, sort_keys=True), _t(v.update_time), v.vault_name, v.key_name, v.version,
            ),
        )  # fmt: skip

    async def get_version(self, vault_name: str, key_name: str, version: str) -> KeyVersion | None:
        row = await self.db.fetch_one(
            "SELECT * FROM key_versions WHERE vault_name = ? AND key_name = ? AND version = ?",
            (vault_name, key_name, version),
        )
        return _version(row) if row else None

    async def latest_version(self, vault_name: str, key_name: str) -> KeyVersion | None:
        row = await self.db.fetch_one(
            "SELECT * FROM key_versions WHERE vault_name = ? AND key_name = ?"
            " ORDER BY create_time DESC, rowid DESC LIMIT 1",
            (vault_name, key_name),
        )
        return _version(row) if row else None

    async def list_versions(self, vault_name: str, key_name: str, *, after: str | None, limit: int) -> list[KeyVersion]:
        rows = await self.db.fetch_all(
            "SELECT * FROM key_versions WHERE vault_name = ? AND key_name = ? AND version > ? ORDER BY version LIMIT ?",
            (vault_name, key_name, after or "", limit),
        )
        return [_version(r) for r in rows]

    # --- events -----------------------------------------------------------------------

    async def append_event(
        self, tx: aiosqlite.Connection, event_type: EventType, when: datetime, **fields: str
    ) -> None:
        """Append an event with the next sequence number, without gaps (writers are serialised)."""
        columns = ["type", "time", *fields]
        await tx.execute(
            f"INSERT INTO events (sequence, {', '.join(columns)})"  # noqa: S608 (column names are ours)
            f" SELECT COALESCE(MAX(sequence), 0) + 1, {', '.join('?' * len(columns))} FROM events",
            (int(event_type), _t(when), *fields.values()),
        )

    async def events_after(self, sequence: int, limit: int = 500) -> list[Event]:
        rows = await self.db.fetch_all(
            "SELECT * FROM events WHERE sequence > ? ORDER BY sequence LIMIT ?", (sequence, limit)
        )
        return [
            Event(r["sequence"], EventType(r["type"]), _need(r["time"]), r["vault_name"], r["key_name"],
                  r["version"], r["object_id"])
            for r in rows
        ]  # fmt: skip

    async def last_sequence(self) -> int:
        row = await self.db.fetch_one("SELECT COALESCE(MAX(sequence), 0) FROM events")
        return int(row[0]) if row else 0


def _vault(r: Any, policies: tuple[AccessPolicy, ...]) -> Vault:
    return Vault(
        vault_name=r["vault_name"],
        tenant_id=r["tenant_id"],
        subscription_id=r["subscription_id"],
        resource_group=r["resource_group"],
        location=r["location"],
        soft_delete=bool(r["soft_delete"]),
        retention_days=r["retention_days"],
        purge_protection=bool(r["purge_protection"]),
        create_time=_need(r["create_time"]),
        update_time=_need(r["update_time"]),
        delete_time=_dt(r["delete_time"]),
        purge_time=_dt(r["purge_time"]),
        access_policies=policies,
    )


def _policy(r: Any) -> AccessPolicy:
    names = [n for n in r["permissions"].split(",") if n]
    return AccessPolicy(r["tenant_id"], r["object_id"], frozenset(KeyPermission(n) for n in names))


def _key(r: Any) -> Key:
    return Key(r["vault_name"], r["key_name"], _need(r["create_time"]), _dt(r["delete_time"]), _dt(r["purge_time"]))


def _version(r: Any) -> KeyVersion:
    return KeyVersion(
        vault_name=r["vault_name"],
        key_name=r["key_name"],
        version=r["version"],
        key_size=r["key_size"],
        key_ops=tuple(KeyOperation(o) for o in r["key_ops"].split(",") if o),
        enabled=bool(r["enabled"]),
        not_before=_dt(r["not_before"]),
        expires=_dt(r["expires"]),
        tags=json.loads(r["tags"]),
        create_time=_need(r["create_time"]),
        update_time=_need(r["update_time"]),
        public_jwk=r["public_jwk"],
        sealed_private_key=bytes(r["sealed_private_key"]),
    )
