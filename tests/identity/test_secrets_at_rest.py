"""No secret in the database file or the logs: the tests read the raw bytes."""

from __future__ import annotations

import base64
import json
import logging

import pytest
from cryptography.hazmat.primitives import serialization

from cmk_trio.proto.identity.v1 import resources_pb2 as res
from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.datadir import StartupError
from cmk_trio.rpckit.errors import PermissionDenied
from cmk_trio.rpckit.logs import JsonFormatter
from cmk_trio.rpckit.reasons import Reason
from tests import raw_database
from tests.identity.helpers import make_principal, make_tenant


async def test_no_secret_reaches_the_database_or_the_log(identity, operator, channel, clock, caplog):
    caplog.set_level(logging.DEBUG)
    t = await make_tenant(operator, channel, clock, "Secretive")
    _, creds, app_client = await make_principal(operator, channel, clock, t.tenant_id, "app")
    token = (await operator.issue_token(creds, audiences.VAULT)).access_token
    await app_client.get_tenant(t.tenant_id)
    await operator.rotate_signing_key()
    with pytest.raises(PermissionDenied) as refused:
        await app_client.create_tenant("not allowed")  # a refusal is logged
    assert refused.value.reason is Reason.OPERATOR_REQUIRED
    operator_secret = json.loads(identity.config.operator_file.read_text())["client_secret"]
    secrets = [creds.client_secret, t.admin_credentials.client_secret, operator_secret, token]
    signer = await identity.keys.signer()
    private_der = signer._key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )

    stored = await raw_database.stored_bytes(identity.config.database_location, "identity")
    for secret in secrets:
        assert secret.encode() not in stored
    assert b"PRIVATE KEY" not in stored
    assert private_der[-64:] not in stored  # not in DER either
    master = base64.b64decode(identity.config.master_key_path.read_text())
    assert master not in stored

    formatter = JsonFormatter("identity")
    logged = "\n".join(formatter.format(r) for r in caplog.records)
    assert "call refused" in logged
    for secret in secrets:
        assert secret not in logged


async def test_the_master_key_file_is_private_and_required(identity, tmp_path):
    path = identity.config.master_key_path
    assert path.stat().st_mode & 0o777 == 0o600
    assert identity.config.operator_file.stat().st_mode & 0o777 == 0o600


async def test_a_restart_keeps_keys_and_does_not_bootstrap_again(tmp_path, clock):
    from cmk_trio.identity.server import build_server
    from tests.conftest import identity_config

    config = identity_config(tmp_path / "id")
    first = await build_server(config, clock=clock)
    kid = (await first.keys.signer()).kid
    assert first.new_operator_secret is not None
    await first.stop(0)
    second = await build_server(config, clock=clock)
    try:
        assert second.new_operator_secret is None
        assert (await second.keys.signer()).kid == kid
        assert second.operator.object_id == first.operator.object_id
    finally:
        await second.stop(0)


async def test_a_lost_master_key_stops_the_start_instead_of_making_a_new_one(tmp_path, clock):
    import pytest

    from cmk_trio.identity.server import build_server
    from tests.conftest import identity_config

    config = identity_config(tmp_path / "id")
    await (await build_server(config, clock=clock)).stop(0)
    config.master_key_path.unlink()
    with pytest.raises(StartupError, match="missing"):
        await build_server(config, clock=clock)
    assert not config.master_key_path.exists()


async def test_a_wrong_master_key_cannot_open_the_signing_key(tmp_path, clock):
    import pytest

    from cmk_trio.identity.server import build_server
    from tests.conftest import identity_config

    config = identity_config(tmp_path / "id")
    await (await build_server(config, clock=clock)).stop(0)
    config.master_key_path.write_text(base64.b64encode(b"\x01" * 32).decode())
    with pytest.raises(StartupError, match="does not open the signing keys"):
        await build_server(config, clock=clock)


async def test_configured_operator_credentials_are_used_and_not_written(tmp_path, clock):
    from cmk_trio.client.channel import open_channel
    from cmk_trio.client.identity import ClientCredentials, IdentityClient
    from cmk_trio.identity.server import build_server
    from tests.conftest import identity_config

    client_id = "11111111-2222-4333-8444-555555555555"
    config = identity_config(tmp_path / "id", operator_client_id=client_id, operator_client_secret="s" * 32)
    server = await build_server(config, clock=clock)
    channel = open_channel(server.endpoint)
    try:
        assert server.new_operator_secret is None
        assert not config.operator_file.exists()
        client = IdentityClient(channel, ClientCredentials(server.operator.tenant_id, client_id, "s" * 32), clock=clock)
        tenants = await client.list_tenants()
        assert [t.platform for t in tenants.tenants] == [True]
        assert (
            await client.get_principal(server.operator.tenant_id, server.operator.object_id)
        ).kind == res.SERVICE_PRINCIPAL
    finally:
        await channel.close()
        await server.stop(0)
