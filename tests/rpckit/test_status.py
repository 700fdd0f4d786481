"""The error mapping, on a real server: domain errors become their status code with
ErrorInfo and field violations; anything else becomes a generic INTERNAL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from cmk_trio.rpckit import errors
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.server import RunningServer, start_server
from cmk_trio.rpckit.status import CODES, ErrorInterceptor, error_from_rpc, error_info_of
from cmk_trio.rpckit.testing import expect_rpc_error

SERVICE = "cmk.test.v1.Faulty"


def _raise(exc: BaseException):
    async def unary(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        raise exc

    return unary


def _stream_raise(exc: BaseException):
    async def stream(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> AsyncIterator[bytes]:
        yield b"first"
        raise exc

    return stream


SECRET_IN_EXCEPTION = "cmk~topsecretvaluethatmustnotleak0000"


@pytest.fixture
async def faulty() -> AsyncIterator[tuple[RunningServer, grpc.aio.Channel]]:
    handlers: dict[str, grpc.RpcMethodHandler[bytes, bytes]] = {
        "NotFound": grpc.unary_unary_rpc_method_handler(
            _raise(errors.NotFound(Reason.TENANT_NOT_FOUND, "tenant t does not exist", metadata={"name": "t"}))
        ),
        "Bad": grpc.unary_unary_rpc_method_handler(
            _raise(errors.invalid_field("tenant.display_name", Reason.FIELD_TOO_LONG, "too long"))
        ),
        "Bug": grpc.unary_unary_rpc_method_handler(_raise(RuntimeError(SECRET_IN_EXCEPTION))),
        "StreamBug": grpc.unary_stream_rpc_method_handler(
            _stream_raise(errors.Unavailable(Reason.DEPENDENCY_UNAVAILABLE, "down"))
        ),
    }

    def register(server: grpc.aio.Server) -> None:
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))

    running = await start_server(
        register=register, service_names=[SERVICE], interceptors=[ErrorInterceptor("test.cmk.dev")]
    )
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        yield running, channel
    finally:
        await channel.close()
        await running.stop(0)


def _unary(channel: grpc.aio.Channel, method: str) -> grpc.aio.UnaryUnaryCall[bytes, bytes]:
    call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(f"/{SERVICE}/{method}")
    return call(b"")


async def test_a_domain_error_carries_its_code_reason_domain_and_metadata(faulty):
    _, channel = faulty
    exc = await expect_rpc_error(_unary(channel, "NotFound"), grpc.StatusCode.NOT_FOUND, Reason.TENANT_NOT_FOUND)
    info = error_info_of(exc)
    assert info is not None and info.domain == "test.cmk.dev" and dict(info.metadata) == {"name": "t"}
    typed = error_from_rpc(exc)
    assert isinstance(typed, errors.NotFound) and typed.reason is Reason.TENANT_NOT_FOUND


async def test_field_violations_travel_as_bad_request(faulty):
    _, channel = faulty
    exc = await expect_rpc_error(_unary(channel, "Bad"), grpc.StatusCode.INVALID_ARGUMENT, Reason.FIELD_TOO_LONG)
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]  # AioRpcError is a grpc.Call at run time
    bad = error_details_pb2.BadRequest()
    assert any(d.Unpack(bad) for d in status.details if d.Is(error_details_pb2.BadRequest.DESCRIPTOR))
    assert bad.field_violations[0].field == "tenant.display_name"


async def test_an_unexpected_exception_is_internal_and_says_nothing(faulty, caplog):
    _, channel = faulty
    exc = await expect_rpc_error(_unary(channel, "Bug"), grpc.StatusCode.INTERNAL, Reason.INTERNAL)
    assert SECRET_IN_EXCEPTION not in (exc.details() or "")
    assert "RuntimeError" not in (exc.details() or "")
    assert any("unexpected error" in r.getMessage() for r in caplog.records)


async def test_a_streaming_error_is_mapped_too(faulty):
    _, channel = faulty
    stream = channel.unary_stream(f"/{SERVICE}/StreamBug")(b"")
    assert await stream.read() == b"first"
    await expect_rpc_error(stream.read(), grpc.StatusCode.UNAVAILABLE, Reason.DEPENDENCY_UNAVAILABLE)


def test_every_base_has_a_distinct_code():
    codes = [code for _, code in CODES]
    assert len(codes) == len(set(codes))


def test_every_reason_is_upper_snake_and_its_own_name():
    import re

    for reason in Reason:
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", reason.value) and reason.name == reason.value
