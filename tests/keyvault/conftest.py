"""A real key vault service, wired to the real identity service of the shared fixtures, and
a tenant whose administrator owns a subscription."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cmk.identity.v1 import resources_pb2 as idres

from services.client.channel import open_channel
from services.client.identity import IdentityClient
from services.client.keyvault import KeyVaultClient
from services.identity.server import IdentityServer
from services.keyvault.config import KeyVaultConfig, PlatformCredentials
from services.keyvault.server import KeyVaultServer, build_server
from services.rpckit.clock import FakeClock
from tests.identity.helpers import TenantFixture, make_principal, make_tenant


async def platform_credentials(
    operator: IdentityClient, channel: grpc.aio.Channel, clock: FakeClock, name: str
) -> PlatformCredentials:
    platform_tid = next(t.tenant_id for t in (await operator.list_tenants()).tenants if t.platform)
    _, creds, _ = await make_principal(operator, channel, clock, platform_tid, name, platform_service=name)
    return PlatformCredentials(creds.tenant_id, creds.client_id, creds.client_secret)


@pytest.fixture
async def keyvault(
    tmp_path: Path, identity: IdentityServer, operator: IdentityClient, channel: grpc.aio.Channel, clock: FakeClock
) -> AsyncIterator[KeyVaultServer]:
    config = KeyVaultConfig(
        data_dir=tmp_path / "keyvault",
        identity_endpoint=identity.endpoint,
        credentials=await platform_credentials(operator, channel, clock, "keyvault"),
        port=0,
    )
    server = await build_server(config, clock=clock)
    try:
        yield server
    finally:
        await server.stop(grace=0)


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
