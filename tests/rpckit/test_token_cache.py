"""The client-side token cache renews before expiry and shares one fetch."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from cmk_trio.rpckit.token_cache import AccessToken, TokenCache


async def test_tokens_are_reused_then_renewed_before_they_expire(clock):
    issued = []

    async def fetch(audience: str) -> AccessToken:
        issued.append(audience)
        return AccessToken(f"t{len(issued)}", clock.now() + timedelta(minutes=10), clock.now())

    cache = TokenCache(fetch, clock)
    assert await cache.get("aud") == "t1"
    clock.advance(timedelta(minutes=7))
    assert await cache.get("aud") == "t1"
    clock.advance(timedelta(minutes=1))  # less than a quarter of the lifetime left
    assert await cache.get("aud") == "t2"
    assert await cache.get("other") == "t3"


async def test_concurrent_callers_share_one_fetch(clock):
    started = asyncio.Event()

    async def fetch(audience: str) -> AccessToken:
        started.set()
        await asyncio.sleep(0.01)
        return AccessToken("t", clock.now() + timedelta(minutes=10), clock.now())

    cache = TokenCache(fetch, clock)
    results = await asyncio.gather(*(cache.get("aud") for _ in range(10)))
    assert results == ["t"] * 10 and cache.fetches == 1
    cache.invalidate("aud")
    await cache.get("aud")
    assert cache.fetches == 2
