"""The channels every service opens: a peer that stops answering without closing anything
(a silent partition, a hung host) is noticed by the keepalive, so a stream that would carry
revocations ends instead of looking alive for ever."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from cmk_trio.rpckit.channels import KEEPALIVE_TIME_MS, KEEPALIVE_TIMEOUT_MS, open_channel
from tests.partition import Link

HANG_GUARD_S = 30.0  # a guard only: the keepalive notices after KEEPALIVE_TIME_MS + KEEPALIVE_TIMEOUT_MS


@pytest.fixture
async def health_behind_a_link() -> AsyncIterator[Link]:
    server = grpc.aio.server(
        options=[("grpc.keepalive_permit_without_calls", 1), ("grpc.http2.max_ping_strikes", 0),
                 ("grpc.http2.min_recv_ping_interval_without_data_ms", KEEPALIVE_TIME_MS // 2)]
    )  # fmt: skip
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    link = Link(port)
    await link.open()
    try:
        yield link
    finally:
        await link.close()
        await server.stop(0)


@pytest.mark.timeout(60)
async def test_a_stream_to_a_silently_cut_peer_ends(health_behind_a_link):
    """Found by the fault suite: with keepalive_timeout_ms alone, gRPC 1.85 sent the ping and
    never gave up waiting for its answer, so a partition went unnoticed for good."""
    assert KEEPALIVE_TIME_MS + KEEPALIVE_TIMEOUT_MS < 10_000
    channel = open_channel(health_behind_a_link.endpoint)
    try:
        stub: Any = health_pb2_grpc.HealthStub(channel)  # its methods are set at run time
        stream = stub.Watch(health_pb2.HealthCheckRequest())
        first = await stream.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        health_behind_a_link.partition()
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await asyncio.wait_for(stream.read(), HANG_GUARD_S)
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await channel.close()


async def test_a_peer_a_slow_round_trip_away_is_reached_on_the_first_try():
    """A connection's attempt (TCP, TLS, HTTP/2 settings) had 100 ms to finish: gRPC takes its
    minimum connect timeout from `grpc.min_reconnect_backoff_ms`, which we had set to 100 to
    reconnect fast. Across a link with a round trip of 300 ms (another region; a machine under
    load) every first call then failed UNAVAILABLE ("handshaker shutdown" over TLS). The
    backoff still starts at 100 ms; the attempt has as long as a connection may take."""
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    far = Link(port, delay=0.15)
    await far.open()
    channel = open_channel(far.endpoint)
    try:
        stub: Any = health_pb2_grpc.HealthStub(channel)  # the stub's methods are set at run time
        answer = await stub.Check(health_pb2.HealthCheckRequest(), timeout=HANG_GUARD_S)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await channel.close()
        await far.close()
        await server.stop(0)


def test_a_process_that_serves_https_runs_on_asyncios_loop():
    """Under uvloop, identity's HTTPS handshakes hung for good in about half of the processes
    that `cmk serve identity` started with a certificate (the container suite's discovery test
    failed twice in a row); asyncio's loop never did. Until that is understood, such a process
    does not run on uvloop (rpckit.server.UVLOOP_TLS_HANGS)."""
    from cmk_trio.rpckit.server import run

    seen: list[str] = []

    async def which() -> None:
        seen.append(type(asyncio.get_running_loop()).__module__)

    run(which, serves_https=True)
    run(which)
    assert seen[0].startswith("asyncio")
    assert seen[1].startswith(("uvloop", "asyncio"))  # (uvloop where it is installed)
