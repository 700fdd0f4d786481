"""Microsoft's Python SDKs (azure-identity, azure-keyvault-keys, azure-keyvault-secrets), run
from the host against a compose stack, both ways of naming the hosts: explicit endpoints (the
published doors, with cmk_trio.client.azure's transport) and Azure's defaults untouched
through the published CONNECT proxy (HTTPS_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE). The walk is
the Python witness's (tests/keyvault/doors.py `walk`): sign in, a key made, a data key wrapped
locally and unwrapped by the vault, a secret set and read, and the revocation scenario; then
Azure Resource Manager's door with azure-mgmt-resource: a resource group made through it, seen
over gRPC, and deleted."""

from __future__ import annotations

import asyncio
import time

import pytest
from azure.mgmt.resource.resources import ResourceManagementClient

from tests.containers.stack import Stack
from tests.keyvault.doors import WAYS, Doors, assert_walked, walk


async def witness_the_sdks(stack: Stack, *, replica: int = 1) -> float:
    """Both ways, each with a tenant and vault of its own; the seconds it took."""
    started = time.monotonic()
    await stack.wait_proxy_serving()
    for way in WAYS:
        with pytest.MonkeyPatch.context() as env:
            async with stack.open_doors(replica) as doors:
                doors.use(way, env)
                assert_walked(doors, await walk(doors))
                await walk_arm(doors)
    return round(time.monotonic() - started, 1)


async def walk_arm(doors: Doors) -> None:
    """A resource group through Azure Resource Manager's door, the same group over gRPC."""
    groups = ResourceManagementClient(doors.credential(), doors.contoso.subscription_id, **doors.arm_options())
    made = await asyncio.to_thread(groups.resource_groups.create_or_update, f"walk-{doors.way}",
                                   {"location": "westeurope", "tags": {"way": doors.way}})  # fmt: skip
    assert made.id == f"/subscriptions/{doors.contoso.subscription_id}/resourceGroups/walk-{doors.way}"
    seen = await doors.operator.get_resource_group(doors.contoso.subscription_id, f"walk-{doors.way}")
    assert dict(seen.tags) == {"way": doors.way}
    await asyncio.to_thread(lambda: groups.resource_groups.begin_delete(f"walk-{doors.way}").result())
    assert not await asyncio.to_thread(groups.resource_groups.check_existence, f"walk-{doors.way}")
