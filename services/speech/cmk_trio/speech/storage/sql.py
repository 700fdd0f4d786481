"""The speech service's store, on SQLite or PostgreSQL. Secrets are stored only sealed; the
data key only wrapped."""

from __future__ import annotations

from datetime import datetime

from cmk_trio.rpckit.storage import Row, SqlStore, SqlUnitOfWork, SqlValue, Transaction
from cmk_trio.speech.model import (
    Application,
    ApprovalState,
    CmkApproval,
    KeySource,
    PendingStep,
    SealedLuisKeys,
    SpeechResource,
    StepKind,
    Tier,
    resource_key,
)
from cmk_trio.speech.storage.schema import SCHEMA


def _t(when: datetime | None) -> str | None:
    return when.isoformat(timespec="microseconds") if when else None


def _dt(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


class SqlSpeechStore(SqlStore["SqlSpeechUnitOfWork"]):
    """The speech service's reads, and its unit of work, on either engine."""

    service = "speech"
    schema = SCHEMA

    def _begin(self, tx: Transaction) -> SqlSpeechUnitOfWork:
        return SqlSpeechUnitOfWork(tx)

    # --- resources --------------------------------------------------------------------

    async def resources_using(self, *, key_prefix: str) -> list[SpeechResource]:
        """Resources whose data key is wrapped by a key identifier starting with `key_prefix`
        (a vault URI, or a key URI without version)."""
        rows = await self._db.fetch_all(
            "SELECT * FROM resources WHERE key_source = 'Microsoft.KeyVault'"
            " AND lower(wrapping_key) LIKE ? ESCAPE '\\'",
            (key_prefix.lower().replace("%", "\\%").replace("_", "\\_") + "%",),
        )
        return [_resource(r) for r in rows]

    async def resources_with_identity(self, object_id: str) -> list[SpeechResource]:
        rows = await self._db.fetch_all("SELECT * FROM resources WHERE identity_principal_id = ?", (object_id,))
        return [_resource(r) for r in rows]

    async def resources_in_subscription(self, subscription_id: str) -> list[SpeechResource]:
        rows = await self._db.fetch_all("SELECT * FROM resources WHERE subscription_id = ?", (subscription_id,))
        return [_resource(r) for r in rows]

    async def get_resource(self, resource_id: str) -> SpeechResource | None:
        row = await self._db.fetch_one("SELECT * FROM resources WHERE resource_key = ?", (resource_key(resource_id),))
        return _resource(row) if row else None

    async def list_resources(self, subscription_id: str, *, after: str | None, limit: int) -> list[SpeechResource]:
        rows = await self._db.fetch_all(
            "SELECT * FROM resources WHERE subscription_id = ? AND resource_key > ? ORDER BY resource_key LIMIT ?",
            (subscription_id, after or "", limit),
        )
        return [_resource(r) for r in rows]

    # --- approvals --------------------------------------------------------------------

    async def get_approval(self, subscription_id: str) -> CmkApproval | None:
        row = await self._db.fetch_one("SELECT * FROM cmk_approvals WHERE subscription_id = ?", (subscription_id,))
        if row is None:
            return None
        return CmkApproval(
            row["subscription_id"], ApprovalState(row["state"]), datetime.fromisoformat(row["request_time"]),
            row["requested_by"], _dt(row["decision_time"]), row["note"],
        )  # fmt: skip

    # --- applications -----------------------------------------------------------------

    async def get_application(self, resource_uid: str, application_id: str) -> Application | None:
        row = await self._db.fetch_one(
            "SELECT a.*, r.resource_id FROM applications a JOIN resources r ON r.uid = a.resource_uid"
            " WHERE a.resource_uid = ? AND a.application_id = ?",
            (resource_uid, application_id),
        )
        return _application(row) if row else None

    async def list_applications(self, resource_uid: str, *, after: int, limit: int) -> list[tuple[int, Application]]:
        rows = await self._db.fetch_all(
            "SELECT a.*, r.resource_id FROM applications a JOIN resources r ON r.uid = a.resource_uid"
            " WHERE a.resource_uid = ? AND a.seq > ? ORDER BY a.seq LIMIT ?",
            (resource_uid, after, limit),
        )
        return [(int(r["seq"]), _application(r)) for r in rows]

    # --- LUIS keys --------------------------------------------------------------------

    async def get_luis_keys(self, resource_uid: str) -> SealedLuisKeys | None:
        row = await self._db.fetch_one(
            "SELECT l.*, r.resource_id FROM luis_keys l JOIN resources r ON r.uid = l.resource_uid"
            " WHERE l.resource_uid = ?",
            (resource_uid,),
        )
        if row is None:
            return None
        return SealedLuisKeys(row["resource_id"], int(row["version"]), bytes(row["sealed"]),
                              datetime.fromisoformat(row["update_time"]))  # fmt: skip

    async def resource_count(self) -> int:
        row = await self._db.fetch_one("SELECT COUNT(*) FROM resources")
        return int(row[0]) if row else 0

    async def microsoft_managed_not_wrapped_by(self, ring_version: str) -> list[str]:
        """Ids of the Microsoft-managed resources whose data key another ring version wraps."""
        rows = await self._db.fetch_all(
            "SELECT resource_id FROM resources WHERE key_source = ? AND wrapping_key != ?",
            (KeySource.MICROSOFT.value, ring_version),
        )
        return [r["resource_id"] for r in rows]

    async def resource_by_uid(self, uid: str) -> SpeechResource | None:
        row = await self._db.fetch_one("SELECT * FROM resources WHERE uid = ?", (uid,))
        return _resource(row) if row else None

    async def pending_steps(self) -> list[PendingStep]:
        rows = await self._db.fetch_all("SELECT * FROM pending_steps ORDER BY step_id")
        return [_step(r) for r in rows]

    async def microsoft_managed_per_ring_version(self) -> list[str]:
        rows = await self._db.fetch_all(
            "SELECT MIN(resource_id) AS resource_id FROM resources WHERE key_source = ? GROUP BY wrapping_key",
            (KeySource.MICROSOFT.value,),
        )
        return [r["resource_id"] for r in rows]


class SqlSpeechUnitOfWork(SqlUnitOfWork):
    """The speech service's writes inside one transaction."""

    async def insert_resource(self, r: SpeechResource) -> None:
        await self._tx.execute(
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

    async def update_resource(self, r: SpeechResource) -> bool:
        changed = await self._tx.execute(
            "UPDATE resources SET resource_key = ?, resource_id = ?, subscription_id = ?, resource_group = ?,"
            " tenant_id = ?, key_source = ?, wrapping_key = ?, wrapped_data_key = ?, identity_principal_id = ?,"
            " identity_tenant_id = ?, key_uri = ?, follow_latest = ?, generation = generation + 1"
            " WHERE uid = ? AND generation = ?",
            (resource_key(r.resource_id), r.resource_id, r.subscription_id, r.resource_group, r.tenant_id,
             r.key_source.value, r.wrapping_key, r.wrapped_data_key, r.identity_principal_id, r.identity_tenant_id,
             r.key_uri, int(r.follow_latest), r.uid, r.generation),
        )  # fmt: skip
        return changed == 1

    async def set_subscription_tenant(self, subscription_id: str, tenant_id: str) -> None:
        await self._tx.execute(
            "UPDATE resources SET tenant_id = ?, generation = generation + 1 WHERE subscription_id = ?",
            (tenant_id, subscription_id),
        )

    async def delete_resource(self, uid: str) -> None:
        await self._tx.execute("DELETE FROM resources WHERE uid = ?", (uid,))

    async def insert_step(self, step: PendingStep) -> int:
        await self._tx.execute(
            "INSERT INTO pending_steps (kind, resource_uid, resource_id, tenant_id, new_identity, vault_name,"
            " start_time, owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (step.kind.value, step.resource_uid, step.resource_id, step.tenant_id, int(step.new_identity),
             step.vault_name, _t(step.start_time), step.owner),
        )  # fmt: skip
        # Write transactions run one at a time, so the newest step is this one.
        row = await self._tx.fetch_one("SELECT MAX(step_id) FROM pending_steps")
        if row is None or row[0] is None:
            raise RuntimeError("the database gave no id for an inserted step")
        return int(row[0])

    async def delete_step(self, step_id: int, owner: str) -> bool:
        return (
            await self._tx.execute("DELETE FROM pending_steps WHERE step_id = ? AND owner = ?", (step_id, owner)) == 1
        )

    async def claim_step(self, step_id: int, owner: str, claimant: str) -> bool:
        changed = await self._tx.execute(
            "UPDATE pending_steps SET owner = ? WHERE step_id = ? AND owner = ?", (claimant, step_id, owner)
        )
        return changed == 1

    async def put_approval(self, a: CmkApproval) -> None:
        await self._tx.execute(
            "INSERT INTO cmk_approvals (subscription_id, state, request_time, requested_by, decision_time, note)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (subscription_id) DO UPDATE SET state = excluded.state,"
            " request_time = excluded.request_time, requested_by = excluded.requested_by,"
            " decision_time = excluded.decision_time, note = excluded.note",
            (a.subscription_id, a.state.value, _t(a.request_time), a.requested_by, _t(a.decision_time), a.note),
        )

    async def insert_application(self, resource_uid: str, a: Application) -> None:
        await self._tx.execute(
            "INSERT INTO applications (resource_uid, application_id, display_name, version, sealed_configuration,"
            " create_time, update_time) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (resource_uid, a.application_id, a.display_name, a.version, a.sealed_configuration,
             _t(a.create_time), _t(a.update_time)),
        )  # fmt: skip

    async def update_application(self, resource_uid: str, a: Application, expected_version: int) -> bool:
        """Write a new version only if the stored one is still `expected_version` (the etag check,
        done in the same statement so that of two concurrent updates exactly one wins)."""
        changed = await self._tx.execute(
            "UPDATE applications SET display_name = ?, version = ?, sealed_configuration = ?, update_time = ?"
            " WHERE resource_uid = ? AND application_id = ? AND version = ?",
            (a.display_name, a.version, a.sealed_configuration, _t(a.update_time), resource_uid,
             a.application_id, expected_version),
        )  # fmt: skip
        return changed == 1

    async def delete_application(self, resource_uid: str, application_id: str, expected_version: int | None) -> bool:
        sql = "DELETE FROM applications WHERE resource_uid = ? AND application_id = ?"
        params: list[SqlValue] = [resource_uid, application_id]
        if expected_version is not None:
            sql += " AND version = ?"
            params.append(expected_version)
        return await self._tx.execute(sql, params) == 1

    async def put_luis_keys(self, resource_uid: str, keys: SealedLuisKeys) -> None:
        await self._tx.execute(
            "INSERT INTO luis_keys (resource_uid, version, sealed, update_time) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (resource_uid) DO UPDATE SET version = excluded.version, sealed = excluded.sealed,"
            " update_time = excluded.update_time",
            (resource_uid, keys.version, keys.sealed, _t(keys.update_time)),
        )


def _resource(r: Row) -> SpeechResource:
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
        generation=int(r["generation"]),
    )


def _step(r: Row) -> PendingStep:
    return PendingStep(
        step_id=int(r["step_id"]),
        kind=StepKind(r["kind"]),
        resource_uid=r["resource_uid"],
        resource_id=r["resource_id"],
        tenant_id=r["tenant_id"],
        new_identity=bool(r["new_identity"]),
        vault_name=r["vault_name"],
        start_time=datetime.fromisoformat(r["start_time"]),
        owner=r["owner"],
    )


def _application(r: Row) -> Application:
    return Application(
        resource_id=r["resource_id"],
        application_id=r["application_id"],
        display_name=r["display_name"],
        version=int(r["version"]),
        sealed_configuration=bytes(r["sealed_configuration"]),
        create_time=datetime.fromisoformat(r["create_time"]),
        update_time=datetime.fromisoformat(r["update_time"]),
    )
