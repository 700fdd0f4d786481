"""Vaults and access policies over the wire, against real identity and key vault servers."""

from __future__ import annotations

import asyncio

import pytest

from cmk_trio.client.keyvault import KeyVaultClient
from cmk_trio.proto.identity.v1 import resources_pb2 as idres
from cmk_trio.rpckit.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from cmk_trio.rpckit.reasons import Reason
from tests.identity.helpers import make_principal
from tests.keyvault.conftest import make_customer


async def test_a_vault_is_created_with_a_full_policy_for_its_creator(customer):
    vault = await customer.vaults.create_vault("contoso-keys", customer.subscription_id, "rg1", "westeurope",
                                               purge_protection=True)  # fmt: skip
    assert vault.vault_uri == "https://contoso-keys.vault.azure.net/"
    assert vault.tenant_id == customer.tenant_id
    assert (vault.soft_delete_enabled, vault.soft_delete_retention_days, vault.purge_protection_enabled) == (
        True,
        90,
        True,
    )
    (policy,) = vault.access_policies
    assert policy.object_id == customer.tenant.admin.object_id
    assert {"wrapKey", "unwrapKey", "get", "purge"} <= set(policy.key_permissions)
    assert (await customer.vaults.get_vault("Contoso-Keys")).vault_name == "contoso-keys"
    listed = await customer.vaults.list_vaults(customer.subscription_id)
    assert [v.vault_name for v in listed.vaults] == ["contoso-keys"]


@pytest.mark.parametrize("name", ["ab", "1abc", "a" * 25, "ab--cd", "abc-", "ab_cd", "abc.d"])
async def test_vault_names_follow_azures_rules(customer, name):
    with pytest.raises(InvalidArgument) as caught:
        await customer.vaults.create_vault(name, customer.subscription_id, "rg1", "westeurope")
    assert caught.value.reason is Reason.VAULT_NAME_INVALID


@pytest.mark.parametrize("days", [6, 91, -1])
async def test_retention_is_seven_to_ninety_days(customer, days):
    with pytest.raises(InvalidArgument) as caught:
        await customer.vaults.create_vault(
            "retention", customer.subscription_id, "rg1", "westeurope", retention_days=days
        )
    assert caught.value.reason is Reason.RETENTION_DAYS_INVALID


async def test_names_are_global_and_stay_reserved_while_soft_deleted(customer, operator, channel, kv_channel, clock):
    other = await make_customer(operator, channel, kv_channel, clock, "Fabrikam")
    await customer.vaults.create_vault("shared-name", customer.subscription_id, "rg1", "westeurope")
    with pytest.raises(AlreadyExists) as caught:
        await other.vaults.create_vault("Shared-Name", other.subscription_id, "rg1", "westeurope")
    assert caught.value.reason is Reason.VAULT_NAME_TAKEN
    await customer.vaults.delete_vault("shared-name")
    with pytest.raises(NotFound):
        await customer.vaults.get_vault("shared-name")
    with pytest.raises(AlreadyExists) as caught:
        await other.vaults.create_vault("shared-name", other.subscription_id, "rg1", "westeurope")
    assert caught.value.metadata["deleted"] == "true"
    deleted = await customer.vaults.list_deleted_vaults(customer.subscription_id)
    assert deleted.vaults[0].HasField("purge_time")
    recovered = await customer.vaults.recover_vault("shared-name")
    assert not recovered.HasField("delete_time")


async def test_soft_delete_and_purge_protection_cannot_be_turned_off(customer):
    await customer.vaults.create_vault("flags", customer.subscription_id, "rg1", "westeurope")
    updated = await customer.vaults.update_vault("flags", purge_protection=True)
    assert updated.purge_protection_enabled
    with pytest.raises(FailedPrecondition) as caught:
        await customer.vaults.update_vault("flags", purge_protection=False)
    assert caught.value.reason is Reason.PURGE_PROTECTION_IRREVERSIBLE
    with pytest.raises(FailedPrecondition) as caught:
        await customer.vaults.update_vault("flags", soft_delete=False)
    assert caught.value.reason is Reason.SOFT_DELETE_IRREVERSIBLE


async def test_without_soft_delete_a_delete_is_final(customer):
    await customer.vaults.create_vault("no-soft", customer.subscription_id, "rg1", "westeurope", soft_delete=False)
    await customer.vaults.delete_vault("no-soft")
    with pytest.raises(NotFound):
        await customer.vaults.recover_vault("no-soft")
    await customer.vaults.create_vault("no-soft", customer.subscription_id, "rg1", "westeurope")


async def test_purge_protection_holds_a_deleted_vault_until_its_date(customer, keyvault, clock, operator, kv_channel):
    await customer.vaults.create_vault("protected", customer.subscription_id, "rg1", "westeurope",
                                       retention_days=7, purge_protection=True)  # fmt: skip
    await customer.vaults.delete_vault("protected")
    with pytest.raises(FailedPrecondition) as caught:
        await customer.vaults.purge_vault("protected")
    assert caught.value.reason is Reason.PURGE_PROTECTED
    clock.advance(7 * 86400 + 1)
    await keyvault.purge_due()
    await customer.vaults.create_vault("protected", customer.subscription_id, "rg1", "westeurope")
    records = (await KeyVaultClient(kv_channel, operator.token_for).list_audit(page_size=500)).records
    purges = [(r.operation, r.vault_name, r.client_id) for r in records if r.request_id == "purger"]
    assert purges == [("PurgeDeletedVault", "protected", "keyvault")]


async def test_control_plane_needs_a_role(customer, operator, channel, kv_channel, clock):
    await customer.vaults.create_vault("roles", customer.subscription_id, "rg1", "westeurope")
    bob, _, bob_client = await make_principal(operator, channel, clock, customer.tenant_id, "bob", kind=idres.USER)
    bob_vaults = KeyVaultClient(kv_channel, bob_client.token_for)
    # Without even Reader, the vault is not there for Bob: exactly what a missing one says.
    with pytest.raises(NotFound) as caught:
        await bob_vaults.get_vault("roles")
    with pytest.raises(NotFound) as missing:
        await bob_vaults.get_vault("nothing-here")
    assert (caught.value.reason, missing.value.reason) == (Reason.VAULT_NOT_FOUND, Reason.VAULT_NOT_FOUND)
    assert caught.value.message.replace("roles", "X") == missing.value.message.replace("nothing-here", "X")
    await customer.tenant.admin_client.create_role_assignment(
        bob.object_id, idres.READER, f"/subscriptions/{customer.subscription_id}/resourceGroups/rg1"
    )
    assert (await bob_vaults.get_vault("roles")).vault_name == "roles"
    with pytest.raises(PermissionDenied) as role:  # a Reader sees it, so is told what is missing
        await bob_vaults.delete_vault("roles")
    assert role.value.reason is Reason.ROLE_REQUIRED
    with pytest.raises(PermissionDenied):
        await bob_vaults.create_vault("bobs", customer.subscription_id, "rg1", "westeurope")


async def test_access_policies_use_the_real_names_and_the_vaults_tenant(customer, operator, channel, clock):
    await customer.vaults.create_vault("policies", customer.subscription_id, "rg1", "westeurope")
    app, _, _ = await make_principal(operator, channel, clock, customer.tenant_id, "app")
    vault = await customer.vaults.set_access_policy("policies", customer.tenant_id, app.object_id, ["get", "WRAPKEY"])
    entry = next(p for p in vault.access_policies if p.object_id == app.object_id)
    assert sorted(entry.key_permissions) == ["get", "wrapKey"]
    vault = await customer.vaults.update_access_policy(
        "policies", customer.tenant_id, app.object_id, add=["unwrapKey"], remove=["get"]
    )
    entry = next(p for p in vault.access_policies if p.object_id == app.object_id)
    assert sorted(entry.key_permissions) == ["unwrapKey", "wrapKey"]
    with pytest.raises(InvalidArgument) as caught:
        await customer.vaults.set_access_policy("policies", customer.tenant_id, app.object_id, ["get", "exportKey"])
    assert caught.value.reason is Reason.PERMISSION_UNKNOWN
    other_tenant = (await operator.create_tenant("Elsewhere")).tenant_id
    with pytest.raises(FailedPrecondition) as mismatch:
        await customer.vaults.set_access_policy("policies", other_tenant, app.object_id, ["get"])
    assert mismatch.value.reason is Reason.ACCESS_POLICY_TENANT_MISMATCH
    vault = await customer.vaults.remove_access_policy("policies", app.object_id)
    assert app.object_id not in {p.object_id for p in vault.access_policies}
    with pytest.raises(NotFound):
        await customer.vaults.remove_access_policy("policies", app.object_id)


async def test_concurrent_policy_changes_for_one_principal_all_take_effect(customer, operator, channel, clock):
    """Each add is computed from the entry as it stands when it commits, so none of several
    concurrent changes is lost (each read-modify-write happens inside its unit of work)."""
    await customer.vaults.create_vault("concurrent", customer.subscription_id, "rg", "westeurope")
    app, _, _ = await make_principal(operator, channel, clock, customer.tenant_id, "app")
    await customer.vaults.set_access_policy("concurrent", customer.tenant_id, app.object_id, ["get"])
    wanted = ["wrapKey", "unwrapKey", "encrypt", "decrypt", "sign", "verify"]
    await asyncio.gather(
        *(
            customer.vaults.update_access_policy("concurrent", customer.tenant_id, app.object_id, add=[p])
            for p in wanted
        )
    )
    vault = await customer.vaults.get_vault("concurrent")
    entry = next(p for p in vault.access_policies if p.object_id == app.object_id)
    assert sorted(entry.key_permissions) == sorted(["get", *wanted])


async def test_a_contributor_cannot_grant_itself_the_vaults_keys(customer, operator, channel, clock, kv_channel):
    """Issue 12, finding 5: access policies decide who may unwrap every data key a vault
    wraps, so changing them needs Owner (Azure lets a Contributor do it; we do not)."""
    await customer.vaults.create_vault("kv1", customer.subscription_id, "rg1", "westeurope")
    key = await customer.vaults.create_key("kv1", "cmk")
    wrapped = (await customer.vaults.wrap(key.key_id, b"k" * 32)).ciphertext
    mallory, _, client = await make_principal(operator, channel, clock, customer.tenant_id, "mallory",
                                              kind=idres.USER)  # fmt: skip
    await customer.tenant.admin_client.create_role_assignment(
        mallory.object_id, idres.CONTRIBUTOR, f"/subscriptions/{customer.subscription_id}"
    )
    vaults = KeyVaultClient(kv_channel, client.token_for)
    await vaults.update_vault("kv1", soft_delete=True)  # a Contributor changes the vault itself
    for change in (
        vaults.set_access_policy("kv1", customer.tenant_id, mallory.object_id, ["unwrapKey"]),
        vaults.update_access_policy("kv1", customer.tenant_id, mallory.object_id, add=["unwrapKey"]),
        vaults.remove_access_policy("kv1", customer.tenant.admin.object_id),
    ):
        with pytest.raises(PermissionDenied) as caught:
            await change
        assert caught.value.reason is Reason.ROLE_REQUIRED and "Owner" in caught.value.message
    with pytest.raises(PermissionDenied):
        await vaults.unwrap(key.key_id, wrapped)
    # An Owner grants.
    await customer.vaults.set_access_policy("kv1", customer.tenant_id, mallory.object_id, ["unwrapKey"])
    assert (await vaults.unwrap(key.key_id, wrapped)).plaintext == b"k" * 32
