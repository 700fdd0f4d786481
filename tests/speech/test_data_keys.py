"""The data-key cache under concurrency: one unwrap for many concurrent misses, and a drop
(a revocation event) that overtakes an unwrap in flight is not undone by it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from cmk_trio.speech.customer_keys import DataKeys
from cmk_trio.speech.envelope import MasterKeyRing
from cmk_trio.speech.model import KeySource, SpeechResource, Tier


class SlowVault:
    """Answers each unwrap only when it is released (all at once, or one by one), counting
    them; the n-th unwrap answers n repeated."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()
        self.released: dict[int, asyncio.Event] = {}
        self.called = asyncio.Condition()

    async def unwrap(self, token: str, key_id: str, wrapped: bytes) -> bytes:
        self.calls += 1
        number = self.calls
        async with self.called:
            self.called.notify_all()
        one = self.released.setdefault(number, asyncio.Event())
        _, waiting = await asyncio.wait(
            [asyncio.ensure_future(self.release.wait()), asyncio.ensure_future(one.wait())],
            return_when=asyncio.FIRST_COMPLETED,
        )
        for task in waiting:
            task.cancel()
        return bytes([number]) * 32

    def let(self, number: int) -> None:
        self.released.setdefault(number, asyncio.Event()).set()


class Identity:
    async def tenant_of(self, subscription_id: str) -> str:
        return "tenant-1"

    async def identity_token(self, tenant_id: str, object_id: str) -> str:
        return "token"

    def forget_token(self, object_id: str | None = None) -> None:
        pass


@pytest.fixture
def resource(clock) -> SpeechResource:
    return SpeechResource(
        resource_id="/subscriptions/s/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/a", uid="uid-1",
        subscription_id="s", resource_group="rg", account_name="a", location="westeurope", tier=Tier.S0,
        create_time=clock.now(), tenant_id="tenant-1", key_source=KeySource.CUSTOMER,
        wrapping_key="https://v.vault.azure.net/keys/k/" + "a" * 32, wrapped_data_key=b"wrapped",
        identity_principal_id="mi-1", identity_tenant_id="tenant-1",
    )  # fmt: skip


@pytest.fixture
def vault() -> SlowVault:
    return SlowVault()


@pytest.fixture
def keys(clock, vault) -> DataKeys:
    return DataKeys(MasterKeyRing({"v1": b"\x01" * 32}, "v1"), clock, vault=vault, identity=Identity())  # type: ignore[arg-type]


async def until_calls(vault: SlowVault, n: int) -> None:
    async with vault.called:
        await vault.called.wait_for(lambda: vault.calls >= n)


async def test_concurrent_misses_share_one_unwrap(keys, vault, resource):
    readers = [asyncio.create_task(keys.data_key(resource)) for _ in range(20)]
    await until_calls(vault, 1)
    vault.release.set()
    got = await asyncio.gather(*readers)
    assert vault.calls == 1 and len({k.key for k in got}) == 1
    assert (await keys.data_key(resource)).key == got[0].key and vault.calls == 1  # cached


async def test_an_unwrap_overtaken_by_a_drop_is_answered_but_not_kept(keys, vault, resource):
    before = asyncio.create_task(keys.data_key(resource))
    await until_calls(vault, 1)
    keys.drop(resource)  # the revocation event arrives while the unwrap is in flight
    after = asyncio.create_task(keys.data_key(resource))  # begun after it: must ask again
    await until_calls(vault, 2)
    vault.let(2)  # the newer answer lands first...
    second = await after
    vault.let(1)  # ...and the one from before the drop last: it must not replace it
    first = await before
    assert first.key == b"\x01" * 32 and second.key == b"\x02" * 32  # two unwraps, not one shared
    assert (await keys.data_key(resource)).key == second.key  # only the unwrap begun after the drop was kept
    assert vault.calls == 2


async def test_a_drop_of_everything_also_overtakes_a_flight(keys, vault, resource):
    before = asyncio.create_task(keys.data_key(resource))
    await until_calls(vault, 1)
    keys.drop_all()  # missed events: everything goes
    vault.release.set()
    await before
    assert not keys.cached(resource)


async def test_a_reader_that_gives_up_does_not_cancel_the_others(keys, vault, resource):
    impatient = asyncio.create_task(keys.data_key(resource))
    patient = asyncio.create_task(keys.data_key(resource))
    await until_calls(vault, 1)
    impatient.cancel()
    vault.release.set()
    assert len((await patient).key) == 32 and keys.cached(resource)
    with pytest.raises(asyncio.CancelledError):
        await impatient


async def test_nothing_is_kept_while_a_stream_that_would_revoke_it_is_not_current(keys, vault, resource, clock):
    """After a stream broke, a key unwrapped before the stream has caught up again is used
    for the read but not kept: a revocation made meanwhile must not wait for the stream."""
    from cmk_trio.speech.followers import CacheGuard, dropping_on_failure

    guard = CacheGuard(None, keys, Identity(), None, "vault.azure.net", clock)  # type: ignore[arg-type]
    keys.cache_allowed = guard.streams_current
    heartbeat = asyncio.Event()

    async def stream(after: int, on_heartbeat) -> AsyncIterator[object]:
        await heartbeat.wait()
        on_heartbeat()  # the replay reached the head
        raise ConnectionError("the stream broke")
        yield  # an async generator

    opened = dropping_on_failure(stream, guard, "keyvault")
    vault.release.set()
    await keys.data_key(resource)
    assert not keys.cached(resource)  # the stream has not caught up yet
    follower = asyncio.create_task(anext(opened(0), None))
    heartbeat.set()
    with pytest.raises(ConnectionError):
        await follower
    assert not guard.streams_current()  # caught up, then broke
    await keys.data_key(resource)
    assert not keys.cached(resource)
    guard.caught_up("keyvault")
    await keys.data_key(resource)
    assert keys.cached(resource)
