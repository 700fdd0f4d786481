"""A tenant whose administrator owns a subscription, with a client of the key vault (the
key vault server itself is a shared fixture)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest

from cmk_trio.client.channel import open_channel
from cmk_trio.client.identity import IdentityClient
from cmk_trio.client.keyvault import KeyVaultClient
from cmk_trio.keyvault.server import KeyVaultServer
from cmk_trio.proto.identity.v1 import resources_pb2 as idres
from cmk_trio.rpckit.clock import FakeClock
from tests.conftest import platform_credentials  # noqa: F401 (re-exported for older imports)
from tests.identity.helpers import TenantFixture, make_tenant


@dataclass
class Customer:
    """A tenant with an administrator who owns its subscription, and clients for both services."""

    tenant: TenantFixture
    vaults: KeyVaultClient

    @property
    def tenant_id(self) -> str:
        return self.tenant.tenant_id

    @property
    def subscription_id(self) -> str:
        return self.tenant.subscription_id


@pytest.fixture
async def kv_channel(keyvault: KeyVaultServer) -> AsyncIterator[grpc.aio.Channel]:
    ch = open_channel(keyvault.endpoint)
    try:
        yield ch
    finally:
        await ch.close()


async def make_customer(
    operator: IdentityClient, channel: grpc.aio.Channel, kv_channel: grpc.aio.Channel, clock: FakeClock, name: str
) -> Customer:
    tenant = await make_tenant(operator, channel, clock, name)
    await operator.create_role_assignment(
        tenant.admin.object_id, idres.OWNER, f"/subscriptions/{tenant.subscription_id}"
    )
    return Customer(tenant, KeyVaultClient(kv_channel, tenant.admin_client.token_for))


@pytest.fixture
async def customer(operator, channel, kv_channel, clock) -> Customer:
    return await make_customer(operator, channel, kv_channel, clock, "Contoso")
