"""Cross-service changes that a crash interrupts (issue 11, defect 2): speech records the
intent before its first remote call, and what is left after a crash is finished or undone
by the service itself at its next start. The crash is a BaseException raised inside the
server's handler (none of speech's failure handling runs, as with kill -9, and the caller
gets no answer); the restart is a real one, on the same data directory."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable

import grpc
import pytest

from cmk_trio.client.channel import open_channel
from cmk_trio.client.speech import SpeechClient
from cmk_trio.proto.speech.v1 import resources_pb2 as res
from cmk_trio.rpckit.errors import NotFound
from cmk_trio.speech.model import StepKind
from cmk_trio.speech.server import SpeechServer, build_server
from tests.speech.cmk_world import World
from tests.waiting import eventually


class Crash(BaseException):
    """The process dies here."""


async def dies_at(monkeypatch: pytest.MonkeyPatch, target: object, method: str, call: Awaitable[object]) -> None:
    """Run `call` (a request to speech) with the server dying when it reaches `method`; the
    caller, who gets no answer, gives up then."""
    died = asyncio.Event()
    original = getattr(target, method)

    async def dies(*args: object, **kwargs: object) -> object:
        if died.is_set():
            return await original(*args, **kwargs)
        died.set()
        raise Crash

    monkeypatch.setattr(target, method, dies)
    request = asyncio.ensure_future(call)
    await died.wait()
    request.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await request


@pytest.fixture
async def restart(world: World, clock) -> AsyncIterator[object]:
    """Stops the world's speech server (as if it had died) and starts another on its data."""
    started: list[SpeechServer] = []
    opened: list[grpc.aio.Channel] = []

    async def again() -> tuple[SpeechServer, SpeechClient]:
        await world.server.stop(grace=0)
        server = await build_server(world.server.config, clock=clock)
        started.append(server)
        channel = open_channel(server.endpoint)
        opened.append(channel)
        return server, SpeechClient(channel, world.speech._tokens)

    yield again
    for channel in opened:
        await channel.close()
    for server in started:
        await server.stop(grace=0)


async def no_pending(server: SpeechServer) -> bool | None:
    return True if not await server.store.pending_steps() else None


async def identity_exists(world: World, operator, object_id: str) -> bool:
    try:
        await operator.get_principal(world.tenant_id, object_id)
    except NotFound:
        return False
    return True


async def test_an_enable_that_died_after_the_grant_is_undone_at_the_next_start(world, restart, monkeypatch, operator):
    before = await world.read_all()
    enable = world.set_encryption(key_uri=world.key.key_id, key_subscription_id=world.subscription_id)
    await dies_at(monkeypatch, world.server.encryption._vault, "get_key", enable)  # after the identity and grant
    (step,) = await world.server.store.pending_steps()
    assert (step.kind, step.new_identity, step.vault_name) == (StepKind.ENABLE_CMK, True, "contoso-cmk")
    made = await world.server.encryption.identity.create_identity(world.tenant_id, world.resource.name)  # adopts
    assert await identity_exists(world, operator, made)
    granted = [p.object_id for p in (await world.vaults.get_vault("contoso-cmk")).access_policies]
    assert made in granted

    server, speech = await restart()
    assert await eventually(lambda: no_pending(server), "the interrupted enable undone")
    assert not await identity_exists(world, operator, made)  # the grant names no one who can sign in
    resource = await speech.get_resource(world.resource.name)
    assert resource.encryption.key_source == res.MICROSOFT_MANAGED and not resource.identity.system_assigned
    assert (await speech.list_applications(world.resource.name)).applications  # data as it was
    # Nothing is stuck: the next enable makes a fresh identity and works.
    enabled = await speech.set_encryption(world.resource.name, key_uri=world.key.key_id,
                                          key_subscription_id=world.subscription_id)  # fmt: skip
    assert enabled.encryption.key_source == res.CUSTOMER_MANAGED and enabled.identity.principal_id != made
    assert [a.configuration_json for a in (await speech.list_applications(world.resource.name)).applications] == (
        before[0]
    )


async def test_an_assign_that_died_before_recording_the_identity_is_finished_at_the_next_start(
    world, restart, monkeypatch, operator
):
    # Dies in the save, after the directory made the identity.
    await dies_at(monkeypatch, world.server.encryption, "_save", world.identity(assign=True))
    assert [s.kind for s in await world.server.store.pending_steps()] == [StepKind.ASSIGN_IDENTITY]
    made = [await world.server.encryption.identity.create_identity(world.tenant_id, world.resource.name)]

    server, speech = await restart()
    assert await eventually(lambda: no_pending(server), "the interrupted assign finished")
    resource = await speech.get_resource(world.resource.name)
    assert resource.identity.system_assigned and resource.identity.principal_id == made[0]
    assert await identity_exists(world, operator, made[0])


async def test_a_failed_enable_leaves_no_intent_behind(world):
    """A failure that is answered undoes its remote steps itself and removes its intent."""
    with pytest.raises(Exception):  # noqa: B017, PT011 (the reason is checked in test_cmk_flows)
        await world.set_encryption(key_uri=world.key.key_id + "0", key_subscription_id=world.subscription_id)
    assert await world.server.store.pending_steps() == []
    assert await world.server.encryption.resolve_pending() == 0


async def test_the_resolver_leaves_changes_in_flight_alone(world, monkeypatch):
    """A pass of the resolver while an enable is between its remote calls does not undo it."""
    vault = world.server.encryption._vault
    get_key = vault.get_key
    passes: list[int] = []

    async def resolver_runs_meanwhile(token: str, key: str):
        passes.append(await world.server.encryption.resolve_pending())
        return await get_key(token, key)

    monkeypatch.setattr(vault, "get_key", resolver_runs_meanwhile)
    enabled = await world.set_encryption(key_uri=world.key.key_id, key_subscription_id=world.subscription_id)
    assert passes == [0] and enabled.encryption.key_source == res.CUSTOMER_MANAGED
    assert await world.server.store.pending_steps() == []
    await world.read_all()
