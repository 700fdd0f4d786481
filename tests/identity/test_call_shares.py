"""Fair shares of the cap on calls, on a real identity service with a small cap (issue 22,
item 6). The review held 1,500 calls in flight from one client, and another tenant's calls
were refused TOO_MANY_CALLS while tenant B listed its principals, while an anonymous client
signed in over gRPC, and while it posted to the HTTPS token endpoint: one cap was shared by
everyone. Here the flooding calls are held in flight by a gate in front of the directory (a
dependency that has paused), so that exactly what the admission lets in stays in, and the
other callers' calls are made while it does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cmk_trio.client.channel import open_channel
from cmk_trio.client.identity import ClientCredentials, IdentityClient
from cmk_trio.identity.server import IdentityServer, build_server
from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.admission import CallLimits, Shares
from cmk_trio.rpckit.clock import FakeClock
from cmk_trio.rpckit.errors import ResourceExhausted
from cmk_trio.rpckit.reasons import Reason
from tests.conftest import identity_config, operator_credentials, platform_credentials
from tests.identity.helpers import TenantFixture, make_principal, make_tenant

CAP = 20
"""The identity service's cap here: 4 calls for sign-ins, 4 kept for the platform, 12 for
the tenants; 2 per caller (or client address), 5 per tenant (the default percentages)."""
SHARES = Shares(calls=CAP)
HANG_GUARD_S = 15.0  # a guard against a broken gate, not a speed claim


class Gate:
    """Holds the calls that reach it until it opens, as a dependency that has paused would."""

    def __init__(self) -> None:
        self.held = 0
        self.opened = asyncio.Event()

    def wrap(self, method: Callable[..., Awaitable[Any]], holds: Callable[..., bool]) -> Callable[..., Awaitable[Any]]:
        async def gated(*args: Any, **kwargs: Any) -> Any:
            if holds(*args, **kwargs):
                self.held += 1
                try:
                    await self.opened.wait()
                finally:
                    self.held -= 1
            return await method(*args, **kwargs)

        return gated


async def settled(gate: Gate, tasks: list[asyncio.Task[Any]]) -> None:
    """Until every call of a flood is either held at the gate or answered (refused)."""
    deadline = time.monotonic() + HANG_GUARD_S
    while gate.held + sum(t.done() for t in tasks) < len(tasks):
        assert time.monotonic() < deadline, f"{gate.held} held, {sum(t.done() for t in tasks)} answered"
        await asyncio.sleep(0.01)


def refusals(tasks: list[asyncio.Task[Any]]) -> list[Reason]:
    """The reasons of the calls refused so far (each a RESOURCE_EXHAUSTED)."""
    reasons = []
    for task in tasks:
        if task.done():
            error = task.exception()
            assert isinstance(error, ResourceExhausted), error
            reasons.append(error.reason)
    return reasons


async def serving(channel: grpc.aio.Channel) -> bool:
    probe: Any = health_pb2_grpc.HealthStub(channel)  # (its methods are set at run time)
    reply = await probe.Check(health_pb2.HealthCheckRequest(), timeout=5)
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


@pytest.fixture
async def capped(tmp_path: Path, clock: FakeClock, database_url: str) -> AsyncIterator[IdentityServer]:
    """Identity, with its HTTPS endpoints on plain HTTP (loopback), capped at CAP calls."""
    config = identity_config(tmp_path / "identity", http_port=0, database_url=database_url)
    server = await build_server(config, clock=clock, limits=CallLimits(SHARES))
    try:
        yield server
    finally:
        await server.stop(grace=0)


@pytest.fixture
async def channel(capped: IdentityServer) -> AsyncIterator[grpc.aio.Channel]:
    ch = open_channel(capped.endpoint)
    try:
        yield ch
    finally:
        await ch.close()


@pytest.fixture
def operator(capped: IdentityServer, channel: grpc.aio.Channel, clock: FakeClock) -> IdentityClient:
    return IdentityClient(channel, operator_credentials(capped), clock=clock)


async def admins(
    operator: IdentityClient, channel: grpc.aio.Channel, clock: FakeClock, tenant: TenantFixture, count: int
) -> list[IdentityClient]:
    """`count` administrators of `tenant`, each signed in (its token in hand before a flood)."""
    clients = [tenant.admin_client]
    for n in range(count - 1):
        _, _, client = await make_principal(
            operator, channel, clock, tenant.tenant_id, f"admin {n}", admin=True
        )  # fmt: skip
        clients.append(client)
    for client in clients:
        await client.token_for(audiences.DIRECTORY)
    return clients


def gate_principal_lists(capped: IdentityServer, tenants: set[str]) -> Gate:
    """Listing the principals of `tenants` waits at a gate (the directory has paused for them)."""
    gate = Gate()
    principals: Any = capped.directory.principals
    principals.list_principals = gate.wrap(
        principals.list_principals, lambda actor, tenant_id, *rest, **named: tenant_id in tenants
    )
    return gate


def gate_sign_ins(capped: IdentityServer) -> Gate:
    """Every sign-in (gRPC IssueToken and the HTTPS token endpoint) waits at a gate."""
    gate = Gate()
    issuer: Any = capped.issuer
    issuer.client_credentials = gate.wrap(issuer.client_credentials, lambda *args, **named: True)
    return gate


def flood(calls: list[Coroutine[Any, Any, Any]]) -> list[asyncio.Task[Any]]:
    return [asyncio.ensure_future(c) for c in calls]


async def test_a_tenant_flooding_its_principal_list_leaves_another_tenant_its_calls(
    capped: IdentityServer, operator: IdentityClient, channel: grpc.aio.Channel, clock: FakeClock
) -> None:
    a = await make_tenant(operator, channel, clock, "Tenant A")
    b = await make_tenant(operator, channel, clock, "Tenant B")
    b_admins = await admins(operator, channel, clock, b, 4)
    await a.admin_client.token_for(audiences.DIRECTORY)
    gate = gate_principal_lists(capped, {b.tenant_id})
    # 24 calls from tenant B, more than the whole cap, held in flight.
    tasks = flood([client.list_principals(b.tenant_id) for client in b_admins for _ in range(6)])
    try:
        await settled(gate, tasks)
        for _ in range(3):  # tenant A's calls go through (before the fix: TOO_MANY_CALLS)
            assert (await a.admin_client.list_principals(a.tenant_id)).principals
        assert (await a.admin_client.get_tenant(a.tenant_id)).tenant_id == a.tenant_id
        assert await serving(channel)
        # Tenant B holds its share of the cap, no more, and was told why.
        assert gate.held == SHARES.per_tenant
        assert set(refusals(tasks)) == {Reason.CALLER_TOO_MANY_CALLS, Reason.TENANT_TOO_MANY_CALLS}
    finally:
        gate.opened.set()
    answered = await asyncio.gather(*tasks, return_exceptions=True)
    assert sum(not isinstance(r, BaseException) for r in answered) == SHARES.per_tenant
    assert capped.limits is not None and capped.limits.calls == 0


async def test_one_caller_holds_at_most_its_share(
    capped: IdentityServer, operator: IdentityClient, channel: grpc.aio.Channel, clock: FakeClock
) -> None:
    b = await make_tenant(operator, channel, clock, "Tenant B")
    (client,) = await admins(operator, channel, clock, b, 1)
    gate = gate_principal_lists(capped, {b.tenant_id})
    tasks = flood([client.list_principals(b.tenant_id) for _ in range(8)])
    try:
        await settled(gate, tasks)
        assert gate.held == SHARES.per_caller
        assert refusals(tasks) == [Reason.CALLER_TOO_MANY_CALLS] * (8 - SHARES.per_caller)
        refused = next(t.exception() for t in tasks if t.done())
        assert isinstance(refused, ResourceExhausted)
        assert refused.metadata["retry_after_seconds"] == "1" and refused.metadata["limit"] == str(SHARES.per_caller)
        # Another principal of the same tenant still gets in.
        (other,) = (await admins(operator, channel, clock, b, 2))[1:]
        assert (await operator.list_tenants()).tenants and (await other.get_tenant(b.tenant_id)).tenant_id
    finally:
        gate.opened.set()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_an_anonymous_flood_of_sign_ins_leaves_authenticated_callers_their_calls(
    capped: IdentityServer, operator: IdentityClient, channel: grpc.aio.Channel, clock: FakeClock
) -> None:
    a = await make_tenant(operator, channel, clock, "Tenant A")
    await a.admin_client.token_for(audiences.DIRECTORY)
    stranger = ClientCredentials(a.tenant_id, a.admin_credentials.client_id, "cmk~" + "w" * 40)
    anonymous = IdentityClient(channel)
    gate = gate_sign_ins(capped)
    # 30 sign-ins in flight from one address, more than the whole cap.
    tasks = flood([anonymous.issue_token(stranger, audiences.DIRECTORY) for _ in range(30)])
    try:
        await settled(gate, tasks)
        for _ in range(3):  # before the fix: TOO_MANY_CALLS
            assert (await a.admin_client.list_principals(a.tenant_id)).principals
        assert await serving(channel)
        # The flood holds its address's share of the sign-ins' budget, no more.
        assert gate.held == min(SHARES.per_caller, SHARES.sign_in_calls)
        assert set(refusals(tasks)) == {Reason.CALLER_TOO_MANY_CALLS}
    finally:
        gate.opened.set()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_flood_of_the_https_token_endpoint_leaves_the_grpc_calls_alone(
    capped: IdentityServer, operator: IdentityClient, channel: grpc.aio.Channel, clock: FakeClock
) -> None:
    a = await make_tenant(operator, channel, clock, "Tenant A")
    await a.admin_client.token_for(audiences.DIRECTORY)
    assert capped.http_url is not None
    url = f"{capped.http_url}/{a.tenant_id}/oauth2/v2.0/token"
    form = {"grant_type": "client_credentials", "client_id": a.admin_credentials.client_id,
            "client_secret": "cmk~" + "w" * 40, "scope": f"{audiences.VAULT}/.default"}  # fmt: skip
    gate = gate_sign_ins(capped)

    async def post(session: aiohttp.ClientSession) -> tuple[int, str]:
        async with session.post(url, data=form) as response:
            return response.status, (await response.json())["reason"]

    async with aiohttp.ClientSession() as session:
        tasks = flood([post(session) for _ in range(30)])
        try:
            deadline = time.monotonic() + HANG_GUARD_S
            while gate.held + sum(t.done() for t in tasks) < len(tasks):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            for _ in range(3):  # before the fix: TOO_MANY_CALLS
                assert (await a.admin_client.list_principals(a.tenant_id)).principals
            assert await serving(channel)
            assert gate.held == min(SHARES.per_caller, SHARES.sign_in_calls)
            assert {t.result() for t in tasks if t.done()} == {(429, "CALLER_TOO_MANY_CALLS")}
        finally:
            gate.opened.set()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_the_platforms_reserve_holds_when_the_tenants_fill_their_part(
    capped: IdentityServer, operator: IdentityClient, channel: grpc.aio.Channel, clock: FakeClock
) -> None:
    flooding = [await make_tenant(operator, channel, clock, f"Tenant {name}") for name in "BCDE"]
    clients = {t.tenant_id: await admins(operator, channel, clock, t, 2) for t in flooding}
    speech = IdentityClient(channel, await platform_credentials(operator, channel, clock, "speech"), clock=clock)
    await speech.token_for(audiences.DIRECTORY)
    await operator.token_for(audiences.DIRECTORY)
    a = await make_tenant(operator, channel, clock, "Tenant A")
    await a.admin_client.token_for(audiences.DIRECTORY)
    gate = gate_principal_lists(capped, set(clients))
    # Four tenants, 24 calls, more than the whole cap: together they fill the tenants' part.
    tasks = flood([c.list_principals(tid) for tid, pair in clients.items() for c in pair for _ in range(3)])
    try:
        await settled(gate, tasks)
        # The platform's services and the operator still get through (before the fix: TOO_MANY_CALLS) ...
        for _ in range(3):
            assert (await speech.get_subscription(a.subscription_id)).tenant_id == a.tenant_id
        assert (await operator.list_tenants()).tenants
        # ... and so do sign-ins, which have their own budget, and health checks.
        fresh = IdentityClient(channel, a.admin_credentials, clock=clock)
        assert (await fresh.issue_token(a.admin_credentials, audiences.DIRECTORY)).access_token
        assert await serving(channel)
        # Another tenant waits for the flood to end: the tenants' part is full.
        with pytest.raises(ResourceExhausted) as full:
            await a.admin_client.list_principals(a.tenant_id)
        assert full.value.reason is Reason.TOO_MANY_CALLS and full.value.metadata["budget"] == "tenants"
        assert gate.held == SHARES.tenant_calls
        assert Reason.TOO_MANY_CALLS in refusals(tasks)
    finally:
        gate.opened.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert (await a.admin_client.list_principals(a.tenant_id)).principals
