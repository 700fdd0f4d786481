"""A key vault that takes speech's call and then says nothing (its container paused, a network
that drops packets): the caller hears CUSTOMER_KEY_VAULT_UNREACHABLE before its own deadline,
never only DEADLINE_EXCEEDED, and its client's automatic retries do not spend what is left of
that deadline waiting again. The container suite's paused vault found both orders wrong: once
when speech waited as long as its caller (both 10 s), once when the client retried an answer
that had taken five of its ten seconds and its second attempt ran out of time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import grpc
import pytest

from cmk_trio.client.calls import DEFAULT_TIMEOUT, deadline
from cmk_trio.client.channel import open_channel
from cmk_trio.rpckit.errors import Unavailable
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.speech import gateways
from cmk_trio.speech.customer_keys import ANSWER_RESERVE_S, DataKeys


@dataclass
class SilentVault:
    """A real gRPC server in the key vault's place whose UnwrapKey never answers."""

    gateway: gateways.GrpcVaultGateway
    calls: int = 0


@asynccontextmanager
async def silent_vault() -> AsyncIterator[SilentVault]:
    never = asyncio.Event()
    server = grpc.aio.server()
    port = server.add_insecure_port("127.0.0.1:0")
    channel = open_channel(f"127.0.0.1:{port}", retries=False)  # (as speech opens its own)
    vault = SilentVault(gateways.GrpcVaultGateway(channel))

    async def silent(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        vault.calls += 1
        await never.wait()
        return b""

    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "cmk.keyvault.v1.KeyService", {"UnwrapKey": grpc.unary_unary_rpc_method_handler(silent)},
    )])  # fmt: skip
    await server.start()
    try:
        yield vault
    finally:
        never.set()
        await channel.close()
        await server.stop(0)


@pytest.fixture
async def encrypted(world):
    """The world's resource under its customer key, its application's name known."""
    await world.set_encryption(key_uri=world.key.key_id, key_subscription_id=world.subscription_id)
    apps = await world.speech.list_applications(world.resource.name)
    world.app_name = apps.applications[0].name
    return world


async def read_refusal(world) -> Reason:
    """Why a read of the world's application is refused once its data key is forgotten (the
    read must unwrap it)."""
    world.server.data_keys.drop_all()
    with pytest.raises(Unavailable) as refused:
        await world.speech.get_application(world.app_name)
    return refused.value.reason


async def test_the_unwrap_is_unreachable_within_the_vaults_own_deadline(world, clock):
    """Speech waits for the vault less than a caller's default deadline (tested at the data
    key, where no caller's deadline applies)."""
    assert gateways.VAULT_DEADLINE_S < DEFAULT_TIMEOUT
    await world.set_encryption(key_uri=world.key.key_id, key_subscription_id=world.subscription_id)
    stored = await world.server.resources.store.get_resource(world.resource.name)
    async with silent_vault() as vault:
        keys = DataKeys(
            world.server.resources.ring, clock, vault=vault.gateway, identity=world.server.encryption.identity
        )
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(gateways, "VAULT_DEADLINE_S", 0.3)  # (the order of the deadlines is what is tested)
            with pytest.raises(Unavailable) as caught:
                await asyncio.wait_for(keys.data_key(stored), timeout=DEFAULT_TIMEOUT / 2)  # (a hang guard)
    assert caught.value.reason is Reason.CUSTOMER_KEY_VAULT_UNREACHABLE
    assert not caught.value.retry_now  # (its wait is spent: no retry within the same deadline)


async def test_a_caller_with_less_time_than_the_vault_is_given_hears_the_cause(encrypted, monkeypatch):
    """A caller whose deadline is shorter than speech's own for the vault (a client's retry
    comes with what its first attempt left) is answered UNREACHABLE before it runs out."""
    async with silent_vault() as vault:
        monkeypatch.setattr(encrypted.server.data_keys, "_vault", vault.gateway)
        with deadline(4 * ANSWER_RESERVE_S):  # (well under VAULT_DEADLINE_S)
            reason = await read_refusal(encrypted)
    assert reason is Reason.CUSTOMER_KEY_VAULT_UNREACHABLE and vault.calls == 1


async def test_a_silent_vault_is_not_asked_again_by_the_clients_retries(encrypted, monkeypatch):
    """The answer carries gRPC's server pushback: the client's retry policy (four attempts on
    UNAVAILABLE for reads) does not send the read again to wait on the same silence."""
    monkeypatch.setattr(gateways, "VAULT_DEADLINE_S", 0.3)
    async with silent_vault() as vault:
        monkeypatch.setattr(encrypted.server.data_keys, "_vault", vault.gateway)
        with deadline(DEFAULT_TIMEOUT / 2):
            reason = await read_refusal(encrypted)
    assert reason is Reason.CUSTOMER_KEY_VAULT_UNREACHABLE
    assert vault.calls == 1
