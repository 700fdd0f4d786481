"""Rotation policies, carried out by the service on its (fake) clock, reported on the stream."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cmk_trio.client.calls import call
from cmk_trio.client.keyvault import KeyVaultClient
from cmk_trio.proto.keyvault.v1 import keyvault_service_pb2 as pb
from cmk_trio.proto.keyvault.v1 import resources_pb2 as res
from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.errors import InvalidArgument
from cmk_trio.rpckit.reasons import Reason


async def set_policy(customer, key_id: str, actions, expiry: str = "") -> res.KeyRotationPolicy:
    policy = res.KeyRotationPolicy(lifetime_actions=actions, expiry_time=expiry)
    return await call(
        customer.vaults.keys.UpdateKeyRotationPolicy,
        pb.UpdateKeyRotationPolicyRequest(name=key_id, policy=policy),
        token=await customer.tenant.admin_client.token_for(audiences.VAULT),
    )


async def test_a_rotation_policy_rotates_on_the_service_clock_and_is_streamed(
    customer, keyvault, clock, operator, kv_channel
):
    await customer.vaults.create_vault("rot", customer.subscription_id, "rg1", "westeurope")
    key = await customer.vaults.create_key("rot", "cmk")
    versionless = key.key_id.rsplit("/", 1)[0]
    saved = await set_policy(
        customer, versionless, [res.LifetimeAction(action=res.ROTATE, time_after_create="P30D")], expiry="P90D"
    )
    assert saved.lifetime_actions[0].time_after_create == "P30D" and saved.HasField("update_time")
    await keyvault.housekeeping()
    assert (await customer.vaults.get_key(versionless)).version == key.version  # not due yet
    clock.advance(timedelta(days=30, seconds=1))
    await keyvault.housekeeping()
    newest = await customer.vaults.get_key(versionless)
    assert newest.version != key.version
    assert newest.expires.ToDatetime().date() == (clock.now() + timedelta(days=90)).date()
    events = []
    async for event in KeyVaultClient(kv_channel, operator.token_for).watch_events(0):
        events.append(event)
        if event.type == res.KEY_ROTATED:
            break
    assert events[-1].version == newest.version
    audit = (await customer.vaults.list_audit("rot", page_size=200)).records
    assert any(r.operation == "AutoRotateKey" and r.key_version == newest.version for r in audit)
    await keyvault.housekeeping()  # a second pass does not rotate again
    assert (await customer.vaults.get_key(versionless)).version == newest.version


async def test_a_notify_action_announces_the_expiry_once(customer, keyvault, clock, operator, kv_channel):
    await customer.vaults.create_vault("rot", customer.subscription_id, "rg1", "westeurope")
    expires = clock.now() + timedelta(days=60)
    from google.protobuf import timestamp_pb2

    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(expires)
    key = await customer.vaults.create_key("rot", "cmk", attributes=res.KeyVersion(expires=stamp))
    await set_policy(customer, key.key_id, [res.LifetimeAction(action=res.NOTIFY, time_before_expiry="P30D")])
    clock.advance(timedelta(days=31))
    await keyvault.housekeeping()
    await keyvault.housekeeping()
    near = []
    platform = KeyVaultClient(kv_channel, operator.token_for)
    last = await keyvault.store.last_sequence()
    async for event in platform.watch_events(0):
        if event.type == res.KEY_NEAR_EXPIRY:
            near.append(event)
        if event.sequence == last:
            break
    assert [e.version for e in near] == [key.version]


@pytest.mark.parametrize(
    ("actions", "expiry"),
    [
        ([res.LifetimeAction(action=res.ROTATE, time_after_create="P6D")], ""),
        ([res.LifetimeAction(action=res.ROTATE, time_after_create="30 days")], ""),
        ([res.LifetimeAction(action=res.ROTATE, time_after_create="P30D", time_before_expiry="P7D")], "P1Y"),
        ([res.LifetimeAction(action=res.ROTATE, time_before_expiry="P30D")], ""),
        ([res.LifetimeAction(action=res.ROTATE, time_after_create="P30D")] * 2, ""),
    ],
)
async def test_bad_policies_are_refused(customer, actions, expiry):
    await customer.vaults.create_vault("rot", customer.subscription_id, "rg1", "westeurope")
    key = await customer.vaults.create_key("rot", "cmk")
    with pytest.raises(InvalidArgument) as caught:
        await set_policy(customer, key.key_id, actions, expiry)
    assert caught.value.reason is Reason.ROTATION_POLICY_INVALID


async def test_a_rotation_already_made_by_the_previous_lease_holder_is_not_made_again(customer, keyvault):
    """Found in review: a replica that takes the lease over mid-round rotated a key that the
    replica before it had rotated in the same round. A service rotation is now made only if
    the version it replaces is still the newest when it commits."""
    from cmk_trio.keyvault.key_attributes import KeyAttributes

    await customer.vaults.create_vault("rot", customer.subscription_id, "rg1", "westeurope")
    await customer.vaults.create_key("rot", "cmk")
    vault = await keyvault.store.get_vault("rot")
    latest = await keyvault.store.latest_version("rot", "cmk")
    assert vault is not None and latest is not None
    first = await keyvault.keys.rotate_as_service(vault, latest, KeyAttributes(key_ops=latest.key_ops))
    again = await keyvault.keys.rotate_as_service(vault, latest, KeyAttributes(key_ops=latest.key_ops))
    assert first is not None and again is None
    versions = await keyvault.store.list_versions("rot", "cmk", after=None, limit=10)
    assert len(versions) == 2


async def test_a_key_without_a_policy_shows_key_vaults_default(customer):
    """As Key Vault shows it: notify 30 days before expiry, and nothing the service carries out."""
    await customer.vaults.create_vault("rot", customer.subscription_id, "rg1", "westeurope")
    key = await customer.vaults.create_key("rot", "cmk")
    shown = await call(
        customer.vaults.keys.GetKeyRotationPolicy,
        pb.GetKeyRotationPolicyRequest(name=key.key_id.rsplit("/", 1)[0]),
        token=await customer.tenant.admin_client.token_for(audiences.VAULT),
    )
    assert [(a.action, a.time_after_create, a.time_before_expiry) for a in shown.lifetime_actions] == [
        (res.NOTIFY, "", "P30D")
    ]
    assert not shown.expiry_time and not shown.HasField("update_time")
