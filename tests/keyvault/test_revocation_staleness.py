"""Failing closed when the directory goes quiet: a service that hears nothing from identity's
event stream (no event, no heartbeat) for longer than its bound may be missing revocations,
so it refuses tokens until it hears the directory again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cmk_trio.client.channel import open_channel
from cmk_trio.client.identity import IdentityClient
from cmk_trio.client.keyvault import KeyVaultClient
from cmk_trio.identity.config import IdentityConfig
from cmk_trio.identity.server import IdentityServer
from cmk_trio.identity.server import build_server as build_identity
from cmk_trio.keyvault.config import KeyVaultConfig
from cmk_trio.keyvault.server import KeyVaultServer
from cmk_trio.keyvault.server import build_server as build_keyvault
from cmk_trio.rpckit.clock import FakeClock
from cmk_trio.rpckit.errors import Unauthenticated, Unavailable
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.tokens import RevocationSet
from tests.conftest import identity_config, operator_credentials, platform_credentials
from tests.identity.helpers import make_tenant
from tests.keyvault.conftest import make_customer
from tests.waiting import eventually

SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


async def health(channel: grpc.aio.Channel) -> dict[str, int]:
    stub: Any = health_pb2_grpc.HealthStub(channel)  # the stub's methods are set at run time
    statuses = {}
    for name in ("", "cmk.keyvault.v1.KeyService", "liveness"):
        statuses[name] = (await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)).status
    return statuses


def test_the_set_refuses_until_it_has_caught_up_with_the_stream_once():
    """No grace period at start or after a rebuild: until the feed has replayed the stream
    to the directory's head (the first heartbeat), revocations are unknown."""
    now = [100.0]
    revocations = RevocationSet(timedelta(seconds=60), monotonic=lambda: now[0])
    with pytest.raises(Unavailable) as caught:
        revocations.check_current()
    assert caught.value.reason is Reason.REVOCATIONS_UNKNOWN and not revocations.current
    revocations.heard()  # an event replayed: not yet the head
    with pytest.raises(Unavailable):
        revocations.check_current()
    revocations.caught_up()
    revocations.check_current()
    assert revocations.current
    revocations.clear()  # a gap: the set is rebuilt from the start of the stream
    with pytest.raises(Unavailable):
        revocations.check_current()


def test_the_set_refuses_after_the_bound_and_recovers_when_heard():
    now = [100.0]
    revocations = RevocationSet(timedelta(seconds=60), monotonic=lambda: now[0])
    revocations.caught_up()
    now[0] += 59
    revocations.check_current()  # within the bound
    now[0] += 2
    with pytest.raises(Unavailable) as caught:
        revocations.check_current()
    assert caught.value.reason is Reason.REVOCATIONS_UNKNOWN
    revocations.heard()
    revocations.check_current()
    now[0] += 10_000
    RevocationSet(None, monotonic=lambda: now[0]).check_current()  # unbounded: the directory itself


@dataclass
class Linked:
    """An identity service and a key vault that follows it, each restartable in the test."""

    identity_config: IdentityConfig
    identity: IdentityServer
    channel: grpc.aio.Channel
    operator: IdentityClient
    config: KeyVaultConfig
    vault: KeyVaultServer
    kv_channel: grpc.aio.Channel
    clock: FakeClock

    async def restart_identity(self) -> None:
        """Identity back on the address it had, as after an outage."""
        self.identity = await build_identity(replace(self.identity_config, port=self.identity.port), clock=self.clock)

    async def restart_vault(self) -> None:
        await self.vault.stop(grace=0)
        await self.kv_channel.close()
        self.vault = await build_keyvault(self.config, clock=self.clock)
        self.kv_channel = open_channel(self.vault.endpoint)


@asynccontextmanager
async def linked(tmp_path: Path, clock: FakeClock, *, quick: bool) -> AsyncIterator[Linked]:
    """With `quick`, identity's stream heartbeats every 50 ms and the vault refuses tokens
    after 1 s of silence, so that an outage shows at once."""
    identity_cfg = identity_config(tmp_path / "identity")
    if quick:
        identity_cfg = replace(identity_cfg, event_heartbeat=timedelta(milliseconds=50))
    identity = await build_identity(identity_cfg, clock=clock)
    channel = open_channel(identity.endpoint)
    operator = IdentityClient(channel, operator_credentials(identity), clock=clock)
    config = KeyVaultConfig(
        data_dir=tmp_path / "keyvault", identity_endpoint=identity.endpoint, port=0,
        credentials=await platform_credentials(operator, channel, clock, "keyvault"),
    )  # fmt: skip
    if quick:
        config = replace(config, revocation_max_staleness=timedelta(seconds=1))
    vault = await build_keyvault(config, clock=clock)
    both = Linked(identity_cfg, identity, channel, operator, config, vault, open_channel(vault.endpoint), clock)
    try:
        yield both
    finally:
        await both.kv_channel.close()
        await both.vault.stop(grace=0)
        await both.channel.close()
        await both.identity.stop(grace=0)


async def test_a_vault_that_stops_hearing_the_directory_refuses_tokens(tmp_path, clock):
    async with linked(tmp_path, clock, quick=True) as trio:
        customer = await make_customer(trio.operator, trio.channel, trio.kv_channel, clock, "Contoso")
        await customer.vaults.create_vault("contoso-kv", customer.subscription_id, "rg1", "westeurope")
        await asyncio.sleep(1.5)  # quiet for longer than the bound: the heartbeats keep the vault hearing
        assert (await customer.vaults.get_vault("contoso-kv")).name.endswith("contoso-kv")
        statuses = await health(trio.kv_channel)
        assert statuses == {"": SERVING, "cmk.keyvault.v1.KeyService": SERVING, "liveness": SERVING}

        await trio.identity.stop(grace=0)  # now nothing is heard

        async def refused() -> Reason | None:
            try:
                await customer.vaults.get_vault("contoso-kv")
            except Unavailable as exc:
                return exc.reason if exc.reason is Reason.REVOCATIONS_UNKNOWN else None
            return None

        assert await eventually(refused, "tokens refused once the directory went quiet") is Reason.REVOCATIONS_UNKNOWN

        async def not_ready() -> dict[str, int] | None:
            statuses = await health(trio.kv_channel)
            return statuses if statuses[""] == NOT_SERVING else None

        # Failing closed shows: not ready (the server and its services), though alive.
        statuses = await eventually(not_ready, "health NOT_SERVING while tokens are refused")
        assert statuses == {"": NOT_SERVING, "cmk.keyvault.v1.KeyService": NOT_SERVING, "liveness": SERVING}


async def test_the_vault_serves_again_once_the_directory_is_back(tmp_path, clock):
    """With identity away past the staleness bound the vault fails closed; when identity is
    back on its address the vault reconnects (fast reconnect backoff, not gRPC's two-minute
    default) and serves again, without anyone restarting it."""
    async with linked(tmp_path, clock, quick=True) as trio:
        customer = await make_customer(trio.operator, trio.channel, trio.kv_channel, clock, "Contoso")
        await customer.vaults.create_vault("contoso-kv", customer.subscription_id, "rg1", "westeurope")
        await trio.identity.stop(grace=0)

        async def outcome() -> str | None:
            try:
                await customer.vaults.get_vault("contoso-kv")
            except Unavailable as exc:
                return exc.reason.value
            return "served"

        async def refused() -> str | None:
            return "refused" if await outcome() == Reason.REVOCATIONS_UNKNOWN.value else None

        await eventually(refused, "the vault failing closed with the directory away")
        await trio.restart_identity()

        async def served() -> str | None:
            return "served" if await outcome() == "served" else None

        await eventually(served, "the vault serving again once the directory is back")


async def test_after_a_restart_a_disabled_principals_token_is_refused_from_the_first_call(tmp_path, clock):
    """The vault serves only once its feed has replayed the directory's events: no call on
    a restarted vault may pass with the token of a principal disabled before the restart."""
    async with linked(tmp_path, clock, quick=False) as trio:
        customer = await make_customer(trio.operator, trio.channel, trio.kv_channel, clock, "Contoso")
        await customer.vaults.create_vault("contoso-kv", customer.subscription_id, "rg1", "westeurope")
        await customer.vaults.get_vault("contoso-kv")  # the admin's token is cached by the client
        await trio.operator.disable_principal(customer.tenant_id, customer.tenant.admin.object_id)
        await trio.restart_vault()
        again = KeyVaultClient(trio.kv_channel, customer.tenant.admin_client.token_for)
        with pytest.raises(Unauthenticated) as refused:
            await again.get_vault("contoso-kv")
        assert refused.value.reason is Reason.TOKEN_REVOKED


async def test_an_idle_event_stream_sends_heartbeats_that_followers_do_not_see_as_events(tmp_path, clock):
    identity = await build_identity(
        identity_config(tmp_path / "identity", event_heartbeat=timedelta(milliseconds=20)), clock=clock
    )
    channel = open_channel(identity.endpoint)
    try:
        operator = IdentityClient(channel, operator_credentials(identity), clock=clock)
        await make_tenant(operator, channel, clock, "Contoso")  # something happened: events to replay
        heartbeats = asyncio.Event()
        seen = []

        async def follow() -> None:
            async for event in operator.watch_events(0, on_heartbeat=heartbeats.set):
                seen.append(event)

        following = asyncio.create_task(follow())
        await asyncio.wait_for(heartbeats.wait(), 15)
        following.cancel()
        assert seen and all(e.sequence > 0 for e in seen)  # the directory's real events only, numbered
    finally:
        await channel.close()
        await identity.stop(grace=0)
