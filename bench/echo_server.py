"""Ceiling A: a bare grpc.aio echo service with the trio's server settings (same bootstrap,
same interceptors' absence of work), printing its port."""

from __future__ import annotations

import asyncio
import sys

import grpc

from cmk_trio.rpckit.server import start_server

SERVICE = "cmk.bench.v1.Echo"


async def main() -> None:
    async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:  # type: ignore[type-arg]
        return request

    handlers: dict[str, grpc.RpcMethodHandler[bytes, bytes]] = {"Echo": grpc.unary_unary_rpc_method_handler(echo)}

    def register(server: grpc.aio.Server) -> None:
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))

    running = await start_server(register=register, service_names=[SERVICE], interceptors=[])
    print(running.port, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
    sys.exit(0)
