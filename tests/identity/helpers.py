"""Building blocks for identity API tests: tenants with an administrator, platform
principals, and clients signed in as them."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from cmk_trio.client.identity import ClientCredentials, IdentityClient
from cmk_trio.proto.identity.v1 import resources_pb2 as res
from cmk_trio.rpckit.clock import Clock


@dataclass
class TenantFixture:
    tenant_id: str
    subscription_id: str
    admin: res.Principal
    admin_credentials: ClientCredentials
    admin_client: IdentityClient


async def make_principal(
    operator: IdentityClient,
    channel: grpc.aio.Channel,
    clock: Clock,
    tenant_id: str,
    name: str,
    *,
    kind: int = res.SERVICE_PRINCIPAL,
    admin: bool = False,
    platform_service: str = "",
) -> tuple[res.Principal, ClientCredentials, IdentityClient]:
    principal = await operator.create_principal(
        tenant_id, kind, name, tenant_admin=admin, platform_service=platform_service
    )
    added = await operator.add_client_secret(tenant_id, principal.object_id, "test")
    creds = ClientCredentials(tenant_id, added.client_id, added.secret_value)
    return principal, creds, IdentityClient(channel, creds, clock=clock)


async def make_tenant(operator: IdentityClient, channel: grpc.aio.Channel, clock: Clock, name: str) -> TenantFixture:
    tenant = await operator.create_tenant(name)
    sub = await operator.create_subscription(tenant.tenant_id, f"{name} subscription")
    admin, creds, client = await make_principal(
        operator, channel, clock, tenant.tenant_id, f"{name} admin", kind=res.USER, admin=True
    )
    return TenantFixture(tenant.tenant_id, sub.subscription_id, admin, creds, client)


def resource_id(subscription_id: str, name: str = "speech1") -> str:
    return f"/subscriptions/{subscription_id}/resourceGroups/rg1/providers/Microsoft.CognitiveServices/accounts/{name}"
