"""The identity store, through its Protocol only: what any engine must do. Each test runs
once per engine: in a SQLite file and on PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cmk_trio.identity.model import (
    ClientSecret,
    EventType,
    Principal,
    PrincipalKind,
    Role,
    RoleAssignment,
    SignInFailures,
    SigningKey,
    Subscription,
    Tenant,
)
from cmk_trio.identity.storage import IdentityStore, open_store

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


@pytest.fixture
async def store(store_location: str | Path) -> AsyncIterator[IdentityStore]:
    opened = await open_store(store_location)
    try:
        yield opened
    finally:
        await opened.close()


def _id() -> str:
    return str(uuid.uuid4())


def principal(tenant_id: str, kind: PrincipalKind = PrincipalKind.USER, resource_id: str = "") -> Principal:
    return Principal(
        object_id=_id(), tenant_id=tenant_id, kind=kind, display_name="p", client_id=_id(), enabled=True,
        resource_id=resource_id, owner_object_id="", platform_service="", tenant_admin=False, operator=False,
        create_time=NOW, update_time=NOW,
    )  # fmt: skip


async def test_what_is_written_is_read_back_whole(store: IdentityStore):
    tenant = Tenant(_id(), "Contoso", False, NOW)
    sub = Subscription(_id(), tenant.tenant_id, "Production", NOW, None)
    user = principal(tenant.tenant_id)
    secret = ClientSecret(_id(), user.object_id, "ci", NOW, NOW + timedelta(days=30), "scrypt$hash")
    async with store.unit_of_work() as uow:
        await uow.insert_tenant(tenant)
        await uow.insert_subscription(sub)
        await uow.insert_principal(user)
        await uow.insert_secret(secret)
    assert await store.get_tenant(tenant.tenant_id) == tenant
    assert await store.get_subscription(sub.subscription_id) == sub
    assert await store.get_principal(user.object_id) == user
    assert await store.principal_by_client_id(tenant.tenant_id, user.client_id) == user
    assert await store.secrets_of(user.object_id) == [secret]


async def test_a_unit_of_work_commits_everything_or_nothing(store: IdentityStore):
    tenant = Tenant(_id(), "Fabrikam", False, NOW)
    before = store.generation

    async def fail_midway() -> None:
        async with store.unit_of_work() as uow:
            await uow.insert_tenant(tenant)
            await uow.append_event(EventType.PRINCIPAL_CREATED, NOW, tenant_id=tenant.tenant_id)
            raise RuntimeError("midway")

    with pytest.raises(RuntimeError, match="midway"):
        await fail_midway()
    assert await store.get_tenant(tenant.tenant_id) is None
    assert await store.last_sequence() == 0
    assert store.generation == before
    async with store.unit_of_work() as uow:
        await uow.insert_tenant(tenant)
    # At once, on commit (on PostgreSQL, its own notification may bump it once more).
    assert store.generation > before
    assert await store.get_tenant(tenant.tenant_id) == tenant


async def test_events_are_numbered_without_gaps_and_read_after_a_cursor(store: IdentityStore):
    tenant_id = _id()
    for kid in ("k1", "k2", "k3"):
        async with store.unit_of_work() as uow:
            await uow.append_event(EventType.SIGNING_KEY_ROTATED, NOW, tenant_id=tenant_id, kid=kid)
    events = await store.events_after(0)
    assert [(e.sequence, e.kid) for e in events] == [(1, "k1"), (2, "k2"), (3, "k3")]
    assert events[0].type is EventType.SIGNING_KEY_ROTATED and events[0].time == NOW
    assert [e.sequence for e in await store.events_after(2)] == [3]
    assert await store.last_sequence() == 3


async def test_managed_identities_are_found_by_resource_id_without_case(store: IdentityStore):
    tenant_id = _id()
    rid = f"/subscriptions/{_id()}/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/Speech1"
    identity = principal(tenant_id, PrincipalKind.MANAGED_IDENTITY, rid)
    async with store.unit_of_work() as uow:
        await uow.insert_tenant(Tenant(tenant_id, "t", False, NOW))
        await uow.insert_principal(identity)
        await uow.insert_principal(principal(tenant_id))
    assert await store.managed_identity_for(rid.upper()) == identity
    assert await store.managed_identities_under(rid.split("/resourceGroups")[0].upper()) == [identity]
    assert await store.managed_identities_under("/subscriptions/other") == []


async def test_a_transfer_moves_the_subscription_and_drops_its_role_assignments(store: IdentityStore):
    old, new = _id(), _id()
    sub = Subscription(_id(), old, "s", NOW, None)
    user = principal(old)
    scope = f"/subscriptions/{sub.subscription_id}"
    assignments = [
        RoleAssignment(_id(), user.object_id, role, scope, old, NOW, "creator") for role in (Role.READER, Role.OWNER)
    ]
    async with store.unit_of_work() as uow:
        for tenant_id in (old, new):
            await uow.insert_tenant(Tenant(tenant_id, "t", False, NOW))
        await uow.insert_subscription(sub)
        await uow.insert_principal(user)
        for assignment in assignments:
            await uow.insert_role_assignment(assignment, sub.subscription_id)
    assert await store.find_role_assignment(user.object_id, Role.OWNER, scope.upper()) == assignments[1]
    assert sorted(await store.role_assignments_of(user.object_id), key=lambda a: a.role) == assignments
    later = NOW + timedelta(hours=1)
    async with store.unit_of_work() as uow:
        assert await uow.transfer_subscription(sub.subscription_id, new, later) == 2
    moved = await store.get_subscription(sub.subscription_id)
    assert moved is not None and (moved.tenant_id, moved.transfer_time) == (new, later)
    assert await store.role_assignments_of(user.object_id) == []
    assert await store.list_subscriptions(tenant_id=old, after=None, limit=10) == []


async def test_removing_what_is_not_there_says_so(store: IdentityStore):
    async with store.unit_of_work() as uow:
        assert await uow.delete_secret(_id(), _id()) is False


async def test_signing_keys_retire_and_then_go(store: IdentityStore):
    def key(kid: str, at: datetime) -> SigningKey:
        return SigningKey(kid, "{}", True, at, None, b"sealed")

    async with store.unit_of_work() as uow:
        await uow.insert_signing_key(key("old", NOW))
    async with store.unit_of_work() as uow:
        await uow.retire_active_keys(NOW + timedelta(hours=1))
        await uow.insert_signing_key(key("new", NOW + timedelta(minutes=1)))
    served = await store.signing_keys(now=NOW + timedelta(minutes=30))
    assert [(k.kid, k.active) for k in served] == [("new", True), ("old", False)]
    assert [k.kid for k in await store.signing_keys(now=NOW + timedelta(hours=2))] == ["new"]
    async with store.unit_of_work() as uow:
        await uow.delete_retired_keys(NOW + timedelta(hours=2))
    assert await store.count_signing_keys() == 1


async def test_listings_page_by_id(store: IdentityStore):
    tenants = sorted((Tenant(_id(), f"t{i}", False, NOW) for i in range(5)), key=lambda t: t.tenant_id)
    async with store.unit_of_work() as uow:
        for tenant in tenants:
            await uow.insert_tenant(tenant)
    first = await store.list_tenants(after=None, limit=2)
    rest = await store.list_tenants(after=first[-1].tenant_id, limit=10)
    assert first + rest == tenants
    assert await store.list_tenants(after=None, limit=10, only=tenants[3].tenant_id) == [tenants[3]]


async def test_failed_sign_ins_are_kept_replaced_and_swept(store: IdentityStore):
    client, other = ("t1", "c1"), ("t1", "c2")
    async with store.unit_of_work() as uow:
        assert await uow.sign_in_failures(client) is None
        await uow.put_sign_in_failures(client, SignInFailures(NOW, NOW, 1))
        await uow.put_sign_in_failures(client, SignInFailures(NOW, NOW + timedelta(seconds=3), 2))
        await uow.put_sign_in_failures(other, SignInFailures(NOW + timedelta(minutes=6), NOW + timedelta(minutes=6)))
    async with store.unit_of_work() as uow:
        assert await uow.sign_in_failures(client) == SignInFailures(NOW, NOW + timedelta(seconds=3), 2)
        await uow.delete_sign_in_failures_before(NOW + timedelta(minutes=5))
        assert await uow.sign_in_failures(client) is None
        assert await uow.sign_in_failures(other) is not None
        await uow.put_sign_in_failures(other, None)
        assert await uow.sign_in_failures(other) is None


async def test_secrets_stored_before_they_named_their_id_are_marked_unnamed(store_location: str | Path):
    """Migration 3 adds `named`; the secrets already stored name no id in their value, so
    they become unnamed (a sign-in checks them only where a principal holds one such)."""
    from cmk_trio.identity.storage.schema import SCHEMA
    from cmk_trio.rpckit.storage import open_database

    old = await open_database(
        store_location,
        service="identity",
        sqlite=SCHEMA.migrations("sqlite")[:2],
        postgres=SCHEMA.migrations("postgres")[:2],
    )
    tenant = Tenant(_id(), "Contoso", False, NOW)
    user = principal(tenant.tenant_id)
    secret = ClientSecret(_id(), user.object_id, "old", NOW, NOW + timedelta(days=30), "scrypt$old", named=False)
    when = NOW.isoformat(timespec="microseconds")
    try:
        async with old.transaction() as tx:
            await tx.execute(
                "INSERT INTO tenants (tenant_id, display_name, platform, create_time) VALUES (?, ?, 0, ?)",
                (tenant.tenant_id, tenant.display_name, when),
            )
            await tx.execute(
                "INSERT INTO principals (object_id, tenant_id, kind, display_name, client_id, enabled, create_time,"
                " update_time) VALUES (?, ?, ?, 'p', ?, 1, ?, ?)",
                (user.object_id, tenant.tenant_id, int(user.kind), user.client_id, when, when),
            )
            await tx.execute(
                "INSERT INTO client_secrets (secret_id, object_id, display_name, hash, create_time, expire_time)"
                " VALUES (?, ?, 'old', 'scrypt$old', ?, ?)",
                (secret.secret_id, user.object_id, when, when),
            )
    finally:
        await old.close()
    store = await open_store(store_location)
    try:
        new = ClientSecret(_id(), user.object_id, "new", NOW, NOW + timedelta(days=30), "scrypt$new")
        async with store.unit_of_work() as uow:
            await uow.insert_secret(new)
            assert await uow.count_secrets(user.object_id) == 2
        assert await store.unnamed_secrets_of(user.object_id, limit=2) == [
            await store.secret_of(user.object_id, secret.secret_id)
        ]
        assert (await store.secret_of(user.object_id, secret.secret_id)).named is False  # type: ignore[union-attr]
        assert await store.secret_of(user.object_id, new.secret_id) == new
        assert await store.secret_of(_id(), new.secret_id) is None  # another principal's id is not its own
    finally:
        await store.close()
