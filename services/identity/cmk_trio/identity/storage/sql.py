"""The identity service's store, on SQLite or PostgreSQL: rows in, domain objects out.

Every change and the event that announces it are written in one unit of work, so the event
stream never tells of something that did not happen, nor misses something that did.
"""

from __future__ import annotations

import json
from datetime import datetime

from cmk_trio.identity.model import (
    ClientSecret,
    Event,
    EventType,
    Principal,
    PrincipalKind,
    ResourceGroup,
    Role,
    RoleAssignment,
    SignInFailures,
    SigningKey,
    Subscription,
    Tenant,
)
from cmk_trio.identity.storage.schema import SCHEMA
from cmk_trio.rpckit.storage import Row, SqlStore, SqlUnitOfWork, SqlValue, Transaction, gapless


def _t(when: datetime) -> str:
    return when.isoformat(timespec="microseconds")


def _dt(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _need_dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


def scope_key(scope: str) -> str:
    """Azure resource ids compare case-insensitively; this is the form compared and indexed."""
    return scope.rstrip("/").lower()


class SqlIdentityStore(SqlStore["SqlIdentityUnitOfWork"]):
    """The identity service's reads, and its unit of work, on either engine."""

    service = "identity"
    schema = SCHEMA

    def _begin(self, tx: Transaction) -> SqlIdentityUnitOfWork:
        return SqlIdentityUnitOfWork(tx)

    # --- tenants ----------------------------------------------------------------------

    async def get_tenant(self, tenant_id: str) -> Tenant | None:
        row = await self._db.fetch_one("SELECT * FROM tenants WHERE tenant_id = ?", (tenant_id,))
        return _tenant(row) if row else None

    async def list_tenants(self, *, after: str | None, limit: int, only: str | None = None) -> list[Tenant]:
        sql, params = "SELECT * FROM tenants WHERE tenant_id > ?", [after or ""]
        if only is not None:
            sql += " AND tenant_id = ?"
            params.append(only)
        rows = await self._db.fetch_all(sql + " ORDER BY tenant_id LIMIT ?", (*params, limit))
        return [_tenant(r) for r in rows]

    # --- subscriptions ----------------------------------------------------------------

    async def get_subscription(self, subscription_id: str) -> Subscription | None:
        row = await self._db.fetch_one("SELECT * FROM subscriptions WHERE subscription_id = ?", (subscription_id,))
        return _subscription(row) if row else None

    async def list_subscriptions(self, *, tenant_id: str | None, after: str | None, limit: int) -> list[Subscription]:
        sql, params = "SELECT * FROM subscriptions WHERE subscription_id > ?", [after or ""]
        if tenant_id is not None:
            sql += " AND tenant_id = ?"
            params.append(tenant_id)
        rows = await self._db.fetch_all(sql + " ORDER BY subscription_id LIMIT ?", (*params, limit))
        return [_subscription(r) for r in rows]

    # --- principals -------------------------------------------------------------------

    async def get_principal(self, object_id: str) -> Principal | None:
        row = await self._db.fetch_one("SELECT * FROM principals WHERE object_id = ?", (object_id,))
        return _principal(row) if row else None

    async def principal_by_client_id(self, tenant_id: str, client_id: str) -> Principal | None:
        row = await self._db.fetch_one(
            "SELECT * FROM principals WHERE client_id = ? AND tenant_id = ?", (client_id, tenant_id)
        )
        return _principal(row) if row else None

    async def managed_identity_for(self, resource_id: str) -> Principal | None:
        row = await self._db.fetch_one("SELECT * FROM principals WHERE resource_key = ?", (scope_key(resource_id),))
        return _principal(row) if row else None

    async def managed_identities_under(self, prefix: str) -> list[Principal]:
        """Managed identities of resources whose id starts with `prefix` (case-insensitive)."""
        rows = await self._db.fetch_all(
            "SELECT * FROM principals WHERE kind = ? AND substr(resource_key, 1, ?) = ?",
            (int(PrincipalKind.MANAGED_IDENTITY), len(prefix), prefix.lower()),
        )
        return [_principal(r) for r in rows]

    async def operator(self) -> Principal | None:
        row = await self._db.fetch_one("SELECT * FROM principals WHERE operator = 1")
        return _principal(row) if row else None

    async def list_principals(
        self, *, tenant_id: str, kind: PrincipalKind | None, after: str | None, limit: int
    ) -> list[Principal]:
        sql = "SELECT * FROM principals WHERE tenant_id = ? AND object_id > ?"
        params: list[SqlValue] = [tenant_id, after or ""]
        if kind is not None:
            sql += " AND kind = ?"
            params.append(int(kind))
        rows = await self._db.fetch_all(sql + " ORDER BY object_id LIMIT ?", (*params, limit))
        return [_principal(r) for r in rows]

    # --- client secrets ---------------------------------------------------------------

    async def secrets_of(self, object_id: str, *, after: str | None = None, limit: int = 1000) -> list[ClientSecret]:
        rows = await self._db.fetch_all(
            "SELECT * FROM client_secrets WHERE object_id = ? AND secret_id > ? ORDER BY secret_id LIMIT ?",
            (object_id, after or "", limit),
        )
        return [_secret(r) for r in rows]

    async def secret_of(self, object_id: str, secret_id: str) -> ClientSecret | None:
        row = await self._db.fetch_one(
            "SELECT * FROM client_secrets WHERE object_id = ? AND secret_id = ?", (object_id, secret_id)
        )
        return _secret(row) if row else None

    async def unnamed_secrets_of(self, object_id: str, *, limit: int) -> list[ClientSecret]:
        rows = await self._db.fetch_all(
            "SELECT * FROM client_secrets WHERE object_id = ? AND named = 0 ORDER BY secret_id LIMIT ?",
            (object_id, limit),
        )
        return [_secret(r) for r in rows]

    # --- role assignments -------------------------------------------------------------

    async def find_role_assignment(self, principal_id: str, role: Role, scope: str) -> RoleAssignment | None:
        row = await self._db.fetch_one(
            "SELECT * FROM role_assignments WHERE principal_id = ? AND role = ? AND scope_key = ?",
            (principal_id, int(role), scope_key(scope)),
        )
        return _role_assignment(row) if row else None

    async def get_role_assignment(self, role_assignment_id: str) -> RoleAssignment | None:
        row = await self._db.fetch_one(
            "SELECT * FROM role_assignments WHERE role_assignment_id = ?", (role_assignment_id,)
        )
        return _role_assignment(row) if row else None

    async def role_assignments_of(self, principal_id: str) -> list[RoleAssignment]:
        rows = await self._db.fetch_all("SELECT * FROM role_assignments WHERE principal_id = ?", (principal_id,))
        return [_role_assignment(r) for r in rows]

    async def list_role_assignments(
        self, *, tenant_id: str | None, principal_id: str | None, after: str | None, limit: int
    ) -> list[RoleAssignment]:
        sql, params = "SELECT * FROM role_assignments WHERE role_assignment_id > ?", [after or ""]
        if tenant_id is not None:
            sql += " AND tenant_id = ?"
            params.append(tenant_id)
        if principal_id is not None:
            sql += " AND principal_id = ?"
            params.append(principal_id)
        rows = await self._db.fetch_all(sql + " ORDER BY role_assignment_id LIMIT ?", (*params, limit))
        return [_role_assignment(r) for r in rows]

    async def role_assignments_in(self, subscription_id: str) -> list[RoleAssignment]:
        rows = await self._db.fetch_all(
            "SELECT * FROM role_assignments WHERE subscription_id = ? ORDER BY role_assignment_id", (subscription_id,)
        )
        return [_role_assignment(r) for r in rows]

    # --- resource groups --------------------------------------------------------------

    async def get_resource_group(self, subscription_id: str, name: str) -> ResourceGroup | None:
        row = await self._db.fetch_one(
            "SELECT * FROM resource_groups WHERE subscription_id = ? AND name_key = ?", (subscription_id, name.lower())
        )
        return _resource_group(row) if row else None

    async def list_resource_groups(self, subscription_id: str, *, after: str | None, limit: int) -> list[ResourceGroup]:
        rows = await self._db.fetch_all(
            "SELECT * FROM resource_groups WHERE subscription_id = ? AND name_key > ? ORDER BY name_key LIMIT ?",
            (subscription_id, (after or "").lower(), limit),
        )
        return [_resource_group(r) for r in rows]

    # --- signing keys -----------------------------------------------------------------

    async def signing_keys(self, *, now: datetime) -> list[SigningKey]:
        """The active key first, then retiring keys still served at `now`."""
        rows = await self._db.fetch_all(
            "SELECT * FROM signing_keys WHERE active = 1 OR retire_time > ? ORDER BY active DESC, create_time DESC",
            (_t(now),),
        )
        return [_signing_key(r) for r in rows]

    async def count_signing_keys(self) -> int:
        row = await self._db.fetch_one("SELECT COUNT(*) FROM signing_keys")
        return int(row[0]) if row else 0

    # --- events -----------------------------------------------------------------------

    async def events_after(self, sequence: int, limit: int = 500) -> list[Event]:
        rows = await self._db.fetch_all(
            "SELECT * FROM events WHERE sequence > ? ORDER BY sequence LIMIT ?", (sequence, limit)
        )
        return gapless([_event(r) for r in rows], sequence, lambda e: e.sequence)

    async def last_sequence(self) -> int:
        row = await self._db.fetch_one("SELECT COALESCE(MAX(sequence), 0) FROM events")
        return int(row[0]) if row else 0


class SqlIdentityUnitOfWork(SqlUnitOfWork):
    """The identity service's writes inside one transaction."""

    async def insert_tenant(self, tenant: Tenant) -> None:
        await self._tx.execute(
            "INSERT INTO tenants (tenant_id, display_name, platform, create_time) VALUES (?, ?, ?, ?)",
            (tenant.tenant_id, tenant.display_name, int(tenant.platform), _t(tenant.create_time)),
        )

    async def update_tenant_name(self, tenant_id: str, display_name: str) -> None:
        await self._tx.execute("UPDATE tenants SET display_name = ? WHERE tenant_id = ?", (display_name, tenant_id))

    async def insert_subscription(self, sub: Subscription) -> None:
        await self._tx.execute(
            "INSERT INTO subscriptions (subscription_id, tenant_id, display_name, create_time, transfer_time)"
            " VALUES (?, ?, ?, ?, NULL)",
            (sub.subscription_id, sub.tenant_id, sub.display_name, _t(sub.create_time)),
        )

    async def transfer_subscription(self, subscription_id: str, tenant_id: str, when: datetime) -> int:
        """Move the subscription and drop its role assignments; returns how many were dropped."""
        await self._tx.execute(
            "UPDATE subscriptions SET tenant_id = ?, transfer_time = ? WHERE subscription_id = ?",
            (tenant_id, _t(when), subscription_id),
        )
        return await self._tx.execute("DELETE FROM role_assignments WHERE subscription_id = ?", (subscription_id,))

    async def insert_principal(self, p: Principal) -> None:
        await self._tx.execute(
            "INSERT INTO principals (object_id, tenant_id, kind, display_name, client_id, enabled,"
            " resource_id, resource_key, owner_object_id, platform_service, tenant_admin, operator,"
            " create_time, update_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                p.object_id,
                p.tenant_id,
                int(p.kind),
                p.display_name,
                p.client_id,
                int(p.enabled),
                p.resource_id,
                scope_key(p.resource_id) if p.resource_id else None,
                p.owner_object_id,
                p.platform_service,
                int(p.tenant_admin),
                int(p.operator),
                _t(p.create_time),
                _t(p.update_time),
            ),
        )

    async def update_principal(self, object_id: str, *, display_name: str, enabled: bool, when: datetime) -> None:
        await self._tx.execute(
            "UPDATE principals SET display_name = ?, enabled = ?, update_time = ? WHERE object_id = ?",
            (display_name, int(enabled), _t(when), object_id),
        )

    async def delete_principal(self, object_id: str) -> None:
        await self._tx.execute("DELETE FROM principals WHERE object_id = ?", (object_id,))

    async def insert_secret(self, s: ClientSecret) -> None:
        await self._tx.execute(
            "INSERT INTO client_secrets (secret_id, object_id, display_name, hash, create_time, expire_time, named)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (s.secret_id, s.object_id, s.display_name, s.hash, _t(s.create_time), _t(s.expire_time), int(s.named)),
        )

    async def count_secrets(self, object_id: str) -> int:
        row = await self._tx.fetch_one("SELECT COUNT(*) AS n FROM client_secrets WHERE object_id = ?", (object_id,))
        return int(row["n"]) if row else 0

    async def delete_secret(self, object_id: str, secret_id: str) -> bool:
        deleted = await self._tx.execute(
            "DELETE FROM client_secrets WHERE object_id = ? AND secret_id = ?", (object_id, secret_id)
        )
        return deleted > 0

    async def insert_role_assignment(self, ra: RoleAssignment, subscription_id: str) -> None:
        await self._tx.execute(
            "INSERT INTO role_assignments (role_assignment_id, principal_id, role, scope, scope_key,"
            " subscription_id, tenant_id, create_time, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                ra.role_assignment_id,
                ra.principal_id,
                int(ra.role),
                ra.scope,
                scope_key(ra.scope),
                subscription_id,
                ra.tenant_id,
                _t(ra.create_time),
                ra.created_by,
            ),
        )

    async def delete_role_assignment(self, role_assignment_id: str) -> None:
        await self._tx.execute("DELETE FROM role_assignments WHERE role_assignment_id = ?", (role_assignment_id,))

    async def insert_resource_group(self, group: ResourceGroup) -> None:
        await self._tx.execute(
            "INSERT INTO resource_groups (subscription_id, name_key, name, location, tags, create_time, update_time)"
            " VALUES (?, ?, ?, ?, ?, ?, NULL)",
            (
                group.subscription_id,
                group.name.lower(),
                group.name,
                group.location,
                json.dumps(group.tags, sort_keys=True),
                _t(group.create_time),
            ),
        )

    async def update_resource_group_tags(
        self, subscription_id: str, name: str, tags: dict[str, str], when: datetime
    ) -> None:
        await self._tx.execute(
            "UPDATE resource_groups SET tags = ?, update_time = ? WHERE subscription_id = ? AND name_key = ?",
            (json.dumps(tags, sort_keys=True), _t(when), subscription_id, name.lower()),
        )

    async def delete_resource_group(self, subscription_id: str, name: str) -> bool:
        deleted = await self._tx.execute(
            "DELETE FROM resource_groups WHERE subscription_id = ? AND name_key = ?", (subscription_id, name.lower())
        )
        return deleted > 0

    async def insert_signing_key(self, key: SigningKey) -> None:
        await self._tx.execute(
            "INSERT INTO signing_keys (kid, public_jwk, sealed_private_key, active, create_time, retire_time)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                key.kid,
                key.public_jwk,
                key.sealed_private_key,
                int(key.active),
                _t(key.create_time),
                _t(key.retire_time) if key.retire_time else None,
            ),
        )

    async def retire_active_keys(self, retire_time: datetime) -> None:
        await self._tx.execute(
            "UPDATE signing_keys SET active = 0, retire_time = ? WHERE active = 1", (_t(retire_time),)
        )

    async def delete_retired_keys(self, now: datetime) -> None:
        await self._tx.execute("DELETE FROM signing_keys WHERE active = 0 AND retire_time <= ?", (_t(now),))

    async def delete_signing_key(self, kid: str) -> bool:
        return await self._tx.execute("DELETE FROM signing_keys WHERE kid = ?", (kid,)) == 1

    async def sign_in_failures(self, client: tuple[str, str]) -> SignInFailures | None:
        row = await self._tx.fetch_one("SELECT * FROM sign_in_failures WHERE tenant_id = ? AND client_id = ?", client)
        if row is None:
            return None
        return SignInFailures(_need_dt(row["first_time"]), _need_dt(row["last_time"]), int(row["count"]))

    async def put_sign_in_failures(self, client: tuple[str, str], failures: SignInFailures | None) -> None:
        # Nothing caches these: their writes are not announced to the other replicas' caches.
        if failures is None:
            await self._tx.execute(
                "DELETE FROM sign_in_failures WHERE tenant_id = ? AND client_id = ?", client, announce=None
            )
            return
        await self._tx.execute(
            "INSERT INTO sign_in_failures (tenant_id, client_id, first_time, last_time, count) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (tenant_id, client_id) DO UPDATE SET first_time = excluded.first_time,"
            " last_time = excluded.last_time, count = excluded.count",
            (*client, _t(failures.first), _t(failures.last), failures.count),
            announce=None,
        )

    async def delete_sign_in_failures_before(self, when: datetime) -> None:
        await self._tx.execute("DELETE FROM sign_in_failures WHERE first_time < ?", (_t(when),), announce=None)

    async def append_event(self, event_type: EventType, when: datetime, **fields: str) -> None:
        """Append an event; its sequence is the next number, without gaps (write transactions
        run one at a time, so MAX()+1 is safe, and numbers commit in order)."""
        columns = ["type", "time", *fields]
        await self._tx.execute(
            f"INSERT INTO events (sequence, {', '.join(columns)})"  # noqa: S608 (column names are ours)
            f" VALUES ((SELECT COALESCE(MAX(sequence), 0) + 1 FROM events), {', '.join('?' * len(columns))})",
            (int(event_type), _t(when), *fields.values()),
        )


def _tenant(r: Row) -> Tenant:
    return Tenant(r["tenant_id"], r["display_name"], bool(r["platform"]), _need_dt(r["create_time"]))


def _subscription(r: Row) -> Subscription:
    return Subscription(
        r["subscription_id"], r["tenant_id"], r["display_name"], _need_dt(r["create_time"]), _dt(r["transfer_time"])
    )


def _resource_group(r: Row) -> ResourceGroup:
    return ResourceGroup(
        r["subscription_id"],
        r["name"],
        r["location"],
        json.loads(r["tags"]),
        _need_dt(r["create_time"]),
        _dt(r["update_time"]),
    )


def _principal(r: Row) -> Principal:
    return Principal(
        object_id=r["object_id"],
        tenant_id=r["tenant_id"],
        kind=PrincipalKind(r["kind"]),
        display_name=r["display_name"],
        client_id=r["client_id"],
        enabled=bool(r["enabled"]),
        resource_id=r["resource_id"],
        owner_object_id=r["owner_object_id"],
        platform_service=r["platform_service"],
        tenant_admin=bool(r["tenant_admin"]),
        operator=bool(r["operator"]),
        create_time=_need_dt(r["create_time"]),
        update_time=_need_dt(r["update_time"]),
    )


def _secret(r: Row) -> ClientSecret:
    return ClientSecret(
        r["secret_id"],
        r["object_id"],
        r["display_name"],
        _need_dt(r["create_time"]),
        _need_dt(r["expire_time"]),
        r["hash"],
        bool(r["named"]),
    )


def _role_assignment(r: Row) -> RoleAssignment:
    return RoleAssignment(
        r["role_assignment_id"],
        r["principal_id"],
        Role(r["role"]),
        r["scope"],
        r["tenant_id"],
        _need_dt(r["create_time"]),
        r["created_by"],
    )


def _signing_key(r: Row) -> SigningKey:
    return SigningKey(
        r["kid"],
        r["public_jwk"],
        bool(r["active"]),
        _need_dt(r["create_time"]),
        _dt(r["retire_time"]),
        bytes(r["sealed_private_key"]),
    )


def _event(r: Row) -> Event:
    return Event(
        sequence=r["sequence"],
        type=EventType(r["type"]),
        time=_need_dt(r["time"]),
        tenant_id=r["tenant_id"],
        principal_id=r["principal_id"],
        subscription_id=r["subscription_id"],
        new_tenant_id=r["new_tenant_id"],
        kid=r["kid"],
        scope=r["scope"],
    )
