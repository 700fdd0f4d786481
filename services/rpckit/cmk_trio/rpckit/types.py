"""Type aliases for gRPC objects whose stubs are generic, and the one way our interceptors
wrap a method's behaviour."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import grpc

Context = grpc.aio.ServicerContext[Any, Any]
"""The servicer context of any method (requests and responses are typed per method)."""

Unary = Callable[[Any, Context], Awaitable[Any]]
"""The behaviour of a unary-unary method."""

Stream = Callable[[Any, Context], AsyncIterator[Any]]
"""The behaviour of a unary-stream (server-streaming) method."""


def rewrap(
    handler: grpc.RpcMethodHandler[Any, Any], unary: Callable[[Unary], Unary], stream: Callable[[Stream], Stream]
) -> grpc.RpcMethodHandler[Any, Any]:
    """`handler` with its behaviour wrapped by `unary` or `stream`, serializers kept. Other
    kinds (client- and bidi-streaming; we have none) are returned as they are."""
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            unary(cast(Unary, handler.unary_unary)),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            stream(cast(Stream, handler.unary_stream)),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return handler
