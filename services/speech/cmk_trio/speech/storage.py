"""The speech service's SQLite schema and queries. Secrets are stored only sealed; the
data key only wrapped."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import aiosqlite

from cmk_trio.rpckit.storage import Database, Migration, open_database
from cmk_trio.speech.model import (
    Application,
    ApprovalState,
    CmkApproval,
    KeySource,
    SealedLuisKeys,
    SpeechResource,
    Tier,
)

MIGRATIONS = (
    Migration(
        1,
        "resources, CMK approvals, applications, LUIS keys",
        (
            """CREATE TABLE resources (
                uid TEXT PRIMARY KEY,
                resource_key TEXT NOT NULL UNIQUE,
                resource_id TEXT NOT NULL,
                subscription_id TEXT NOT NULL,
                resource_group TEXT NOT NULL,
                account_name TEXT NOT NULL,
                location TEXT NOT NULL,
                tier TEXT NOT NULL,
                create_time TEXT NOT NULL,
                tenant_id TEXT NOT NULL,
                key_source TEXT NOT NULL,
                wrapping_key TEXT NOT NULL,
                wrapped_data_key BLOB NOT NULL,
                identity_principal_id TEXT NOT NULL DEFAULT '',
                identity_tenant_id TEXT NOT NULL DEFAULT '',
                key_uri TEXT NOT NULL DEFAULT '',
                follow_latest INTEGER NOT NULL DEFAULT 0)""",
            "CREATE INDEX resources_by_subscription ON resources(subscription_id, resource_key)",
            """CREATE TABLE cmk_approvals (
                subscription_id TEXT PRIMARY KEY,
                state TEXT NOT NULL,
                request_time TEXT NOT NULL,
                requested_by TEXT NOT NULL,
                decision_time TEXT,
                note TEXT NOT NULL DEFAULT '')""",
            """CREATE TABLE applications (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                resource_uid TEXT NOT NULL REFERENCES resources(uid) ON DELETE CASCADE,
                application_id TEXT NOT NULL,
                display_name TEXT NOT NULL,
                version INTEGER NOT NULL,
                sealed_configuration BLOB NOT NULL,
                create_time TEXT NOT NULL,
                update_time TEXT NOT NULL,
                UNIQUE (resource_uid, application_id))""",
            """CREATE TABLE luis_keys (
                resource_uid TEXT PRIMARY KEY REFERENCES resources(uid) ON DELETE CASCADE,
                version INTEGER NOT NULL,
                sealed BLOB NOT NULL,
                update_time TEXT NOT NULL)""",
        ),
    ),
)


def resource_key(resource_id: str) -> str:
    """Azure resource ids compare case-insensitively."""
    return resource_id.lower()


def _t(when: datetime | None) -> str | None:
    return when.isoformat(timespec="microseconds") if when else None


def _dt(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


class SpeechStore:
    """All reads and writes of the speech database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @classmethod
    async def open(cls, path: Path) -> SpeechStore:
        return cls(await open_database(path, MIGRATIONS))

    async def close(self) -> None:
        await self.db.close()

    # --- resources --------------------------------------------------------------------

    async def insert_resource(self, tx: aiosqlite.Connection, r: SpeechResource) -> None:
        await tx.execute(
            "INSERT INTO resources (uid, resource_key, resource_id, subscription_id, resource_group, account_name,"
            " location, tier, create_time, tenant_id, key_source, wrapping_key, wrapped_data_key,"
            " identity_principal_id, identity_tenant_id, key_uri, follow_latest)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                r.uid, resource_key(r.resource_id), r.resource_id, r.subscription_id, r.resource_group, r.account_name,
                r.location, r.tier.value, _t(r.create_time), r.tenant_id, r.key_source.value, r.wrapping_key,
                r.wrapped_data_key, r.identity_principal_id, r.identity_tenant_id, r.key_uri, int(r.follow_latest),
            ),
        )  # fmt: skip

    async def update_resource(self, tx: aiosqlite.Connection, r: SpeechResource) -> None:
        """Write a resource's identity and encryption settings (its data key rewrapped)."""
        await tx.execute(
            "UPDATE resources SET resource_key = ?, resource_id = ?, subscription_id = ?, resource_group = ?,"
            " tenant_id = ?, key_source = ?, wrapping_key = ?, wrapped_data_key = ?, identity_principal_id = ?,"
            " identity_tenant_id = ?, key_uri = ?, follow_latest = ? WHERE uid = ?",
            (resource_key(r.resource_id), r.resource_id, r.subscription_id, r.resource_group, r.tenant_id,
             r.key_source.value, r.wrapping_key, r.wrapped_data_key, r.identity_principal_id, r.identity_tenant_id,
             r.key_uri, int(r.follow_latest), r.uid),
        )  # fmt: skip

    async def resources_using(self, *, key_prefix: str) -> list[SpeechResource]:
        """Resources whose data key is wrapped by a key identifier starting with `key_prefix`
        (a vault URI, or a key URI without version)."""
        rows = await self.db.fetch_all(
            "SELECT * FROM resources WHERE key_source = 'Microsoft.KeyVault'"
            " AND lower(wrapping_key) LIKE ? ESCAPE '\\'",
            (key_prefix.lower().replace("%", "\\%").replace("_", "\\_") + "%",),
        )
        return [_resource(r) for r in rows]

    async def resources_with_identity(self, object_id: str) -> list[SpeechResource]:
        rows = await self.db.fetch_all("SELECT * FROM resources WHERE identity_principal_id = ?", (object_id,))
        return [_resource(r) for r in rows]

    async def set_subscription_tenant(self, tx: aiosqlite.Connection, subscription_id: str, tenant_id: str) -> None:
        await tx.execute("UPDATE resources SET tenant_id = ? WHERE subscription_id = ?", (tenant_id, subscription_id))

    async def resources_in_subscription(self, subscription_id: str) -> list[SpeechResource]:
        rows = await self.db.fetch_all("SELECT * FROM resources WHERE subscription_id = ?", (subscription_id,))
        return [_resource(r) for r in rows]

    async def get_resource(self, resource_id: str) -> SpeechResource | None:
        row = await self.db.fetch_one("SELECT * FROM resources WHERE resource_key = ?", (resource_key(resource_id),))
        return _resource(row) if row else None

    async def list_resources(self, subscription_id: str, *, after: str | None, limit: int) -> list[SpeechResource]:
        rows = await self.db.fetch_all(
            "SELECT * FROM resources WHERE subscription_id = ? AND resource_key > ? ORDER BY resource_key LIMIT ?",
            (subscription_id, after or "", limit),
        )
        return [_resource(r) for r in rows]

    async def delete_resource(self, tx: aiosqlite.Connection, uid: str) -> None:
        await tx.execute("DELETE FROM resources WHERE uid = ?", (uid,))

    # --- approvals --------------------------------------------------------------------

    async def put_approval(self, tx: aiosqlite.Connection, a: CmkApproval) -> None:
        await tx.execute(
            "INSERT INTO cmk_approvals (subscription_id, state, request_time, requested_by, decision_time, note)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (subscription_id) DO UPDATE SET state = excluded.state,"
            " request_time = excluded.request_time, requested_by = excluded.requested_by,"
            " decision_time = excluded.decision_time, note = excluded.note",
            (a.subscription_id, a.state.value, _t(a.request_time), a.requested_by, _t(a.decision_time), a.note),
        )

    async def get_approval(self, subscription_id: str) -> CmkApproval | None:
        row = await self.db.fetch_one("SELECT * FROM cmk_approvals WHERE subscription_id = ?", (subscription_id,))
        if row is None:
            return None
        return CmkApproval(
            row["subscription_id"], ApprovalState(row["state"]), datetime.fromisoformat(row["request_time"]),
            row["requested_by"], _dt(row["decision_time"]), row["note"],
        )  # fmt: skip

    # --- applications -----------------------------------------------------------------

    async def insert_application(self, tx: aiosqlite.Connection, resource_uid: str, a: Application) -> None:
        await tx.execute(
            "INSERT INTO applications (resource_uid, application_id, display_name, version, sealed_configuration,"
            " create_time, update_time) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (resource_uid, a.application_id, a.display_name, a.version, a.sealed_configuration,
             _t(a.create_time), _t(a.update_time)),
        )  # fmt: skip

    async def update_application(
        self, tx: aiosqlite.Connection, resource_uid: str, a: Application, expected_version: int
    ) -> bool:
        """Write a new version only if the stored one is still `expected_version` (the etag check,
        done in the same statement so that of two concurrent updates exactly one wins)."""
        cursor = await tx.execute(
            "UPDATE applications SET display_name = ?, version = ?, sealed_configuration = ?, update_time = ?"
            " WHERE resource_uid = ? AND application_id = ? AND version = ?",
            (a.display_name, a.version, a.sealed_configuration, _t(a.update_time), resource_uid,
             a.application_id, expected_version),
        )  # fmt: skip
        return cursor.rowcount == 1

    async def delete_application(
        self, tx: aiosqlite.Connection, resource_uid: str, application_id: str, expected_version: int | None
    ) -> bool:
        sql = "DELETE FROM applications WHERE resource_uid = ? AND application_id = ?"
        params: list[object] = [resource_uid, application_id]
        if expected_version is not None:
            sql += " AND version = ?"
            params.append(expected_version)
        cursor = await tx.execute(sql, params)
        return cursor.rowcount == 1

    async def get_application(self, resource_uid: str, application_id: str) -> Application | None:
        row = await self.db.fetch_one(
            "SELECT a.*, r.resource_id FROM applications a JOIN resources r ON r.uid = a.resource_uid"
            " WHERE a.resource_uid = ? AND a.application_id = ?",
            (resource_uid, application_id),
        )
        return _application(row) if row else None

    async def list_applications(self, resource_uid: str, *, after: int, limit: int) -> list[tuple[int, Application]]:
        rows = await self.db.fetch_all(
            "SELECT a.*, r.resource_id FROM applications a JOIN resources r ON r.uid = a.resource_uid"
            " WHERE a.resource_uid = ? AND a.seq > ? ORDER BY a.seq LIMIT ?",
            (resource_uid, after, limit),
        )
        return [(int(r["seq"]), _application(r)) for r in rows]

    # --- LUIS keys --------------------------------------------------------------------

    async def put_luis_keys(self, tx: aiosqlite.Connection, resource_uid: str, keys: SealedLuisKeys) -> None:
        await tx.execute(
            "INSERT INTO luis_keys (resource_uid, version, sealed, update_time) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (resource_uid) DO UPDATE SET version = excluded.version, sealed = excluded.sealed,"
            " update_time = excluded.update_time",
            (resource_uid, keys.version, keys.sealed, _t(keys.update_time)),
        )

    async def get_luis_keys(self, resource_uid: str) -> SealedLuisKeys | None:
        row = await self.db.fetch_one(
            "SELECT l.*, r.resource_id FROM luis_keys l JOIN resources r ON r.uid = l.resource_uid"
            " WHERE l.resource_uid = ?",
            (resource_uid,),
        )
        if row is None:
            return None
        return SealedLuisKeys(row["resource_id"], int(row["version"]), bytes(row["sealed"]),
                              datetime.fromisoformat(row["update_time"]))  # fmt: skip


def _resource(r: Any) -> SpeechResource:
    return SpeechResource(
        resource_id=r["resource_id"],
        uid=r["uid"],
        subscription_id=r["subscription_id"],
        resource_group=r["resource_group"],
        account_name=r["account_name"],
        location=r["location"],
        tier=Tier(r["tier"]),
        create_time=datetime.fromisoformat(r["create_time"]),
        tenant_id=r["tenant_id"],
        key_source=KeySource(r["key_source"]),
        wrapping_key=r["wrapping_key"],
        wrapped_data_key=bytes(r["wrapped_data_key"]),
        identity_principal_id=r["identity_principal_id"],
        identity_tenant_id=r["identity_tenant_id"],
        key_uri=r["key_uri"],
        follow_latest=bool(r["follow_latest"]),
    )


def _application(r: Any) -> Application:
    return Application(
        resource_id=r["resource_id"],
        application_id=r["application_id"],
        display_name=r["display_name"],
        version=int(r["version"]),
        sealed_configuration=bytes(r["sealed_configuration"]),
        create_time=datetime.fromisoformat(r["create_time"]),
        update_time=datetime.fromisoformat(r["update_time"]),
    )
