"""The server bootstrap's TLS and mutual TLS, on the identity service: a client without a
certificate from the configured CA is refused at the handshake."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cmk_trio.client.channel import ChannelTls, open_channel
from cmk_trio.identity.server import build_server
from cmk_trio.rpckit.config import TlsConfig
from tests.conftest import identity_config
from tests.rpckit.certs import ScratchCa


async def _health(endpoint: str, tls: ChannelTls | None) -> int:
    channel = open_channel(endpoint, tls)
    try:
        stub: Any = health_pb2_grpc.HealthStub(channel)  # the stub's methods are set at run time
        reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=3)
        return int(reply.status)
    finally:
        await channel.close()


async def test_mutual_tls_accepts_only_clients_of_the_configured_ca(tmp_path, clock):
    ca = ScratchCa(tmp_path / "ca")
    stranger = ScratchCa(tmp_path / "other", "other-ca")
    server_cert, server_key = ca.issue("identity", server=True)
    client_cert, client_key = ca.issue("speech", server=False)
    rogue_cert, rogue_key = stranger.issue("rogue", server=False)
    tls = TlsConfig(cert_file=server_cert, key_file=server_key, client_ca_file=ca.cert_file)
    server = await build_server(identity_config(tmp_path / "id", tls=tls), clock=clock)
    endpoint = f"127.0.0.1:{server.port}"
    try:
        good = ChannelTls(ca.cert_file, client_cert, client_key)
        assert await _health(endpoint, good) == health_pb2.HealthCheckResponse.SERVING
        for refused in (ChannelTls(ca.cert_file), ChannelTls(ca.cert_file, rogue_cert, rogue_key), None):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await _health(endpoint, refused)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        # A client that does not trust the server's CA refuses it too.
        with pytest.raises(grpc.aio.AioRpcError):
            await _health(endpoint, ChannelTls(stranger.cert_file, client_cert, client_key))
    finally:
        await server.stop(0)


async def test_plain_tls_without_client_certificates(tmp_path, clock):
    ca = ScratchCa(tmp_path / "ca")
    server_cert, server_key = ca.issue("identity", server=True)
    server = await build_server(
        identity_config(tmp_path / "id", tls=TlsConfig(cert_file=server_cert, key_file=server_key)), clock=clock
    )
    try:
        status = await _health(f"127.0.0.1:{server.port}", ChannelTls(ca.cert_file))
        assert status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await server.stop(0)
