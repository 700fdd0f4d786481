"""The key vault store, through its Protocol only: what any engine must do. Each test runs
once per engine: in a SQLite file and on PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cmk_trio.keyvault.model import (
    AccessPolicy,
    AuditEntry,
    AuditRecord,
    Checkpoint,
    EventType,
    Key,
    KeyOperation,
    KeyPermission,
    KeyVersion,
    Vault,
)
from cmk_trio.keyvault.storage import KeyVaultStore, open_store

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


@pytest.fixture
async def store(store_location: str | Path) -> AsyncIterator[KeyVaultStore]:
    opened = await open_store(store_location)
    try:
        yield opened
    finally:
        await opened.close()


def vault(name: str = "kv1", **changes: object) -> Vault:
    tenant = str(uuid.uuid4())
    made = Vault(
        vault_name=name, tenant_id=tenant, subscription_id=str(uuid.uuid4()), resource_group="rg",
        location="westeurope", soft_delete=True, retention_days=90, purge_protection=False, create_time=NOW,
        update_time=NOW, access_policies=(AccessPolicy(tenant, str(uuid.uuid4()), frozenset({KeyPermission.ALL})),),
    )  # fmt: skip
    return replace(made, **changes)  # type: ignore[arg-type]


def version(v: Vault, key_name: str, vid: str, at: datetime) -> KeyVersion:
    return KeyVersion(
        vault_name=v.vault_name, key_name=key_name, version=vid, key_size=2048,
        key_ops=(KeyOperation.WRAP_KEY, KeyOperation.UNWRAP_KEY), enabled=True, not_before=None, expires=None,
        tags={"env": "test"}, create_time=at, update_time=at, public_jwk="{}", sealed_private_key=b"sealed",
    )  # fmt: skip


async def test_a_vault_with_its_policies_round_trips(store: KeyVaultStore):
    made = vault()
    async with store.unit_of_work() as uow:
        await uow.insert_vault(made)
    assert await store.get_vault("kv1") == made
    reader = AccessPolicy(made.tenant_id, str(uuid.uuid4()), frozenset({KeyPermission.GET, KeyPermission.UNWRAP_KEY}))
    async with store.unit_of_work() as uow:
        assert await uow.get_policy("kv1", reader.object_id) is None
        await uow.put_policy("kv1", reader)
        assert await uow.get_policy("kv1", reader.object_id) == reader  # its own writes, before the commit
        assert await uow.count_policies("kv1") == 2
        assert await uow.delete_policy("kv1", str(uuid.uuid4())) is False
    stored = await store.get_vault("kv1")
    assert stored is not None and stored.policy_of(reader.object_id) == reader
    assert await store.count_policies("kv1") == 2
    async with store.unit_of_work() as uow:
        assert await uow.delete_policy("kv1", reader.object_id) is True
    assert await store.count_policies("kv1") == 1


async def test_a_unit_of_work_commits_everything_or_nothing(store: KeyVaultStore):
    before = store.generation

    async def fail_midway() -> None:
        async with store.unit_of_work() as uow:
            await uow.insert_vault(vault())
            await uow.append_event(EventType.KEY_CREATED, NOW, vault_name="kv1")
            raise RuntimeError("midway")

    with pytest.raises(RuntimeError, match="midway"):
        await fail_midway()
    assert await store.get_vault("kv1") is None and await store.last_sequence() == 0
    assert store.generation == before


async def test_soft_delete_recover_and_purge_dates(store: KeyVaultStore):
    made = vault()
    async with store.unit_of_work() as uow:
        await uow.insert_vault(made)
        await uow.mark_vault_deleted("kv1", NOW, NOW + timedelta(days=90))
    assert await store.list_vaults(subscription_id=made.subscription_id, deleted=False, after=None, limit=10) == []
    assert await store.vaults_due_for_purge(NOW + timedelta(days=89)) == []
    assert await store.vaults_due_for_purge(NOW + timedelta(days=90)) == ["kv1"]
    async with store.unit_of_work() as uow:
        await uow.mark_vault_deleted("kv1", None, None)
    assert await store.list_vaults(subscription_id=made.subscription_id, deleted=False, after=None, limit=10) == [made]
    async with store.unit_of_work() as uow:
        await uow.delete_vault("kv1")
    assert await store.get_vault("kv1") is None


async def test_keys_and_versions_latest_first_and_names_without_case(store: KeyVaultStore):
    made = vault()
    first, second = version(made, "CMK", "a" * 32, NOW), version(made, "CMK", "b" * 32, NOW + timedelta(seconds=1))
    async with store.unit_of_work() as uow:
        await uow.insert_vault(made)
        await uow.insert_key(Key("kv1", "CMK", NOW))
        await uow.insert_version(first)
        await uow.insert_version(second)
    assert await store.holds_keys()
    assert await store.get_key("kv1", "cmk") == Key("kv1", "CMK", NOW)
    assert await store.latest_version("kv1", "cmk") == second
    assert await store.list_versions("kv1", "CMK", after=None, limit=10) == [first, second]
    disabled = replace(first, enabled=False, tags={}, update_time=NOW + timedelta(minutes=1))
    async with store.unit_of_work() as uow:
        await uow.update_version(disabled)
        await uow.mark_key_deleted("kv1", "CMK", NOW, NOW + timedelta(days=7))
    assert await store.get_version("kv1", "CMK", "a" * 32) == disabled
    assert await store.list_keys("kv1", deleted=True, after=None, limit=10) == [
        Key("kv1", "CMK", NOW, NOW, NOW + timedelta(days=7))
    ]
    assert await store.keys_due_for_purge(NOW + timedelta(days=7)) == [("kv1", "CMK")]
    async with store.unit_of_work() as uow:
        await uow.delete_key("kv1", "CMK")
    assert await store.get_version("kv1", "CMK", "a" * 32) is None


async def test_events_are_numbered_without_gaps(store: KeyVaultStore):
    for name in ("k1", "k2", "k3"):
        async with store.unit_of_work() as uow:
            await uow.append_event(EventType.KEY_CREATED, NOW, vault_name="kv1", key_name=name, version="v")
    events = await store.events_after(1)
    assert [(e.sequence, e.key_name, e.type) for e in events] == [
        (2, "k2", EventType.KEY_CREATED),
        (3, "k3", EventType.KEY_CREATED),
    ]
    assert await store.last_sequence() == 3


async def test_rotation_policies_of_deleted_keys_are_not_live(store: KeyVaultStore):
    made = vault()
    async with store.unit_of_work() as uow:
        await uow.insert_vault(made)
        for name in ("live", "gone"):
            await uow.insert_key(Key("kv1", name, NOW))
            await uow.put_rotation_policy("kv1", name, '{"actions": []}', NOW)
        await uow.mark_key_deleted("kv1", "gone", NOW, NOW + timedelta(days=7))
        await uow.mark_rotation_notified("kv1", "live", "v1")
    (live,) = await store.live_rotation_policies()
    assert (live.key_name, live.policy_json, live.update_time, live.notified_version) == (
        "live", '{"actions": []}', NOW, "v1",
    )  # fmt: skip
    assert await store.get_rotation_policy("kv1", "gone") is not None


async def test_audit_records_checkpoints_and_service_keys(store: KeyVaultStore):
    def entry(n: int, result: str) -> AuditEntry:
        return AuditEntry(
            NOW + timedelta(seconds=n), f"req-{n}", "caller", "tenant", "client", "", "UnwrapKey", "kv1", "k",
            "v", result, "" if result == "allowed" else "FORBIDDEN_BY_POLICY",
        )  # fmt: skip

    assert await store.audit_head() is None
    records = [AuditRecord(n, entry(n, "allowed" if n % 2 else "denied"), bytes([n]) * 32) for n in (1, 2, 3)]
    async with store.unit_of_work() as uow:
        assert await uow.audit_head() is None
        await uow.insert_audit_records(records)
        assert await uow.audit_head() == (3, bytes([3]) * 32)
    assert await store.audit_records(after=0, limit=10) == records
    assert await store.audit_records(result="denied") == [records[1]]
    assert await store.audit_records(since=NOW + timedelta(seconds=2), until=NOW + timedelta(seconds=3)) == [records[1]]
    assert await store.audit_records(after=1, limit=1) == [records[1]]
    checkpoint = Checkpoint(3, bytes([3]) * 32, NOW.isoformat(), b"signature")
    async with store.unit_of_work() as uow:
        await uow.save_checkpoint(checkpoint)
        await uow.insert_service_key("audit-checkpoint", b"public", b"sealed")
    assert await store.latest_checkpoint() == checkpoint
    assert await store.get_service_key("audit-checkpoint") == (b"public", b"sealed")
    assert await store.get_service_key("other") is None
