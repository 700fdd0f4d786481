"""Microsoft's JavaScript management SDKs, unmodified, run by node against a real trio's Azure
Resource Manager door, both ways of naming the hosts (js/arm.mjs): @azure/arm-resources makes
a resource group; @azure/arm-keyvault a vault with purge protection and an access policy;
@azure/keyvault-keys a key; @azure/arm-cognitiveservices a speech account with a
system-assigned identity; the identity's policy added through ARM; encryption set to the key;
the policy removed through ARM and the account's data refused with the cause (checked here,
over gRPC, as the seed's data plane is ours), restored, and back to Microsoft-managed keys;
@azure/arm-authorization grants, lists and removes a role assignment; the group's delete takes
everything with it. The subscription's CMK approval is asked and decided here, outside ARM,
as the seed has it."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cmk_trio.client.speech import SpeechClient
from cmk_trio.proto.speech.v1 import resources_pb2 as spres
from cmk_trio.rpckit.channels import ChannelTls, open_channel
from cmk_trio.rpckit.clock import SystemClock
from cmk_trio.rpckit.devca import DevPki
from cmk_trio.rpckit.reasons import Reason
from tests.identity.helpers import make_principal
from tests.keyvault.doors import WAYS, Doors, open_doors
from tests.speech.cmk_world import CONFIG, refusal
from tests.waiting import eventually
from tests.witness.node_packages import ensure_node_packages
from tests.witness.test_js_sdks import run_witness

pytestmark = [pytest.mark.witness, pytest.mark.timeout(240)]


@pytest.fixture(scope="session")
def node_packages() -> Path:
    return ensure_node_packages()


@pytest.fixture
async def doors(tmp_path: Path) -> AsyncIterator[Doors]:
    async with open_doors(tmp_path) as opened:
        yield opened


@pytest.mark.parametrize("way", WAYS)
async def test_the_seed_through_arm_in_javascript(node_packages: Path, doors: Doors, way: str) -> None:
    contoso = doors.contoso
    trio = doors.running
    assert trio.tls_dir is not None and doors.arm is not None
    pki = DevPki(trio.tls_dir)
    cli = pki.identity("cli")
    channel = open_channel(trio.endpoints["speech"], ChannelTls(pki.ca_file, cli.cert_file, cli.key_file))
    customer = SpeechClient(channel, contoso.admin_client.token_for)
    operator = SpeechClient(channel, doors.operator.token_for)
    grantee, _, _ = await make_principal(doors.operator, doors.identity_channel, SystemClock(), contoso.tenant_id,
                                         "grantee")  # fmt: skip
    vault = f"js-arm-{uuid.uuid4().hex[:10]}"
    account = (f"/subscriptions/{contoso.subscription_id}/resourceGroups/speech-rg/providers"
               "/Microsoft.CognitiveServices/accounts/speech1")  # fmt: skip
    creds = contoso.admin_credentials
    env = {
        "PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/"),
        "AZURE_TENANT_ID": creds.tenant_id, "AZURE_CLIENT_ID": creds.client_id,
        "AZURE_CLIENT_SECRET": creds.client_secret, "AZURE_SUBSCRIPTION_ID": contoso.subscription_id,
        "VAULT_NAME": vault, "ADMIN_OBJECT_ID": contoso.admin.object_id, "GRANTEE_ID": grantee.object_id,
        "NODE_EXTRA_CA_CERTS": str(doors.ca),
    }  # fmt: skip
    if way == "explicit":
        env |= {"CMK_AUTHORITY": doors.authority, "CMK_ARM": doors.arm, "CMK_KEYVAULT_DOOR": doors.door}
    else:
        assert doors.proxy is not None
        env |= {"HTTPS_PROXY": doors.proxy, "NO_PROXY": "127.0.0.1,localhost"}
    written: dict[str, str] = {}

    async def approval() -> None:
        await customer.request_approval(contoso.subscription_id, "BYOK through ARM, in JavaScript")
        await operator.approve(contoso.subscription_id)

    seen_here: dict[str, object] = {}
    """What the test saw over gRPC at each pause (asserted after the script, with its steps)."""

    async def write() -> None:
        status = (await customer.get_resource(account)).encryption
        seen_here["encryption"] = (status.key_source, status.status)
        if status.key_source != spres.CUSTOMER_MANAGED:
            return  # (the script's set-encryption step failed: its error is asserted below)
        app = await customer.create_application(account, "lights", CONFIG)
        written["app"] = app.name
        seen_here["read"] = (await customer.get_application(app.name)).configuration_json

    async def refused() -> None:
        if "app" in written:
            seen_here["refused"] = await eventually(
                lambda: refusal(lambda: customer.get_application(written["app"])), "reads refused"
            )

    async def restored() -> None:
        async def readable() -> str | None:
            return None if await refusal(lambda: customer.get_application(written["app"])) else "read"

        if "app" in written:
            seen_here["restored"] = await eventually(readable, "reads again")

    try:
        seen = await run_witness(node_packages, env, {"approval": approval, "written": write, "refused": refused,
                                                      "restored": restored}, "arm.mjs")  # fmt: skip
    finally:
        await channel.close()
    group = seen.ok("group")
    assert group == {"id": f"/subscriptions/{contoso.subscription_id}/resourceGroups/speech-rg", "name": "speech-rg"}
    assert seen.ok("vault") == {"name": vault, "vaultUri": f"https://{vault}.vault.azure.net/", "purgeProtection": True}
    assert seen.ok("key")["id"].startswith(f"https://{vault}.vault.azure.net/keys/cmk/")
    made = seen.ok("account")
    assert made["id"] == account and made["identity"]["type"] == "SystemAssigned"
    assert made["encryption"]["keySource"] == "Microsoft.CognitiveServices"
    seen.ok("grant identity")
    assert seen.ok("set encryption") == {"keySource": "Microsoft.KeyVault", "keyName": "cmk",
                                         "keyVaultUri": f"https://{vault}.vault.azure.net/"}  # fmt: skip
    # Over gRPC, at the script's pauses: the data under the key, refused once revoked, back once restored.
    assert seen_here == {"encryption": (spres.CUSTOMER_MANAGED, spres.HEALTHY), "read": CONFIG,
                         "refused": Reason.CUSTOMER_KEY_ACCESS_REVOKED, "restored": "read"}  # fmt: skip
    seen.ok("revoke")
    shown = seen.ok("account after revoke")
    assert (shown["keyStatus"], shown["keyInaccessibleReason"]) == ("KeyInaccessible", "CUSTOMER_KEY_ACCESS_REVOKED")
    seen.ok("restore")
    assert seen.ok("microsoft-managed")["keySource"] == "Microsoft.CognitiveServices"
    assert [d["roleName"] for d in seen.ok("role definitions")] == ["Reader"]
    assigned = seen.ok("assign")
    assert (assigned["principalId"], assigned["scope"]) == (grantee.object_id, group["id"])
    assert seen.ok("assignments") == [assigned["name"]]
    assert seen.ok("unassign") == assigned["name"]
    assert seen.ok("accounts") == ["speech1"] and seen.ok("vaults") == [vault]
    seen.ok("delete account")
    seen.ok("delete group")
    assert seen.ok("group exists") is False
    # The group's delete took the vault (soft-deleted, purge protection on).
    deleted = await doors.vaults.list_deleted_vaults(contoso.subscription_id)
    assert vault in [v.vault_name for v in deleted.vaults]
