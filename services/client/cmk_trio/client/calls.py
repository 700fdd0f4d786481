"""How every client method calls: with a bearer token from a token source, the deadline of
the block it is made in (or its client's timeout), the caller's request id carried along,
and a failure turned into the typed error of its reason, once, here."""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Protocol, TypeVar, runtime_checkable

import grpc

from cmk_trio.rpckit.errors import Unauthenticated
from cmk_trio.rpckit.observe import REQUEST_ID_HEADER, current_request_id
from cmk_trio.rpckit.status import error_from_rpc
from cmk_trio.rpckit.token_cache import RENEWABLE

R = TypeVar("R")
DEFAULT_TIMEOUT = 10.0
"""Seconds a call may take unless its client or the block it is made in says otherwise."""

Tokens = Callable[[str], Awaitable[str]]
"""What a client takes for its tokens: a bearer token for an audience. An IdentityClient's
`token_for` is one, and a `TokenSource` besides."""


@runtime_checkable
class TokenSource(Protocol):
    """Tokens that can be told one was refused: `invalidate(audience)` drops the token held
    for it, so that the next is new (an IdentityClient's `token_for`)."""

    async def __call__(self, audience: str) -> str: ...

    def invalidate(self, audience: str) -> None: ...


def fixed_token(token: str) -> Tokens:
    """Tokens that are always `token` (a service acting for one of its resources, with the
    token it got for that resource's identity)."""

    async def tokens(_audience: str) -> str:
        return token

    return tokens


_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("cmk_client_deadline", default=None)


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Each call made in the block gives up after `seconds` (DEADLINE_EXCEEDED) instead of
    after its client's timeout: a deadline for each call, not one for the block as a whole
    (a call that first fetches a token takes up to twice as long).

        with deadline(0.5):
            await cmk.vault.unwrap(key_id, wrapped)
    """
    if not seconds > 0:
        raise ValueError("a deadline is a positive number of seconds")
    token = _deadline.set(seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


async def call(
    method: Callable[..., Awaitable[R]],
    request: object,
    *,
    token: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 (the call's gRPC deadline, which the server sees too)
) -> R:
    """One unary call, with the block's deadline if one is set (`deadline`), else `timeout`;
    a failed call becomes the typed error of its ErrorInfo reason. Retrying is the channel's
    (gRPC's retryPolicy for idempotent methods: see cmk_trio.client.channel)."""
    pairs = [("authorization", f"Bearer {token}")] if token else []
    request_id = current_request_id()
    if request_id is not None:  # carry the caller's request id to the callee (and its audit log)
        pairs.append((REQUEST_ID_HEADER, request_id))
    try:
        return await method(request, metadata=tuple(pairs) or None, timeout=_deadline.get() or timeout)
    except grpc.aio.AioRpcError as exc:
        raise error_from_rpc(exc) from exc


async def call_as(
    tokens: Tokens,
    audience: str,
    method: Callable[..., Awaitable[R]],
    request: object,
    *,
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 (the call's gRPC deadline, which the server sees too)
) -> R:
    """One call with a token for `audience` from `tokens`. If the service refuses the token
    for a cause a new token cures and `tokens` can be told so (a TokenSource), that token is
    dropped and the call made once more with a new one: it was refused at authentication, so
    it changed nothing. The causes: the directory withdrew the key that signed it
    (TOKEN_KEY_UNKNOWN: the operator revoked it), and the token expired on the service's
    clock though not on ours (TOKEN_EXPIRED: a development clock moved forward)."""
    token = await tokens(audience)
    try:
        return await call(method, request, token=token, timeout=timeout)
    except Unauthenticated as refused:
        if refused.reason not in RENEWABLE or not isinstance(tokens, TokenSource):
            raise
        tokens.invalidate(audience)
        fresh = await tokens(audience)
        if fresh == token:
            raise
        return await call(method, request, token=fresh, timeout=timeout)
