"""The speech store, through its Protocol only: what any engine must do. Each test runs once
per engine: in a SQLite file and on PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

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
)
from cmk_trio.speech.storage import SpeechStore, open_store
from tests import raw_database

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


@pytest.fixture
async def store(store_location: str | Path) -> AsyncIterator[SpeechStore]:
    opened = await open_store(store_location)
    try:
        yield opened
    finally:
        await opened.close()


def resource(subscription_id: str, name: str, **changes: object) -> SpeechResource:
    made = SpeechResource(
        resource_id=f"/subscriptions/{subscription_id}/resourceGroups/rg/providers/"
        f"Microsoft.CognitiveServices/accounts/{name}",
        uid=str(uuid.uuid4()), subscription_id=subscription_id, resource_group="rg", account_name=name,
        location="westeurope", tier=Tier.S0, create_time=NOW, tenant_id=str(uuid.uuid4()),
        key_source=KeySource.MICROSOFT, wrapping_key="v1", wrapped_data_key=b"wrapped",
    )  # fmt: skip
    return replace(made, **changes)  # type: ignore[arg-type]


async def test_resources_round_trip_and_are_found_without_case(store: SpeechStore):
    sub = str(uuid.uuid4())
    first = resource(sub, "Speech1")
    async with store.unit_of_work() as uow:
        await uow.insert_resource(first)
    assert await store.get_resource(first.resource_id.upper()) == first
    cmk = replace(
        first,
        key_source=KeySource.CUSTOMER,
        wrapping_key="https://kv1.vault.azure.net/keys/cmk/" + "a" * 32,
        key_uri="https://kv1.vault.azure.net/keys/cmk",
        identity_principal_id=str(uuid.uuid4()),
        follow_latest=True,
    )
    async with store.unit_of_work() as uow:
        assert await uow.update_resource(cmk) is True
    stored = replace(cmk, generation=1)
    assert await store.get_resource(first.resource_id) == stored
    assert await store.resources_using(key_prefix="https://kv1.vault.azure.net/") == [stored]
    assert await store.resources_with_identity(cmk.identity_principal_id) == [stored]
    assert await store.resources_in_subscription(sub) == [stored]


async def test_a_resource_update_computed_from_an_old_read_is_refused(store: SpeechStore):
    made = resource(str(uuid.uuid4()), "s")
    async with store.unit_of_work() as uow:
        await uow.insert_resource(made)
    first, second = replace(made, wrapping_key="v2"), replace(made, wrapping_key="v3")
    async with store.unit_of_work() as uow:
        assert await uow.update_resource(first) is True
        assert await uow.update_resource(second) is False  # computed from generation 0, now 1
    stored = await store.get_resource(made.resource_id)
    assert stored is not None and (stored.wrapping_key, stored.generation) == ("v2", 1)
    async with store.unit_of_work() as uow:
        await uow.set_subscription_tenant(made.subscription_id, "other-tenant")
        assert await uow.update_resource(replace(stored, wrapping_key="v4")) is False


async def test_a_unit_of_work_commits_everything_or_nothing(store: SpeechStore):
    made = resource(str(uuid.uuid4()), "s")
    before = store.generation

    async def fail_midway() -> None:
        async with store.unit_of_work() as uow:
            await uow.insert_resource(made)
            raise RuntimeError("midway")

    with pytest.raises(RuntimeError, match="midway"):
        await fail_midway()
    assert await store.get_resource(made.resource_id) is None and store.generation == before
    assert await store.resource_count() == 0


async def test_of_two_updates_from_the_same_version_exactly_one_wins(store: SpeechStore):
    made = resource(str(uuid.uuid4()), "s")
    app = Application(made.resource_id, "app1", "Lights", 1, b"sealed-1", NOW, NOW)
    async with store.unit_of_work() as uow:
        await uow.insert_resource(made)
        await uow.insert_application(made.uid, app)
    a = replace(app, version=2, sealed_configuration=b"sealed-a")
    b = replace(app, version=2, sealed_configuration=b"sealed-b")
    async with store.unit_of_work() as uow:
        assert await uow.update_application(made.uid, a, expected_version=1) is True
        assert await uow.update_application(made.uid, b, expected_version=1) is False
    assert await store.get_application(made.uid, "app1") == a
    async with store.unit_of_work() as uow:
        assert await uow.delete_application(made.uid, "app1", expected_version=1) is False
        assert await uow.delete_application(made.uid, "app1", expected_version=2) is True
    assert await store.get_application(made.uid, "app1") is None


async def test_applications_list_in_creation_order_from_a_position(store: SpeechStore):
    made = resource(str(uuid.uuid4()), "s")
    async with store.unit_of_work() as uow:
        await uow.insert_resource(made)
        for name in ("c", "a", "b"):
            await uow.insert_application(made.uid, Application(made.resource_id, name, name, 1, b"x", NOW, NOW))
    listed = await store.list_applications(made.uid, after=0, limit=2)
    assert [a.application_id for _, a in listed] == ["c", "a"]
    rest = await store.list_applications(made.uid, after=listed[-1][0], limit=10)
    assert [a.application_id for _, a in rest] == ["b"]


async def test_deleting_a_resource_takes_its_data(store: SpeechStore):
    made = resource(str(uuid.uuid4()), "s")
    async with store.unit_of_work() as uow:
        await uow.insert_resource(made)
        await uow.insert_application(made.uid, Application(made.resource_id, "a", "a", 1, b"x", NOW, NOW))
        await uow.put_luis_keys(made.uid, SealedLuisKeys(made.resource_id, 1, b"sealed-luis", NOW))
    stored_keys = await store.get_luis_keys(made.uid)
    assert stored_keys is not None and stored_keys.sealed == b"sealed-luis"
    async with store.unit_of_work() as uow:
        await uow.delete_resource(made.uid)
    assert await store.get_luis_keys(made.uid) is None
    assert await store.list_applications(made.uid, after=0, limit=10) == []


async def test_approvals_are_replaced_and_tenants_follow_their_subscription(store: SpeechStore):
    sub = str(uuid.uuid4())
    requested = CmkApproval(sub, ApprovalState.REQUESTED, NOW, "someone", None, "please")
    approved = replace(requested, state=ApprovalState.APPROVED, decision_time=NOW + timedelta(hours=1))
    made = resource(sub, "s")
    async with store.unit_of_work() as uow:
        await uow.put_approval(requested)
        await uow.put_approval(approved)
        await uow.insert_resource(made)
    assert await store.get_approval(sub) == approved
    new_tenant = str(uuid.uuid4())
    async with store.unit_of_work() as uow:
        await uow.set_subscription_tenant(sub, new_tenant)
    moved = await store.get_resource(made.resource_id)
    assert moved is not None and (moved.tenant_id, moved.generation) == (new_tenant, 1)


async def test_ring_rewrap_candidates_are_the_microsoft_managed_on_other_versions(store: SpeechStore):
    sub = str(uuid.uuid4())
    old, current = resource(sub, "old"), resource(sub, "current", wrapping_key="v2")
    customer = resource(sub, "cmk", key_source=KeySource.CUSTOMER, wrapping_key="https://kv/keys/k/1")
    async with store.unit_of_work() as uow:
        for made in (old, current, customer):
            await uow.insert_resource(made)
    assert await store.microsoft_managed_not_wrapped_by("v2") == [old.resource_id]


async def test_the_database_holds_sealed_values_only(store: SpeechStore, store_location: str | Path):
    made = resource(str(uuid.uuid4()), "s")
    async with store.unit_of_work() as uow:
        await uow.insert_resource(made)
        await uow.insert_application(made.uid, Application(made.resource_id, "a", "a", 1, b"sealed-app", NOW, NOW))
        await uow.put_luis_keys(made.uid, SealedLuisKeys(made.resource_id, 1, b"sealed-luis", NOW))
    assert await raw_database.speech_sealed_values(store_location) == [b"sealed-app", b"sealed-luis"]


async def test_a_step_taken_over_by_another_replica_cannot_be_finished_by_its_owner(store: SpeechStore):
    step = PendingStep(0, StepKind.ENABLE_CMK, "uid", "/subscriptions/s/resourceGroups/rg/providers/x/accounts/a",
                       "tenant", True, "kv", NOW, owner="replica-a")  # fmt: skip
    async with store.unit_of_work() as uow:
        step_id = await uow.insert_step(step)
    async with store.unit_of_work() as uow:
        assert await uow.claim_step(step_id, "replica-a", "replica-b")
        assert not await uow.claim_step(step_id, "replica-a", "replica-c")  # taken already
    async with store.unit_of_work() as uow:
        assert not await uow.delete_step(step_id, "replica-a")  # its owner's record of the change fails
        assert await uow.delete_step(step_id, "replica-b")
    assert await store.pending_steps() == []
