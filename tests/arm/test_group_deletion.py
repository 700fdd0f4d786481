"""A resource group's deletion as ARM's long-running operation (services/arm/.../group_deletion.py):
on ARM doors of the test's own over the doors' trio, with no time to finish synchronously, so
that every deletion is answered 202 and polled.

- azure-mgmt-resource's poller reads the 202, its Location and Retry-After, and polls to the end;
- a door that stops mid-deletion (its task cancelled, as a replica dies) leaves the group there,
  and a poll at another door takes it up again with the poller's token and finishes it;
- a group made again under the deleted one's name is another group: the old operation is done,
  and its poll never touches the new group;
- an operation token that is not one, or another subscription's, is OperationNotFound.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from azure.mgmt.resource.resources import ResourceManagementClient

from cmk_trio.arm.resources import Cloud
from cmk_trio.arm.server import RunningArm, start_arm
from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.channels import ChannelTls
from cmk_trio.rpckit.config import TlsConfig
from cmk_trio.rpckit.devca import DevPki
from cmk_trio.rpckit.errors import NotFound
from tests.keyvault.doors import Doors, open_doors
from tests.waiting import eventually

RG = "api-version=2025-04-01"


@pytest.fixture
async def doors(tmp_path: Path) -> AsyncIterator[Doors]:
    async with open_doors(tmp_path) as opened:
        yield opened


async def _door(doors: Doors, sync_seconds: float = 0.0) -> RunningArm:
    trio = doors.running
    assert trio.tls_dir is not None
    pki = DevPki(trio.tls_dir)
    arm = pki.identity("arm")
    return await start_arm(
        host="127.0.0.1", port=0, tls=TlsConfig(cert_file=arm.cert_file, key_file=arm.key_file),
        endpoints=trio.endpoints, channel_tls=ChannelTls(pki.ca_file, arm.cert_file, arm.key_file),
        cloud=Cloud("Test", doors.authority, "vault.azure.net"), sync_seconds=sync_seconds,
    )  # fmt: skip


async def _group_with_a_vault(doors: Doors, name: str) -> str:
    sub = doors.contoso.subscription_id
    await doors.contoso.admin_client.create_resource_group(sub, name, "westeurope")
    await doors.vaults.create_vault(f"{name}-v", sub, name, "westeurope", retention_days=7)
    return f"/subscriptions/{sub}/resourceGroups/{name}"


async def _gone(doors: Doors, name: str) -> bool:
    try:
        await doors.operator.get_resource_group(doors.contoso.subscription_id, name)
    except NotFound:
        return True
    return False


async def test_the_sdks_poller_follows_a_deletion_to_its_end(doors: Doors) -> None:
    arm = await _door(doors)
    try:
        await _group_with_a_vault(doors, "lro")
        client = ResourceManagementClient(doors.credential(), doors.contoso.subscription_id, base_url=arm.url,
                                          connection_verify=str(doors.ca),
                                          credential_scopes=["https://management.azure.com/.default"])  # fmt: skip
        poller = await asyncio.to_thread(client.resource_groups.begin_delete, "lro")
        await asyncio.to_thread(poller.result, 60)
        assert poller.status() == "Succeeded"
        assert await _gone(doors, "lro")
        assert not [v for v in (await doors.vaults.list_vaults(doors.contoso.subscription_id)).vaults
                    if v.vault_name == "lro-v"]  # fmt: skip
    finally:
        await arm.stop()


async def test_a_poll_at_another_door_finishes_what_a_stopped_door_began(doors: Doors) -> None:
    first, second = await _door(doors), await _door(doors)
    trust = ssl.create_default_context(cafile=str(doors.ca))
    token = await doors.contoso.admin_client.token_for(audiences.MANAGEMENT)
    headers = {"Authorization": f"Bearer {token}"}
    try:
        group = await _group_with_a_vault(doors, "handoff")
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trust), headers=headers) as session:
            async with session.delete(f"{first.url}{group}?{RG}") as r:
                assert r.status == 202 and r.headers["Retry-After"] == "1"
                location = r.headers["Location"]
            await first.stop()  # its deletion, if still running, is cancelled with it
            polled = location.replace(first.url, second.url)
            statuses = []

            async def done() -> bool | None:
                async with session.get(polled) as r:
                    statuses.append(r.status)
                    return True if r.status == 200 else None

            await eventually(done, "the poll says done")
            assert set(statuses) <= {200, 202}
            assert await _gone(doors, "handoff"), statuses

            # Made again under the same name: another group, which the old operation's poll leaves alone.
            await doors.contoso.admin_client.create_resource_group(doors.contoso.subscription_id, "handoff",
                                                                   "westeurope")  # fmt: skip
            async with session.get(polled) as r:
                assert r.status == 200
            assert not await _gone(doors, "handoff")

            # Tokens that are not an operation of this subscription.
            forged = base64.urlsafe_b64encode(json.dumps({"group": "/subscriptions/x/resourceGroups/y",
                                                          "created": 1}).encode()).decode()  # fmt: skip
            for token_ in ("nothing", forged):
                url = f"{second.url}/subscriptions/{doors.contoso.subscription_id}/operationresults/{token_}?{RG}"
                async with session.get(url) as r:
                    assert r.status == 404 and (await r.json())["error"]["code"] == "OperationNotFound"
    finally:
        await first.stop()
        await second.stop()
