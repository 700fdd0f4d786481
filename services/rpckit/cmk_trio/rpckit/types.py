"""Type aliases for gRPC objects whose stubs are generic, the one way our interceptors
wrap a method's behaviour, and the one way a call's values (its caller, its request id) are
bound for the length of the call."""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

import grpc

T = TypeVar("T")

Context = grpc.aio.ServicerContext[Any, Any]
"""The servicer context of any method (requests and responses are typed per method)."""

Unary = Callable[[Any, Context], Awaitable[Any]]
"""The behaviour of a unary-unary method."""

Stream = Callable[[Any, Context], AsyncIterator[Any]]
"""The behaviour of a unary-stream (server-streaming) method."""


Deserializer = Callable[[bytes], Any]
"""How a method reads its request's bytes."""


def rewrap(
    handler: grpc.RpcMethodHandler[Any, Any],
    unary: Callable[[Unary], Unary],
    stream: Callable[[Stream], Stream],
    reading: Callable[[Deserializer], Deserializer] | None = None,
) -> grpc.RpcMethodHandler[Any, Any]:
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
        self._entries: dict[str, tuple[object, grpc.RpcMethodHandler[Any, Any]]] = {}

    def get(
        self,
        method: str,
        handler: grpc.RpcMethodHandler[Any, Any],
        wrap: Callable[[], grpc.RpcMethodHandler[Any, Any]],
    ) -> grpc.RpcMethodHandler[Any, Any]:
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
