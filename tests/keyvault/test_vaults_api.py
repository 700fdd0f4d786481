"""Vaults and access policies over the wire, against real identity and key vault servers."""

from __future__ import annotations

import asyncio

import pytest

from cmk_trio.client.keyvault import KeyVaultClient
from cmk_trio.proto.identity.v1 import resources_pb2 as idres
from cmk_trio.proto.keyvault.v1 import keyvault_service_pb2 as kvpb
from cmk_trio.proto.keyvault.v1 import resources_pb2 as kvres
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


def _entry(tenant_id: str, object_id: str, keys: list[str], secrets: list[str] = []) -> kvres.AccessPolicy:  # noqa: B006
    return kvres.AccessPolicy(tenant_id=tenant_id, object_id=object_id, key_permissions=keys,
                              secret_permissions=secrets)  # fmt: skip


async def test_a_vault_made_with_its_whole_policy_list_sku_and_tags(customer, operator, channel, clock):
    """Azure Resource Manager's create: the access policies are the list given (the creator
    has none unless listed; an empty list is a vault nobody's keys reach yet)."""
    tid = customer.tenant_id
    app, _, _ = await make_principal(operator, channel, clock, tid, "app")
    made = await customer.vaults.create_vault(
        "listed", customer.subscription_id, "rg1", "westeurope", sku="Premium", tags={"env": "test"},
        access_policies=[_entry(tid, app.object_id, ["get", "wrapKey", "unwrapKey"], ["get"])],
    )  # fmt: skip
    assert (made.sku, dict(made.tags)) == ("premium", {"env": "test"})
    (entry,) = made.access_policies
    assert (entry.object_id, sorted(entry.key_permissions), list(entry.secret_permissions)) == (
        app.object_id, ["get", "unwrapKey", "wrapKey"], ["get"]
    )  # fmt: skip
    empty = await customer.vaults.create_vault("nobody", customer.subscription_id, "rg1", "westeurope",
                                               access_policies=[])  # fmt: skip
    assert (empty.sku, list(empty.access_policies)) == ("standard", [])
    updated = await customer.vaults.update_vault("listed", sku="standard", tags={"env": "prod", "team": "a"})
    assert (updated.sku, dict(updated.tags)) == ("standard", {"env": "prod", "team": "a"})
    again = await customer.vaults.get_vault("listed")
    assert (again.sku, dict(again.tags)) == ("standard", {"env": "prod", "team": "a"})


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"sku": "gold"}, Reason.FIELD_INVALID),
        ({"tags": {f"t{i}": "v" for i in range(51)}}, Reason.TAGS_INVALID),
        ({"tags": {"a/b": "v"}}, Reason.TAGS_INVALID),
        ({"policies": [("tenant", "object", ["get"])]}, Reason.UUID_MALFORMED),
        ({"policies": [("tenant", "self", ["exportKey"])]}, Reason.PERMISSION_UNKNOWN),
        ({"policies": [("tenant", "self", ["get"]), ("tenant", "self", ["list"])]}, Reason.FIELD_INVALID),
        ({"policies": [("other", "self", ["get"])]}, Reason.ACCESS_POLICY_TENANT_MISMATCH),
        ({"tenant_id": "other"}, Reason.FIELD_INVALID),
    ],
)
async def test_a_refused_create_makes_nothing(customer, operator, change, reason):
    tid, me = customer.tenant_id, customer.tenant.admin.object_id
    other = (await operator.create_tenant("Elsewhere")).tenant_id
    names = {"tenant": tid, "self": me, "other": other, "object": "not-a-uuid"}
    policies = None
    if "policies" in change:
        policies = [_entry(names.get(t, t), names.get(o, o), keys) for t, o, keys in change["policies"]]
    tenant_id = names.get(change.get("tenant_id", ""), "")
    vault = kvres.Vault(vault_name="refused", subscription_id=customer.subscription_id, resource_group="rg1",
                        location="westeurope", sku=change.get("sku", ""), tags=change.get("tags", {}),
                        tenant_id=tenant_id, access_policies=policies or [])  # fmt: skip
    request = kvpb.CreateVaultRequest(vault=vault, explicit_access_policies=policies is not None)
    with pytest.raises((InvalidArgument, FailedPrecondition)) as caught:  # (the raw request: it names a tenant)
        await customer.vaults._mgmt(customer.vaults.vaults.CreateVault, request)
    assert caught.value.reason is reason
    assert (await customer.vaults.check_vault_name("refused")).name_available


async def test_replacing_the_whole_policy_list_is_all_or_nothing(customer, operator, channel, clock, kv_channel):
    tid = customer.tenant_id
    await customer.vaults.create_vault("replaced", customer.subscription_id, "rg1", "westeurope")
    me = customer.tenant.admin.object_id
    app, _, _ = await make_principal(operator, channel, clock, tid, "app")
    before = await customer.vaults.get_vault("replaced")
    with pytest.raises(InvalidArgument) as caught:  # the second entry is refused: the first is not applied either
        await customer.vaults.replace_access_policies("replaced", [_entry(tid, app.object_id, ["get"]),
                                                                   _entry(tid, me, ["get", "exportKey"])])  # fmt: skip
    assert caught.value.reason is Reason.PERMISSION_UNKNOWN
    assert list((await customer.vaults.get_vault("replaced")).access_policies) == list(before.access_policies)
    after = await customer.vaults.replace_access_policies("replaced", [_entry(tid, app.object_id, ["get", "list"])])
    assert [(p.object_id, sorted(p.key_permissions)) for p in after.access_policies] == [
        (app.object_id, ["get", "list"])
    ]
    # The creator's entry went with the replace: its data-plane calls are refused at once.
    with pytest.raises(PermissionDenied):
        await customer.vaults.create_key("replaced", "k1")
    # A Contributor may not replace them (Owner, as for every policy change).
    bob, _, bob_client = await make_principal(operator, channel, clock, tid, "bob", kind=idres.USER)
    await customer.tenant.admin_client.create_role_assignment(
        bob.object_id, idres.CONTRIBUTOR, f"/subscriptions/{customer.subscription_id}"
    )
    with pytest.raises(PermissionDenied) as denied:
        await KeyVaultClient(kv_channel, bob_client.token_for).replace_access_policies("replaced", [])
    assert denied.value.reason is Reason.ROLE_REQUIRED


async def test_name_availability_says_what_create_would(customer, operator, channel, kv_channel, clock):
    other = await make_customer(operator, channel, kv_channel, clock, "Fabrikam")
    await customer.vaults.create_vault("taken-name", customer.subscription_id, "rg1", "westeurope")
    for asking in (customer.vaults, other.vaults):
        taken = await asking.check_vault_name("Taken-Name")
        assert (taken.name_available, taken.reason) == (False, "VAULT_NAME_TAKEN")
    await customer.vaults.delete_vault("taken-name")
    held = await other.vaults.check_vault_name("taken-name")
    assert (held.name_available, held.reason) == (False, "VAULT_NAME_TAKEN") and "soft-deleted" in held.message
    bad = await other.vaults.check_vault_name("no_underscores")
    assert (bad.name_available, bad.reason) == (False, "VAULT_NAME_INVALID")
    free = await other.vaults.check_vault_name("free-name")
    assert (free.name_available, free.reason, free.message) == (True, "", "")


@pytest.mark.parametrize("name", ["nul\x00name", "\x00"])
async def test_a_name_asked_about_with_nul_is_an_answer_on_either_engine(customer, name):
    """The call's audit record looked up the vault of the name asked about, which PostgreSQL
    refused for a name with NUL (found by CI's fuzzer): the answer is that no vault can have it."""
    answer = await customer.vaults.check_vault_name(name)
    assert (answer.name_available, answer.reason) == (False, "VAULT_NAME_INVALID")
