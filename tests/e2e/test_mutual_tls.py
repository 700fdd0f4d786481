"""Mutual TLS between the services of `cmk up`: certificates of the development CA are
accepted, a certificate of another CA and no certificate at all are refused."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cmk_trio.client.identity import IdentityClient
from cmk_trio.client.keyvault import KeyVaultClient
from cmk_trio.launcher.trio import start_trio
from cmk_trio.rpckit.channels import ChannelTls, open_channel
from cmk_trio.rpckit.devca import DevPki, ensure_dev_pki
from cmk_trio.rpckit.errors import PermissionDenied
from cmk_trio.rpckit.reasons import Reason
from tests.conftest import operator_credentials


async def _check(endpoint: str, tls: ChannelTls | None) -> int:
    channel = open_channel(endpoint, tls)
    try:
        stub: Any = health_pb2_grpc.HealthStub(channel)  # the stub's methods are set at run time
        return int((await stub.Check(health_pb2.HealthCheckRequest(), timeout=3)).status)
    finally:
        await channel.close()


async def test_the_trio_accepts_only_certificates_of_its_own_ca(tmp_path):
    trio = await start_trio(tmp_path / "data", mutual_tls=True, env={"CMK_SECRET_HASH_COST": "10"})
    try:
        assert trio.tls_dir is not None
        pki = DevPki(trio.tls_dir)
        cli = pki.identity("cli")
        stranger = ensure_dev_pki(tmp_path / "stranger")
        rogue = stranger.identity("cli")
        for name, endpoint in trio.endpoints.items():
            assert await _check(endpoint, ChannelTls(pki.ca_file, cli.cert_file, cli.key_file)) == 1, name
            for refused in (
                ChannelTls(pki.ca_file, rogue.cert_file, rogue.key_file),  # a certificate of another CA
                ChannelTls(pki.ca_file),  # no certificate at all
                None,  # not even TLS
            ):
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await _check(endpoint, refused)
                assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        # The services reach each other over mutual TLS: the vault checks the operator's token
        # against identity's keys and asks identity for the operator's role, and says no
        # (the operator has no role on a made-up subscription): a refusal, not UNAVAILABLE.
        ok_tls = ChannelTls(pki.ca_file, cli.cert_file, cli.key_file)
        identity_channel = open_channel(trio.endpoints["identity"], ok_tls)
        vault_channel = open_channel(trio.endpoints["keyvault"], ok_tls)
        try:
            operator = IdentityClient(identity_channel, operator_credentials(trio.identity))
            vaults = KeyVaultClient(vault_channel, operator.token_for)
            with pytest.raises(PermissionDenied) as denied:
                await vaults.list_vaults(str(uuid.uuid4()))
            assert denied.value.reason is Reason.ROLE_REQUIRED
        finally:
            await identity_channel.close()
            await vault_channel.close()
    finally:
        await trio.stop()


class Impostor:
    """A gRPC server holding a real certificate of the trio's CA (another service's, valid
    for localhost like every one of them) that answers every call UNIMPLEMENTED and keeps
    the metadata it was sent: a bearer token meant for the service it poses as, if any."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []
        self.port = 0
        self.server: grpc.aio.Server | None = None

    async def start(self, cert_file, key_file) -> None:
        impostor = self

        class Everything(grpc.GenericRpcHandler):
            def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any] | None:
                impostor.seen.append({k: str(v) for k, v in details.invocation_metadata})
                return None  # UNIMPLEMENTED, once the token has been read

        self.server = grpc.aio.server()
        self.server.add_generic_rpc_handlers((Everything(),))
        creds = grpc.ssl_server_credentials([(key_file.read_bytes(), cert_file.read_bytes())])
        self.port = self.server.add_secure_port("127.0.0.1:0", creds)
        await self.server.start()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(0)


async def test_a_client_knows_which_service_it_called(tmp_path):
    """Every certificate of the trio's CA is valid for localhost, so a client that checked
    only the host took any service's certificate for any other's. A client of a service
    checks that the certificate names that service: a channel to the vault that reaches
    identity (or a process holding the speech service's certificate) is refused at the
    handshake, and no token meant for the vault leaves the client."""
    from cmk_trio.client.front import CmkClient
    from cmk_trio.rpckit.errors import Unavailable

    trio = await start_trio(tmp_path / "data", mutual_tls=True, env={"CMK_SECRET_HASH_COST": "10"})
    impostor = Impostor()
    try:
        assert trio.tls_dir is not None
        pki = DevPki(trio.tls_dir)
        cli = pki.identity("cli")
        tls = ChannelTls(pki.ca_file, cli.cert_file, cli.key_file)
        speech = pki.identity("speech")
        await impostor.start(speech.cert_file, speech.key_file)
        cmk = CmkClient.connect(
            trio.endpoints["identity"],
            keyvault=f"localhost:{impostor.port}",
            credentials=operator_credentials(trio.identity),
            tls=tls,
            timeout=3,
            retries=False,
        )
        try:
            with pytest.raises(Unavailable):
                await cmk.vault.list_vaults(str(uuid.uuid4()))
        finally:
            await cmk.close()
        assert impostor.seen == []  # not even the call's name, let alone the vault's token
        for dialled, endpoint in trio.endpoints.items():
            for expected in trio.endpoints:
                channel = open_channel(endpoint, tls, peer=expected)
                try:
                    stub: Any = health_pb2_grpc.HealthStub(channel)
                    if expected == dialled:
                        assert (await stub.Check(health_pb2.HealthCheckRequest(), timeout=3)).status == 1
                    else:
                        with pytest.raises(grpc.aio.AioRpcError) as caught:
                            await stub.Check(health_pb2.HealthCheckRequest(), timeout=3)
                        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, (dialled, expected)
                finally:
                    await channel.close()
    finally:
        await impostor.stop()
        await trio.stop()
