"""Helpers for tests of any service: assert an error on the wire."""

from __future__ import annotations

from collections.abc import Awaitable

import grpc

from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.status import error_info_of


async def expect_rpc_error(call: Awaitable[object], code: grpc.StatusCode, reason: Reason) -> grpc.aio.AioRpcError:
    """Await a gRPC call that must fail with `code` and an ErrorInfo of `reason`."""
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        info = error_info_of(exc)
        got = (exc.code(), info.reason if info else None)
        if got != (code, reason.value):
            raise AssertionError(
                f"expected {code.name}/{reason.value}, got {got[0].name}/{got[1]}: {exc.details()}"
            ) from exc
        return exc
    raise AssertionError(f"expected {code.name}/{reason.value}, but the call succeeded")
