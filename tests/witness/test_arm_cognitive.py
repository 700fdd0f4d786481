"""The seed's flow through Azure Resource Manager with Microsoft's management SDKs,
unmodified, both ways of naming the hosts: a resource group; a vault with purge protection and
an access policy (azure-mgmt-keyvault); a key (azure-keyvault-keys); a speech account with a
system-assigned identity (azure-mgmt-cognitiveservices); a policy for the account's identity;
the subscription's CMK approval (outside ARM, over gRPC, as the seed has it); encryption set to
the key; data written and read (the speech data plane, over gRPC); the policy removed through
ARM and the data refused with the cause, which the account shows; restored; and back to
Microsoft-managed keys."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.cognitiveservices import CognitiveServicesManagementClient
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient

from cmk_trio.client.speech import SpeechClient
from cmk_trio.rpckit.channels import ChannelTls, open_channel
from cmk_trio.rpckit.devca import DevPki
from cmk_trio.rpckit.reasons import Reason
from tests.keyvault.doors import WAYS, Doors, open_doors
from tests.speech.cmk_world import CONFIG, refusal
from tests.waiting import eventually

pytestmark = pytest.mark.witness

ACCOUNT = {"kind": "SpeechServices", "sku": {"name": "S0"}, "location": "westeurope",
           "identity": {"type": "SystemAssigned"}, "properties": {}}  # fmt: skip


@pytest.fixture(params=WAYS)
async def doors(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Doors]:
    async with open_doors(tmp_path) as opened:
        yield opened.use(request.param, monkeypatch)


@pytest.fixture
async def speech(doors: Doors) -> AsyncIterator[tuple[SpeechClient, SpeechClient]]:
    """Speech's gRPC API for Contoso's administrator and for the operator (approvals)."""
    trio = doors.running
    assert trio.tls_dir is not None
    pki = DevPki(trio.tls_dir)
    cli = pki.identity("cli")
    channel = open_channel(trio.endpoints["speech"], ChannelTls(pki.ca_file, cli.cert_file, cli.key_file))
    try:
        yield (
            SpeechClient(channel, doors.contoso.admin_client.token_for),
            SpeechClient(channel, doors.operator.token_for),
        )
    finally:
        await channel.close()


def _clients(doors: Doors) -> tuple[Any, Any, ResourceManagementClient]:
    """The management clients (the key vault's and Cognitive Services' operations are typed
    for their model classes only; the tests give ARM's JSON as dicts, which they send as is)."""
    sub, options = doors.contoso.subscription_id, doors.arm_options()
    return (CognitiveServicesManagementClient(doors.credential(), sub, **options),
            KeyVaultManagementClient(doors.credential(), sub, **options),
            ResourceManagementClient(doors.credential(), sub, **options))  # fmt: skip


def _policy(doors: Doors, object_id: str, keys: list[str]) -> dict[str, Any]:
    return {"properties": {"accessPolicies": [{"tenantId": doors.contoso.tenant_id, "objectId": object_id,
                                               "permissions": {"keys": keys}}]}}  # fmt: skip


async def test_the_seed_through_azure_resource_manager(doors: Doors, speech: tuple[SpeechClient, SpeechClient]) -> None:
    customer, operator = speech
    contoso = doors.contoso
    cs, kv, rm = _clients(doors)
    await asyncio.to_thread(rm.resource_groups.create_or_update, "speech-rg", {"location": "westeurope"})
    vault = f"{doors.vault}-s"
    await asyncio.to_thread(lambda: kv.vaults.begin_create_or_update("speech-rg", vault, {
        "location": "westeurope", "properties": {
            "tenantId": contoso.tenant_id, "sku": {"family": "A", "name": "standard"},
            "enablePurgeProtection": True, "softDeleteRetentionInDays": 7,
            "accessPolicies": [{"tenantId": contoso.tenant_id, "objectId": contoso.admin.object_id,
                                "permissions": {"keys": ["get", "create", "wrapKey"]}}]}}).result())  # fmt: skip
    key = await asyncio.to_thread(dataclasses.replace(doors, vault=vault).key_client().create_rsa_key, "cmk", size=2048)
    assert key.id is not None

    cmk = {"properties": {"encryption": {"keySource": "Microsoft.KeyVault", "keyVaultProperties": {
        "keyVaultUri": f"https://{vault}.vault.azure.net/", "keyName": "cmk"}}}}  # fmt: skip
    # The seed's approval, asked and decided outside ARM (over gRPC): without it, CMK is refused;
    # and an account made before it is not eligible even after it.
    await asyncio.to_thread(lambda: cs.accounts.begin_create("speech-rg", "early", ACCOUNT).result())
    with pytest.raises(HttpResponseError) as unapproved:
        await asyncio.to_thread(cs.accounts.begin_update, "speech-rg", "early", cmk)
    assert unapproved.value.status_code == 400 and _reason(unapproved.value) == "CMK_NOT_APPROVED"
    await customer.request_approval(contoso.subscription_id, "BYOK through ARM")
    await operator.approve(contoso.subscription_id)
    with pytest.raises(HttpResponseError) as too_early:
        await asyncio.to_thread(cs.accounts.begin_update, "speech-rg", "early", cmk)
    assert _reason(too_early.value) == "CMK_APPROVED_AFTER_CREATION"

    made = await asyncio.to_thread(lambda: cs.accounts.begin_create("speech-rg", "speech1", ACCOUNT).result())
    assert (made.kind, made.sku.name, made.location) == ("SpeechServices", "S0", "westeurope")
    assert made.identity.type == "SystemAssigned" and made.identity.tenant_id == contoso.tenant_id
    assert made.properties.encryption.key_source == "Microsoft.CognitiveServices"
    identity = made.identity.principal_id
    await asyncio.to_thread(kv.vaults.update_access_policy, "speech-rg", vault, "add",
                            _policy(doors, identity, ["get", "wrapKey", "unwrapKey"]))  # fmt: skip
    elsewhere = {"properties": {"encryption": {"keySource": "Microsoft.KeyVault", "keyVaultProperties": {
        "keyVaultUri": f"https://{vault}.vault.example.com/", "keyName": "cmk"}}}}  # fmt: skip
    with pytest.raises(HttpResponseError) as not_ours:  # a vault of another cloud's name is not this vault
        await asyncio.to_thread(cs.accounts.begin_update, "speech-rg", "speech1", elsewhere)
    assert _reason(not_ours.value) == "KEY_URI_MALFORMED"
    updated = await asyncio.to_thread(lambda: cs.accounts.begin_update("speech-rg", "speech1", cmk).result())
    encryption = updated.properties.encryption
    assert encryption.key_source == "Microsoft.KeyVault"
    assert (encryption.key_vault_properties.key_name, encryption.key_vault_properties.key_vault_uri) == (
        "cmk", f"https://{vault}.vault.azure.net/"
    )  # fmt: skip
    assert encryption.additional_properties["keyStatus"] == "Healthy"

    # Data written and read under the customer's key (the speech data plane, over gRPC).
    app = await customer.create_application(made.id, "lights", CONFIG)
    assert (await customer.get_application(app.name)).configuration_json == CONFIG

    # The policy removed through ARM: the data is refused with the cause, and the account says so.
    await asyncio.to_thread(kv.vaults.update_access_policy, "speech-rg", vault, "remove",
                            _policy(doors, identity, ["get", "wrapKey", "unwrapKey"]))  # fmt: skip
    refused = await eventually(lambda: refusal(lambda: customer.get_application(app.name)), "reads refused")
    assert refused is Reason.CUSTOMER_KEY_ACCESS_REVOKED
    shown = await asyncio.to_thread(cs.accounts.get, "speech-rg", "speech1")
    assert shown.properties.encryption.additional_properties["keyStatus"] == "KeyInaccessible"
    assert shown.properties.encryption.additional_properties["keyInaccessibleReason"] == "CUSTOMER_KEY_ACCESS_REVOKED"
    # Restored: readable again.
    await asyncio.to_thread(kv.vaults.update_access_policy, "speech-rg", vault, "add",
                            _policy(doors, identity, ["get", "wrapKey", "unwrapKey"]))  # fmt: skip
    assert (await eventually(lambda: _readable(customer, app.name), "reads again")) == CONFIG

    # Back to Microsoft-managed keys; the data stays readable.
    back = await asyncio.to_thread(lambda: cs.accounts.begin_update("speech-rg", "speech1", {
        "properties": {"encryption": {"keySource": "Microsoft.CognitiveServices"}}}).result())  # fmt: skip
    assert back.properties.encryption.key_source == "Microsoft.CognitiveServices"
    assert (await customer.get_application(app.name)).configuration_json == CONFIG
    listed = await asyncio.to_thread(lambda: [a.name for a in cs.accounts.list_by_resource_group("speech-rg")])
    assert listed == ["early", "speech1"]
    for name in listed:
        poller = await asyncio.to_thread(cs.accounts.begin_delete, "speech-rg", name)
        await asyncio.to_thread(poller.result)
    assert await asyncio.to_thread(lambda: list(cs.accounts.list())) == []


def _reason(refused: HttpResponseError) -> str:
    """Our stable reason, from ARM's error body's additionalInfo."""
    assert refused.response is not None
    body = json.loads(refused.response.text())
    (info,) = [i for i in body["error"]["additionalInfo"] if i["type"] == "CmkTrioReason"]
    return str(info["info"]["reason"])


async def _readable(client: SpeechClient, name: str) -> str | None:
    try:
        return (await client.get_application(name)).configuration_json
    except Exception:
        return None


async def test_an_account_is_made_with_microsoft_managed_keys_only(doors: Doors) -> None:
    cs, _, rm = _clients(doors)
    await asyncio.to_thread(rm.resource_groups.create_or_update, "rules-rg", {"location": "westeurope"})
    at_creation = dict(ACCOUNT, properties={"encryption": {"keySource": "Microsoft.KeyVault", "keyVaultProperties": {
        "keyVaultUri": f"https://{doors.vault}.vault.azure.net/", "keyName": "cmk"}}})  # fmt: skip
    with pytest.raises(HttpResponseError) as refused:
        await asyncio.to_thread(cs.accounts.begin_create, "rules-rg", "speech2", at_creation)
    assert refused.value.status_code == 400
    for body in (dict(ACCOUNT, kind="TextAnalytics"), dict(ACCOUNT, sku={"name": "S9"}),
                 dict(ACCOUNT, identity={"type": "UserAssigned"})):  # fmt: skip
        with pytest.raises(HttpResponseError) as wrong:
            await asyncio.to_thread(cs.accounts.begin_create, "rules-rg", "speech2", body)
        assert wrong.value.status_code == 400
    assert await asyncio.to_thread(lambda: list(cs.accounts.list_by_resource_group("rules-rg"))) == []
