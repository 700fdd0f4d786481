"""The client side of tokens: obtain one per audience, keep it, renew it before it expires."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cmk_trio.rpckit.clock import Clock
from cmk_trio.rpckit.reasons import Reason

RENEWABLE = frozenset({Reason.TOKEN_KEY_UNKNOWN, Reason.TOKEN_EXPIRED})
"""Refusals of a token that a new token from the same credentials cures: signed by a key the
directory withdrew, or expired on the service's clock though not on the holder's."""


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A bearer token and when it stops working."""

    token: str = field(repr=False)
    expires_at: datetime
    obtained_at: datetime

    @classmethod
    def received(cls, token: str, expires_in: int, now: datetime) -> AccessToken:
        """A token received `now` (the holder's clock) that the issuer says lasts `expires_in`
        seconds: its expiry on the holder's clock, whatever the issuer's clock says (a
        development clock moved forward, a skew), as OAuth 2.0 clients read expires_in."""
        return cls(token, now + timedelta(seconds=max(expires_in, 0)), now)


class TokenCache:
    """Caches tokens per audience, obtained through `fetch(audience)`.

    A token is renewed once less than `renew_fraction` of its lifetime is left (and never
    later than `min_margin` before expiry), so a caller never sends a token that expires on
    the way. Concurrent callers for one audience share one fetch.
    """

    def __init__(
        self,
        fetch: Callable[[str], Awaitable[AccessToken]],
        clock: Clock,
        *,
        renew_fraction: float = 0.25,
        min_margin: timedelta = timedelta(seconds=30),
    ) -> None:
        if not 0 < renew_fraction < 1:
            raise ValueError("renew_fraction must be between 0 and 1")
        self._fetch = fetch
        self._clock = clock
        self._renew_fraction = renew_fraction
        self._min_margin = min_margin
        self._tokens: dict[str, AccessToken] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.fetches = 0

    def _fresh(self, token: AccessToken | None) -> bool:
        if token is None:
            return False
        lifetime = token.expires_at - token.obtained_at
        margin = max(lifetime * self._renew_fraction, self._min_margin)
        return self._clock.now() < token.expires_at - margin

    async def get(self, audience: str) -> str:
        """A token for `audience` that has a comfortable part of its lifetime left."""
        cached = self._tokens.get(audience)
        if self._fresh(cached):
            return cached.token  # type: ignore[union-attr]
        lock = self._locks.setdefault(audience, asyncio.Lock())
        async with lock:
            cached = self._tokens.get(audience)
            if self._fresh(cached):
                return cached.token  # type: ignore[union-attr]
            self.fetches += 1
            fresh = await self._fetch(audience)
            self._tokens[audience] = fresh
            return fresh.token

    def invalidate(self, audience: str | None = None) -> None:
        """Forget one audience's token, or all of them (after the server refused one)."""
        if audience is None:
            self._tokens.clear()
        else:
            self._tokens.pop(audience, None)
