"""Type aliases for gRPC objects whose stubs are generic, the one way our interceptors
wrap a method's behaviour, and the one way a call's values (its caller, its request id) are
bound for the length of the call."""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeAlias, TypeVar, cast

import grpc

T = TypeVar("T")

Message = Any  # each method has its own message types; this is "some method's", see below
"""A request or response of some method, as the plumbing that wraps every method sees it.
Each method's messages are types of their own, and Python's typing cannot say "the type this
handler takes" for a handler of any method (there are no existential types), so the
interceptors pass messages on untouched under this name. The services' code is typed per
method."""

Context = grpc.aio.ServicerContext[Message, Message]
"""The servicer context of any method."""

Handler: TypeAlias = "grpc.RpcMethodHandler[Message, Message]"  # (grpc's class is generic only in its stubs)
"""The handler of any method, as interceptors receive and return it."""

Continuation: TypeAlias = "Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]]"
"""What an interceptor calls for the handler below it."""

Unary = Callable[[Message, Context], Awaitable[Message]]
"""The behaviour of a unary-unary method."""

Stream = Callable[[Message, Context], AsyncIterator[Message]]
"""The behaviour of a unary-stream (server-streaming) method."""


Deserializer = Callable[[bytes], Message]
"""How a method reads its request's bytes."""


def rewrap(
    handler: Handler,
    unary: Callable[[Unary], Unary],
    stream: Callable[[Stream], Stream],
    reading: Callable[[Deserializer], Deserializer] | None = None,
) -> Handler:
    """`handler` with its behaviour wrapped by `unary` or `stream`, and its request reading
    by `reading` (if given); the response serializer kept. Other kinds (client- and
    bidi-streaming; we have none) are returned as they are."""
    deserializer = handler.request_deserializer
    if reading is not None and deserializer is not None:
        deserializer = reading(deserializer)
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            unary(cast(Unary, handler.unary_unary)),
            request_deserializer=deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            stream(cast(Stream, handler.unary_stream)),
            request_deserializer=deserializer,
            response_serializer=handler.response_serializer,
        )
    return handler


class WrapCache:
    """Each method's wrapped handler, made once. An interceptor is asked for every call, and
    wraps a method's handler the same way each time: building the wrappers anew per call
    cost about 5 % of an unwrap's CPU per interceptor."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[object, Handler]] = {}

    def get(
        self,
        method: str,
        handler: Handler,
        wrap: Callable[[], Handler],
    ) -> Handler:
        entry = self._entries.get(method)
        if entry is not None and entry[0] is handler:
            return entry[1]
        wrapped = wrap()
        self._entries[method] = (handler, wrapped)
        return wrapped


@contextmanager
def bound(var: contextvars.ContextVar[T], value: T) -> Iterator[T]:
    """`var` set to `value` inside the block. A server stream's generator that gRPC leaves
    suspended (its client went away mid-write) is closed later by the event loop, in another
    context: that context never saw the value, so there is nothing to undo there (a plain
    `reset` raised "created in a different Context" from a task nobody awaited)."""
    token = var.set(value)
    try:
        yield value
    finally:
        try:
            var.reset(token)
        except ValueError:
            pass  # closed from another context, which never held the value
