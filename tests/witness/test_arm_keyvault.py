"""azure-mgmt-keyvault, unmodified, against Azure Resource Manager's door of a real trio, both
ways of naming the hosts: vaults with their access policies, sku and tags, the policy
operations, name availability, soft-delete, recovery and purge. What it makes is the key
vault's own: the data-plane SDK uses the vault, and a policy removed through ARM refuses the
next call there."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient

from tests.keyvault.doors import WAYS, Doors, open_doors

pytestmark = pytest.mark.witness

EVERY_KEY = ["get", "list", "create", "update", "import", "delete", "recover", "backup", "restore", "purge",
             "encrypt", "decrypt", "wrapKey", "unwrapKey", "sign", "verify", "rotate"]  # fmt: skip


@pytest.fixture(params=WAYS)
async def doors(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Doors]:
    async with open_doors(tmp_path) as opened:
        yield opened.use(request.param, monkeypatch)


def _clients(doors: Doors) -> tuple[Any, ResourceManagementClient]:
    """The management clients. (The key vault's operations are typed for its model classes
    only; the tests give ARM's JSON as dicts, which the SDK sends as they are.)"""
    sub = doors.contoso.subscription_id
    return (KeyVaultManagementClient(doors.credential(), sub, **doors.arm_options()),
            ResourceManagementClient(doors.credential(), sub, **doors.arm_options()))  # fmt: skip


def _vault_body(doors: Doors, keys: list[str], **properties: Any) -> dict[str, Any]:
    """A vault as ARM's JSON has it (the SDK sends a dict as it is)."""
    contoso = doors.contoso
    return {
        "location": "westeurope",
        "tags": {"team": "speech"},
        "properties": {
            "tenantId": contoso.tenant_id,
            "sku": {"family": "A", "name": "standard"},
            "accessPolicies": [{"tenantId": contoso.tenant_id, "objectId": contoso.admin.object_id,
                                 "permissions": {"keys": keys, "secrets": ["get", "set"]}}],
            **properties,
        },
    }  # fmt: skip


async def test_a_vault_through_arm_is_the_key_vaults_own(doors: Doors) -> None:
    kv, rm = _clients(doors)
    name = f"{doors.vault}-a"
    await asyncio.to_thread(rm.resource_groups.create_or_update, "keys-rg", {"location": "westeurope"})
    made = await asyncio.to_thread(lambda: kv.vaults.begin_create_or_update(
        "keys-rg", name, _vault_body(doors, EVERY_KEY, enablePurgeProtection=True,
                                     softDeleteRetentionInDays=7)).result())  # fmt: skip
    assert (made.name, made.location, made.tags) == (name, "westeurope", {"team": "speech"})
    props = made.properties
    assert props.vault_uri == f"https://{name}.vault.azure.net/"
    assert (props.enable_soft_delete, props.enable_purge_protection, props.soft_delete_retention_in_days) == (
        True, True, 7
    )  # fmt: skip
    assert [(p.object_id, sorted(p.permissions.secrets)) for p in props.access_policies] == [
        (doors.contoso.admin.object_id, ["get", "set"])
    ]
    # The same vault over gRPC, with the sku and tags ARM gave it.
    grpc_view = await doors.vaults.get_vault(name)
    assert (grpc_view.sku, dict(grpc_view.tags), grpc_view.resource_group) == (
        "standard",
        {"team": "speech"},
        "keys-rg",
    )

    got = await asyncio.to_thread(kv.vaults.get, "keys-rg", name)
    assert got.id == grpc_view.resource_id
    in_group = await asyncio.to_thread(lambda: [v.name for v in kv.vaults.list_by_resource_group("keys-rg")])
    in_subscription = await asyncio.to_thread(lambda: [v.name for v in kv.vaults.list_by_subscription()])
    listed = await asyncio.to_thread(lambda: [r.name for r in kv.vaults.list()])
    assert name in in_group and name in in_subscription and name in listed

    # The data plane uses it at once, by the policy ARM wrote.
    keys = dataclasses.replace(doors, vault=name).key_client()
    key = await asyncio.to_thread(keys.create_rsa_key, "cmk", size=2048)
    assert key.id is not None and key.id.startswith(f"https://{name}.vault.azure.net/keys/cmk/")

    # accessPolicies/remove through ARM: the next data-plane call is refused with Key Vault's 403.
    entry = {"tenantId": doors.contoso.tenant_id, "objectId": doors.contoso.admin.object_id,
             "permissions": {"keys": ["get"]}}  # fmt: skip
    await asyncio.to_thread(kv.vaults.update_access_policy, "keys-rg", name, "remove",
                            {"properties": {"accessPolicies": [entry]}})  # fmt: skip
    with pytest.raises(HttpResponseError) as refused:
        await asyncio.to_thread(keys.get_key, "cmk")
    assert refused.value.status_code == 403
    await asyncio.to_thread(kv.vaults.update_access_policy, "keys-rg", name, "add",
                            {"properties": {"accessPolicies": [entry]}})  # fmt: skip
    assert (await asyncio.to_thread(keys.get_key, "cmk")).name == "cmk"

    # A PUT of the vault again replaces its properties: tags, and the whole policy list.
    body = _vault_body(doors, ["get", "list"], enablePurgeProtection=True, softDeleteRetentionInDays=7)
    body["tags"] = {"team": "voice"}
    again = await asyncio.to_thread(lambda: kv.vaults.begin_create_or_update("keys-rg", name, body).result())
    assert again.tags == {"team": "voice"}
    assert [sorted(p.permissions["keys"]) for p in again.properties.access_policies] == [["get", "list"]]
    patched = await asyncio.to_thread(kv.vaults.update, "keys-rg", name, {"tags": {"team": "keys"}})
    assert patched.tags == {"team": "keys"}
    # Purge protection, once on, stays on (the service's refusal, in ARM's shape).
    with pytest.raises(HttpResponseError) as stays:
        await asyncio.to_thread(kv.vaults.update, "keys-rg", name,
                                {"properties": {"enablePurgeProtection": False}})  # fmt: skip
    assert stays.value.status_code == 400

    taken = await asyncio.to_thread(kv.vaults.check_name_availability,
                                    {"name": name, "type": "Microsoft.KeyVault/vaults"})  # fmt: skip
    assert (taken.name_available, taken.reason) == (False, "AlreadyExists")
    free = await asyncio.to_thread(kv.vaults.check_name_availability,
                                   {"name": f"{doors.vault}-free", "type": "Microsoft.KeyVault/vaults"})  # fmt: skip
    assert free.name_available is True


async def test_deleted_vaults_are_recovered_and_purged(doors: Doors) -> None:
    kv, rm = _clients(doors)
    await asyncio.to_thread(rm.resource_groups.create_or_update, "scratch-rg", {"location": "westeurope"})
    name = f"{doors.vault}-d"
    await asyncio.to_thread(lambda: kv.vaults.begin_create_or_update(
        "scratch-rg", name, _vault_body(doors, ["get"], softDeleteRetentionInDays=7)).result())  # fmt: skip
    await asyncio.to_thread(kv.vaults.delete, "scratch-rg", name)
    with pytest.raises(ResourceNotFoundError):
        await asyncio.to_thread(kv.vaults.get, "scratch-rg", name)
    deleted = await asyncio.to_thread(kv.vaults.get_deleted, name, "westeurope")
    assert deleted.properties.vault_id.endswith(f"/vaults/{name}")
    assert deleted.properties.scheduled_purge_date > deleted.properties.deletion_date
    assert name in await asyncio.to_thread(lambda: [v.name for v in kv.vaults.list_deleted()])
    # createMode recover brings it back, with its policies.
    recovered = await asyncio.to_thread(lambda: kv.vaults.begin_create_or_update(
        "scratch-rg", name, {"location": "westeurope", "properties": {
            "tenantId": doors.contoso.tenant_id, "sku": {"family": "A", "name": "standard"},
            "createMode": "recover"}}).result())  # fmt: skip
    assert [p.object_id for p in recovered.properties.access_policies] == [doors.contoso.admin.object_id]
    await asyncio.to_thread(kv.vaults.delete, "scratch-rg", name)
    await asyncio.to_thread(lambda: kv.vaults.begin_purge_deleted(name, "westeurope").result())
    with pytest.raises(ResourceNotFoundError):
        await asyncio.to_thread(kv.vaults.get_deleted, name, "westeurope")
    assert (await asyncio.to_thread(kv.vaults.check_name_availability,
                                    {"name": name, "type": "Microsoft.KeyVault/vaults"})).name_available  # fmt: skip


async def test_arm_refuses_what_the_rules_refuse(doors: Doors) -> None:
    kv, rm = _clients(doors)
    name = f"{doors.vault}-r"
    # No such group: ARM's answer, and no vault.
    with pytest.raises(HttpResponseError) as no_group:
        await asyncio.to_thread(lambda: kv.vaults.begin_create_or_update(
            "no-such-rg", name, _vault_body(doors, ["get"])).result())  # fmt: skip
    assert no_group.value.status_code == 404 and no_group.value.error is not None
    assert no_group.value.error.code == "ResourceGroupNotFound"
    await asyncio.to_thread(rm.resource_groups.create_or_update, "rules-rg", {"location": "westeurope"})
    for properties, status in (
        ({"accessPolicies": [{"tenantId": doors.contoso.tenant_id, "objectId": doors.contoso.admin.object_id,
                               "permissions": {"keys": ["exportKey"]}}]}, 400),
        ({"enableRbacAuthorization": True}, 400),
        ({"tenantId": "00000000-0000-0000-0000-000000000001"}, 400),
    ):  # fmt: skip
        body = _vault_body(doors, ["get"])
        body["properties"] |= properties
        with pytest.raises(HttpResponseError) as refused:
            await asyncio.to_thread(kv.vaults.begin_create_or_update, "rules-rg", name, body)  # (its first request)
        assert refused.value.status_code == status, properties
    assert not await asyncio.to_thread(lambda: list(kv.vaults.list_by_resource_group("rules-rg")))
