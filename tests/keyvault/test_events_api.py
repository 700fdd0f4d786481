"""The key vault's event stream: what consumers (the speech service) follow to drop caches."""

from __future__ import annotations

import pytest

from cmk_trio.client.keyvault import KeyVaultClient
from cmk_trio.proto.keyvault.v1 import resources_pb2 as res
from cmk_trio.rpckit.errors import FailedPrecondition, PermissionDenied
from cmk_trio.rpckit.reasons import Reason
from tests.identity.helpers import make_principal


async def _until(client: KeyVaultClient, after: int, last_type: int) -> list[res.Event]:
    seen = []
    async for event in client.watch_events(after):
        seen.append(event)
        if event.type == last_type:
            return seen
    return seen


async def test_key_and_policy_changes_are_streamed_in_order_and_resumable(
    customer, operator, channel, clock, kv_channel
):
    platform = KeyVaultClient(kv_channel, operator.token_for)
    await customer.vaults.create_vault("events", customer.subscription_id, "rg1", "westeurope")
    key = await customer.vaults.create_key("events", "cmk")
    app, _, _ = await make_principal(operator, channel, clock, customer.tenant_id, "app")
    await customer.vaults.set_access_policy("events", customer.tenant_id, app.object_id, ["unwrapKey"])
    rotated = await customer.vaults.rotate_key(key.key_id)
    first = await _until(platform, 0, res.KEY_ROTATED)
    assert [e.type for e in first] == [res.KEY_CREATED, res.ACCESS_POLICY_CHANGED, res.KEY_ROTATED]
    assert first[1].object_id == app.object_id and first[2].version == rotated.version
    cursor = first[-1].sequence
    await customer.vaults.update_key(rotated.key_id, res.KeyVersion(enabled=False), ["enabled"])
    await customer.vaults.delete_key(key.key_id)
    await customer.vaults.recover_key(key.key_id)
    resumed = await _until(platform, cursor, res.KEY_RECOVERED)
    assert [e.type for e in resumed] == [res.KEY_UPDATED, res.KEY_DELETED, res.KEY_RECOVERED]
    assert [e.sequence for e in resumed] == [cursor + 1, cursor + 2, cursor + 3]


async def test_only_platform_principals_and_the_operator_watch(customer):
    with pytest.raises(PermissionDenied) as caught:
        async for _ in customer.vaults.watch_events(0):
            pass
    assert caught.value.reason is Reason.PLATFORM_PRINCIPAL_REQUIRED


async def test_a_cursor_beyond_the_stream_is_refused(keyvault, operator, kv_channel):
    with pytest.raises(FailedPrecondition) as caught:
        async for _ in KeyVaultClient(kv_channel, operator.token_for).watch_events(99):
            pass
    assert caught.value.reason is Reason.EVENT_CURSOR_AHEAD


async def test_audit_records_stream_to_the_operator_as_they_are_written(customer, operator, kv_channel):
    import asyncio

    platform = KeyVaultClient(kv_channel, operator.token_for)
    await customer.vaults.create_vault("streamed", customer.subscription_id, "rg1", "westeurope")
    received: list[res.AuditRecord] = []
    done = asyncio.Event()

    async def follow() -> None:
        async for record in platform.stream_audit(0):
            received.append(record)
            if record.operation == "CreateKey":
                done.set()
                return

    follower = asyncio.create_task(follow())
    await customer.vaults.create_key("streamed", "cmk")  # most likely written while the stream is open
    async with asyncio.timeout(5):
        await done.wait()
    await follower
    assert [r.sequence for r in received] == list(range(1, len(received) + 1))
    assert received[0].operation == "CreateVault" and received[-1].result == "allowed"
    with pytest.raises(PermissionDenied):
        async for _ in customer.vaults.stream_audit(0):
            pass
