"""The customer-managed key flows of DESIGN.md §4, with all three services running as real
servers: enable, checks that change nothing when they fail, rotation without re-encryption,
revocation and restore, identity removal, tenant moves, back to Microsoft-managed keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cmk_trio.client.channel import open_channel
from cmk_trio.client.keyvault import KeyVaultClient
from cmk_trio.client.speech import SpeechClient
from cmk_trio.proto.identity.v1 import resources_pb2 as idres
from cmk_trio.proto.keyvault.v1 import resources_pb2 as kvres
from cmk_trio.proto.speech.v1 import resources_pb2 as res
from cmk_trio.rpckit.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from cmk_trio.rpckit.reasons import Reason
from tests import raw_database
from tests.identity.helpers import make_principal, make_tenant
from tests.speech.cmk_world import refusal, until_refused
from tests.waiting import eventually

# --- enable -----------------------------------------------------------------------------------


async def test_enable_by_key_uri_grants_the_identity_and_never_rewrites_data(world):
    before = await world.read_all()
    ciphertexts = await world.ciphertexts()
    updated = await world.set_encryption(key_uri=world.key.key_id, key_subscription_id=world.subscription_id)
    enc = updated.encryption
    assert (enc.key_source, enc.key_version, enc.status) == (res.CUSTOMER_MANAGED, world.key.version, res.HEALTHY)
    # Where the key is, as the portal shows it (they were left empty).
    assert (enc.vault_uri, enc.key_name) == (world.key.key_id.split("/keys/")[0] + "/", "cmk")
    assert enc.vault_uri.startswith("https://contoso-cmk.")
    assert updated.identity.system_assigned and updated.identity.tenant_id == world.tenant_id
    vault = await world.vaults.get_vault("contoso-cmk")
    policy = next(p for p in vault.access_policies if p.object_id == updated.identity.principal_id)
    assert sorted(policy.key_permissions) == ["get", "unwrapKey", "wrapKey"]
    assert await world.read_all() == before
    assert await world.ciphertexts() == ciphertexts
    stored = await raw_database.stored_bytes(world.server.config.database_location, "speech")
    assert b"cmk-protected-config" not in stored and b"luis-authoring-secret" not in stored


async def test_enable_by_vault_and_key_takes_the_newest_version(world):
    newer = await world.vaults.rotate_key(world.key.key_id)
    updated = await world.set_encryption(vault_name="contoso-cmk", key_name="cmk")
    assert updated.encryption.key_version == newer.version and not updated.encryption.follow_latest_version
    assert updated.encryption.key_name == "cmk" and updated.encryption.vault_uri.startswith("https://contoso-cmk.")


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        ("other-region", Reason.VAULT_OTHER_REGION),
        ("no-purge-protection", Reason.VAULT_NOT_RECOVERABLE),
        ("rsa-3072", Reason.KEY_NOT_SUPPORTED),
        ("ec-p256", Reason.KEY_NOT_SUPPORTED),  # (an EC key signs; it cannot wrap a data key)
        ("disabled-key", Reason.KEY_NOT_SUPPORTED),
    ],
)
async def test_a_failed_enable_leaves_everything_as_it_was(world, setup, reason):
    vault, key = "contoso-cmk", "cmk"
    if setup == "other-region":
        vault = "contoso-east"
        await world.vaults.create_vault(vault, world.subscription_id, "rg1", "eastus", purge_protection=True)
        await world.vaults.create_key(vault, key)
    elif setup == "no-purge-protection":
        vault = "contoso-soft"
        await world.vaults.create_vault(vault, world.subscription_id, "rg1", "westeurope")
        await world.vaults.create_key(vault, key)
    elif setup == "rsa-3072":
        key = "big"
        await world.vaults.create_key(vault, key, size=3072)
    elif setup == "ec-p256":
        key = "signing"
        await world.vaults.create_key(vault, key, curve=kvres.P_256)
    else:
        await world.vaults.update_key(world.key.key_id, kvres.KeyVersion(enabled=False), ["enabled"])
    policies_before = (await world.vaults.get_vault(vault)).access_policies
    ciphertexts = await world.ciphertexts()
    with pytest.raises(FailedPrecondition) as caught:
        await world.set_encryption(vault_name=vault, key_name=key)
    assert caught.value.reason is reason
    after = await world.speech.get_resource(world.resource.name)
    assert after.encryption.key_source == res.MICROSOFT_MANAGED and not after.identity.system_assigned
    assert (await world.vaults.get_vault(vault)).access_policies == policies_before
    assert await world.ciphertexts() == ciphertexts
    await world.read_all()


async def test_a_vault_of_another_tenant_is_refused(world, operator, channel, kv_channel_for, clock):
    other = await make_tenant(operator, channel, clock, "Fabrikam")
    await operator.create_role_assignment(other.admin.object_id, idres.OWNER, f"/subscriptions/{other.subscription_id}")
    theirs = KeyVaultClient(kv_channel_for, other.admin_client.token_for)
    await theirs.create_vault("fabrikam-cmk", other.subscription_id, "rg1", "westeurope", purge_protection=True)
    await theirs.create_key("fabrikam-cmk", "cmk")
    with pytest.raises(NotFound) as caught:  # Contoso's admin cannot even see Fabrikam's vault
        await world.set_encryption(vault_name="fabrikam-cmk", key_name="cmk")
    assert caught.value.reason is Reason.VAULT_NOT_FOUND and other.tenant_id not in caught.value.message
    after = await world.speech.get_resource(world.resource.name)
    assert after.encryption.key_source == res.MICROSOFT_MANAGED and not after.identity.system_assigned


async def test_a_caller_who_may_not_change_the_vaults_policies_is_refused(world, operator, channel, clock):
    # Carol may change the resource and the vault (Contributor), but not the vault's access
    # policies: that needs Owner (stricter than Azure; issue 12, finding 5).
    carol, _, carol_client = await make_principal(operator, channel, clock, world.tenant_id, "carol", kind=idres.USER)
    await operator.create_role_assignment(carol.object_id, idres.CONTRIBUTOR, f"/subscriptions/{world.subscription_id}")
    carol_speech = SpeechClient(world.speech.channel, carol_client.token_for)
    policies_before = (await world.vaults.get_vault("contoso-cmk")).access_policies
    with pytest.raises(PermissionDenied) as caught:
        await carol_speech.set_encryption(world.resource.name, vault_name="contoso-cmk", key_name="cmk")
    assert caught.value.reason is Reason.GRANT_REFUSED and "Owner" in caught.value.message
    after = await world.speech.get_resource(world.resource.name)
    assert after.encryption.key_source == res.MICROSOFT_MANAGED and not after.identity.system_assigned
    assert (await world.vaults.get_vault("contoso-cmk")).access_policies == policies_before


@pytest.mark.parametrize(
    "uri",
    ["https://contoso-cmk.vault.azure.net/secrets/cmk", "https://contoso-cmk.evil.example/keys/cmk", "not a uri",
     "https://contoso-cmk.vault.azure.net/keys/cmk/xyz"],
)  # fmt: skip
async def test_malformed_key_uris_are_refused(world, uri):
    with pytest.raises(InvalidArgument) as caught:
        await world.set_encryption(key_uri=uri, key_subscription_id=world.subscription_id)
    assert caught.value.reason is Reason.KEY_URI_MALFORMED


async def test_a_key_uri_needs_its_vaults_subscription_even_when_it_is_the_resources(world):
    """The seed's "key URI and subscription", as the client's docstring says (it once said
    the subscription was needed only for another one); nothing changes."""
    before = await world.speech.get_resource(world.resource.name)
    with pytest.raises(InvalidArgument) as caught:
        await world.set_encryption(key_uri=world.key.key_id)
    assert caught.value.reason is Reason.FIELD_REQUIRED and "key_subscription_id" in caught.value.message
    assert await world.speech.get_resource(world.resource.name) == before


async def test_eligibility_is_checked_before_anything_changes(world, clock):
    f0 = await world.speech.create_resource(world.subscription_id, "rg1", "free", "westeurope", tier=res.F0)
    old = await world.operator_speech.create_resource(
        world.subscription_id, "rg1", "old", "westeurope", backdate=datetime(2020, 6, 1, tzinfo=UTC)
    )
    for resource, reason in ((f0, Reason.CMK_TIER_NOT_SUPPORTED), (old, Reason.CMK_RESOURCE_TOO_OLD)):
        with pytest.raises(FailedPrecondition) as caught:
            await world.speech.set_encryption(resource.name, vault_name="contoso-cmk", key_name="cmk")
        assert caught.value.reason is reason and "create a new" in caught.value.message


# --- rotate and change keys -------------------------------------------------------------------


async def test_rotation_rewraps_only_the_data_key_and_the_old_version_can_be_disabled(world):
    await world.set_encryption(key_uri=world.key.key_id, key_subscription_id=world.subscription_id)
    ciphertexts, before = await world.ciphertexts(), await world.read_all()
    newer = await world.vaults.rotate_key(world.key.key_id)
    updated = await world.set_encryption(
        key_uri=newer.key_id, key_subscription_id=world.subscription_id, skip_grant=True
    )
    assert updated.encryption.key_version == newer.version
    await world.vaults.update_key(world.key.key_id, kvres.KeyVersion(enabled=False), ["enabled"])
    world.server.data_keys.drop_all()
    assert await world.read_all() == before
    assert await world.ciphertexts() == ciphertexts


async def test_a_different_key_and_back_to_microsoft_managed(world):
    await world.set_encryption(key_uri=world.key.key_id, key_subscription_id=world.subscription_id)
    other = await world.vaults.create_key("contoso-cmk", "other")
    ciphertexts, before = await world.ciphertexts(), await world.read_all()
    moved = await world.set_encryption(vault_name="contoso-cmk", key_name="other", skip_grant=True)
    assert moved.encryption.key_version == other.version
    back = await world.disable_encryption()
    assert back.encryption.key_source == res.MICROSOFT_MANAGED
    # Revoking the vault now changes nothing: the data no longer depends on it.
    await world.vaults.remove_access_policy("contoso-cmk", back.identity.principal_id)
    world.server.data_keys.drop_all()
    assert await world.read_all() == before and await world.ciphertexts() == ciphertexts


async def test_a_versionless_key_follows_rotations_by_the_vaults_event(world):
    versionless = world.key.key_id.rsplit("/", 1)[0]
    updated = await world.set_encryption(key_uri=versionless, key_subscription_id=world.subscription_id)  # fmt: skip
    assert updated.encryption.follow_latest_version and updated.encryption.key_version == world.key.version
    newer = await world.vaults.rotate_key(versionless)

    async def followed() -> bool | None:
        resource = await world.speech.get_resource(world.resource.name)
        return True if resource.encryption.key_version == newer.version else None

    await eventually(followed, "the resource following the rotation")
    await world.vaults.update_key(world.key.key_id, kvres.KeyVersion(enabled=False), ["enabled"])
    world.server.data_keys.drop_all()
    await world.read_all()


async def test_a_versioned_key_uri_pins_its_version(world):
    """Pinning is the versioned URI: no flag says otherwise, and a rotation leaves it alone."""
    pinned = await world.set_encryption(key_uri=world.key.key_id, key_subscription_id=world.subscription_id)
    assert not pinned.encryption.follow_latest_version and pinned.encryption.key_version == world.key.version
    await world.vaults.rotate_key(world.key.key_id)
    stored = await world.server.store.get_resource(world.resource.name)
    assert stored is not None and not stored.follow_latest
    assert await world.server.encryption.rewrap_to_latest(stored) is None  # what the rotation event asks: nothing
    after = await world.speech.get_resource(world.resource.name)
    assert after.encryption.key_version == world.key.version and not after.encryption.follow_latest_version


async def test_a_follow_computed_before_a_disable_does_not_undo_the_disable(world):
    """The follower read the resource, then the owner disabled customer-managed keys and was
    told so, then the follower's rewrap (of what it read) tried to save: it must lose."""
    versionless = world.key.key_id.rsplit("/", 1)[0]
    await world.set_encryption(key_uri=versionless, key_subscription_id=world.subscription_id)  # fmt: skip
    before = await world.read_all()
    read_by_the_follower = await world.server.store.get_resource(world.resource.name)
    assert read_by_the_follower is not None
    disabled = await world.disable_encryption()
    assert disabled.encryption.key_source == res.MICROSOFT_MANAGED
    await world.vaults.rotate_key(versionless)
    await world.server.encryption.rewrap_to_latest(read_by_the_follower)
    stored = await world.server.store.get_resource(world.resource.name)
    assert stored is not None and stored.key_source.name == "MICROSOFT"
    # Flow 10: with Microsoft-managed keys the vault's policy no longer matters.
    identity = read_by_the_follower.identity_principal_id
    await world.vaults.remove_access_policy("contoso-cmk", identity)
    world.server.data_keys.drop_all()
    assert await world.read_all() == before


async def test_an_identity_made_in_the_directory_but_never_recorded_is_adopted(world):
    """Speech crashed after the directory made the resource's managed identity and before it
    recorded it: the next enable (or assign) finds the resource's own identity, made by the
    speech platform, and uses it, instead of failing with MANAGED_IDENTITY_EXISTS for good."""
    gateway = world.server.encryption.identity
    orphan = await gateway.create_identity(world.tenant_id, world.resource.name)
    enabled = await world.set_encryption(key_uri=world.key.key_id, key_subscription_id=world.subscription_id)
    assert enabled.identity.principal_id == orphan
    assert enabled.encryption.key_source == res.CUSTOMER_MANAGED
    assert (await world.identity(assign=True)).identity.principal_id == orphan


async def test_the_server_keeps_no_data_key_while_the_vaults_stream_is_not_current(world):
    """The wiring, end to end: with the vault's event stream broken (a revocation would not
    reach the cache), reads work but keep nothing; once it has caught up, they are cached."""
    await world.set_encryption(key_uri=world.key.key_id, key_subscription_id=world.subscription_id)
    stored = await world.server.store.get_resource(world.resource.name)
    assert stored is not None
    world.server.guard.broken("keyvault")
    world.server.data_keys.drop_all()
    before = await world.read_all()
    assert not world.server.data_keys.cached(stored)
    world.server.guard.caught_up("keyvault")
    assert await world.read_all() == before
    assert world.server.data_keys.cached(stored)


# --- revoke and restore -----------------------------------------------------------------------


async def test_revoking_the_identitys_access_makes_data_unreadable_by_the_event_and_restoring_brings_it_back(world):
    enabled = await world.set_encryption(key_uri=world.key.key_id, key_subscription_id=world.subscription_id)
    before = await world.read_all()
    identity = enabled.identity.principal_id
    await world.vaults.remove_access_policy("contoso-cmk", identity)
    await until_refused(world, Reason.CUSTOMER_KEY_ACCESS_REVOKED)
    status = (await world.speech.get_resource(world.resource.name)).encryption
    assert (status.status, status.inaccessible_reason) == (res.KEY_INACCESSIBLE, "CUSTOMER_KEY_ACCESS_REVOKED")
    await world.vaults.set_access_policy("contoso-cmk", world.tenant_id, identity, ["get", "wrapKey", "unwrapKey"])
    assert await world.read_all() == before


async def test_disabling_or_deleting_the_key_is_a_cause_of_its_own(world):
    await world.set_encryption(key_uri=world.key.key_id, key_subscription_id=world.subscription_id)
    before = await world.read_all()
    await world.vaults.update_key(world.key.key_id, kvres.KeyVersion(enabled=False), ["enabled"])
    await until_refused(world, Reason.CUSTOMER_KEY_DISABLED)
    await world.vaults.update_key(world.key.key_id, kvres.KeyVersion(enabled=True), ["enabled"])
    assert await world.read_all() == before
    await world.vaults.delete_key(world.key.key_id)
    await until_refused(world, Reason.CUSTOMER_KEY_DELETED)
    await world.vaults.recover_key(world.key.key_id)
    assert await world.read_all() == before


async def test_a_purged_key_is_reported_as_permanently_unrecoverable(world, clock):
    await world.set_encryption(key_uri=world.key.key_id, key_subscription_id=world.subscription_id)
    await world.vaults.delete_key(world.key.key_id)
    with pytest.raises(FailedPrecondition):
        await world.vaults.purge_key(world.key.key_id)
    clock.advance(timedelta(days=8))
    world.server.data_keys.drop_all()
    await world.vaults.purge_key(world.key.key_id)
    await until_refused(world, Reason.CUSTOMER_KEY_PURGED)


async def test_a_soft_deleted_vault_is_a_recoverable_cause_and_purged_only_once_it_is(world, keyvault, clock):
    await world.set_encryption(key_uri=world.key.key_id, key_subscription_id=world.subscription_id)
    before = await world.read_all()
    await world.vaults.delete_vault("contoso-cmk")
    await until_refused(world, Reason.CUSTOMER_KEY_VAULT_DELETED)
    status = (await world.speech.get_resource(world.resource.name)).encryption
    assert (status.status, status.inaccessible_reason) == (res.KEY_INACCESSIBLE, "CUSTOMER_KEY_VAULT_DELETED")
    await world.vaults.recover_vault("contoso-cmk")
    assert await eventually(lambda: world.read_all(), "readable again after the vault's recovery") == before
    await world.vaults.delete_vault("contoso-cmk")
    clock.advance(timedelta(days=91))  # past the retention, so the purger may purge the protected vault
    await keyvault.purge_due()
    world.server.data_keys.drop_all()
    await until_refused(world, Reason.CUSTOMER_KEY_PURGED)


async def test_with_the_streams_cut_a_cached_key_still_expires_by_its_maximum_age(world, clock):
    enabled = await world.set_encryption(key_uri=world.key.key_id, key_subscription_id=world.subscription_id)
    await world.read_all()  # the data key is cached now
    await world.server.followers.stop()  # no event will arrive any more
    await world.vaults.remove_access_policy("contoso-cmk", enabled.identity.principal_id)
    await world.read_all()  # still cached: no event told the service
    clock.advance(timedelta(minutes=5, seconds=1))
    with pytest.raises(FailedPrecondition) as caught:
        await world.read_all()
    assert caught.value.reason is Reason.CUSTOMER_KEY_ACCESS_REVOKED


# --- the identity -------------------------------------------------------------------------------


async def test_removing_the_identity_needs_confirmation_and_a_new_one_must_be_granted_again(world):
    enabled = await world.set_encryption(key_uri=world.key.key_id, key_subscription_id=world.subscription_id)
    before = await world.read_all()
    with pytest.raises(FailedPrecondition) as caught:
        await world.identity(assign=False)
    assert caught.value.reason is Reason.IDENTITY_REMOVAL_UNCONFIRMED
    await world.read_all()
    removed = await world.identity(assign=False, confirm=True)
    assert not removed.identity.system_assigned
    await until_refused(world, Reason.CUSTOMER_KEY_IDENTITY_MISSING)
    again = await world.identity(assign=True)
    assert again.identity.principal_id not in ("", enabled.identity.principal_id)
    await until_refused(world, Reason.CUSTOMER_KEY_ACCESS_REVOKED)
    await world.vaults.set_access_policy("contoso-cmk", world.tenant_id, again.identity.principal_id,
                                         ["get", "wrapKey", "unwrapKey"])  # fmt: skip
    assert await world.read_all() == before


async def test_a_subscription_transfer_stops_cmk_with_a_reason_that_says_so(world, operator):
    await world.set_encryption(key_uri=world.key.key_id, key_subscription_id=world.subscription_id)
    await world.read_all()
    elsewhere = await operator.create_tenant("Elsewhere")
    await operator.transfer_subscription(world.subscription_id, elsewhere.tenant_id)
    # Nobody of the old tenant can call the resource any more (its roles went with the
    # transfer), so the service's own view of the data key is what is checked.
    stored = await world.server.resources.store.get_resource(world.resource.name)
    got = await eventually(lambda: refusal(lambda: world.server.data_keys.data_key(stored)), "the data key refused")
    assert got is Reason.CUSTOMER_KEY_TENANT_MISMATCH

    # The resource's own record follows when speech applies identity's transfer event, which
    # may come a moment after the refusal above (that asks identity directly): CI on
    # PostgreSQL read the old tenant once, straight after the refusal.
    async def moved() -> bool | None:
        stored = await world.server.resources.store.get_resource(world.resource.name)
        return True if stored.tenant_id == elsewhere.tenant_id else None

    assert await eventually(moved, "the resource's tenant following the transfer")


async def test_an_unreachable_vault_is_unavailable_not_a_broken_key(world, clock):
    from cmk_trio.rpckit.errors import Unavailable
    from cmk_trio.speech.customer_keys import DataKeys
    from cmk_trio.speech.gateways import GrpcVaultGateway

    await world.set_encryption(key_uri=world.key.key_id, key_subscription_id=world.subscription_id)
    stored = await world.server.resources.store.get_resource(world.resource.name)
    nowhere = open_channel("127.0.0.1:1")  # nothing listens on port 1
    try:
        keys = DataKeys(
            world.server.resources.ring, clock, vault=GrpcVaultGateway(nowhere),
            identity=world.server.encryption.identity,
        )  # fmt: skip
        with pytest.raises(Unavailable) as caught:
            await keys.data_key(stored)
        assert caught.value.reason is Reason.CUSTOMER_KEY_VAULT_UNREACHABLE
    finally:
        await nowhere.close()


async def test_a_move_within_the_tenant_keeps_data_and_cmk(world, operator):
    await world.set_encryption(key_uri=world.key.key_id, key_subscription_id=world.subscription_id)
    before, ciphertexts = await world.read_all(), await world.ciphertexts()
    moved = await world.speech.move_resource(world.resource.name, world.subscription_id, "rg2")
    assert moved.name.endswith("/resourceGroups/rg2/providers/Microsoft.CognitiveServices/accounts/speech1")
    world.resource = moved
    world.server.data_keys.drop_all()
    assert await world.read_all() == before and await world.ciphertexts() == ciphertexts
    assert (await world.speech.get_resource(moved.name)).encryption.status == res.HEALTHY


async def test_a_move_to_another_tenant_loses_the_identity_and_says_why(world, operator, channel, clock):
    await world.set_encryption(key_uri=world.key.key_id, key_subscription_id=world.subscription_id)
    other = await make_tenant(operator, channel, clock, "Fabrikam")
    with pytest.raises(PermissionDenied) as caught:  # the customer cannot take it across tenants
        await world.speech.move_resource(world.resource.name, other.subscription_id, "rg1")
    assert caught.value.reason in (Reason.OPERATOR_REQUIRED, Reason.ROLE_REQUIRED)
    moved = await world.operator_speech.move_resource(world.resource.name, other.subscription_id, "rg1")
    assert moved.tenant_id == other.tenant_id
    assert moved.encryption.status == res.KEY_INACCESSIBLE
    assert moved.encryption.inaccessible_reason == "CUSTOMER_KEY_TENANT_MISMATCH"
    with pytest.raises(NotFound):  # the identity was deleted in the old tenant
        await operator.get_principal(world.tenant_id, moved.identity.principal_id)


async def test_deleting_a_resource_deletes_its_identity_and_its_data(world, operator):
    with_cmk = await world.set_encryption(key_uri=world.key.key_id, key_subscription_id=world.subscription_id)
    identity = with_cmk.identity.principal_id
    assert (await operator.get_principal(world.tenant_id, identity)).object_id == identity
    await world.speech.delete_resource(world.resource.name)
    with pytest.raises(NotFound):
        await operator.get_principal(world.tenant_id, identity)
    with pytest.raises(NotFound):
        await world.speech.get_resource(world.resource.name)
    assert await world.ciphertexts() == []
    with pytest.raises(NotFound):  # and the name can be used again, with no identity
        await world.speech.delete_resource(world.resource.name)
    again = await world.speech.create_resource(world.subscription_id, "rg1", "speech1", "westeurope")
    assert not again.identity.principal_id


async def test_a_request_id_travels_from_the_caller_to_the_vaults_audit_log(world):
    from cmk_trio.proto.speech.v1 import speech_service_pb2 as pb
    from cmk_trio.proto.speech.v1 import speech_service_pb2_grpc as sp_grpc
    from cmk_trio.rpckit import audiences

    token = await world.speech._tokens(audiences.MANAGEMENT)
    stub = sp_grpc.SpeechResourceServiceStub(world.speech.channel)
    request = pb.SetEncryptionRequest(name=world.resource.name, key_uri=world.key.key_id,
                                      key_subscription_id=world.subscription_id)  # fmt: skip
    await stub.SetEncryption(request, metadata=(("authorization", f"Bearer {token}"), ("x-request-id", "trace-cmk-7")))
    records = (await world.vaults.list_audit("contoso-cmk", page_size=1000)).records
    traced = {r.operation for r in records if r.request_id == "trace-cmk-7"}
    assert {"GetVault", "UpdateAccessPolicy", "GetKey", "WrapKey", "UnwrapKey"} <= traced
