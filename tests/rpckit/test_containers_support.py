"""What running in containers needs of the services: a server bound to every address is
dialled on loopback (its certificates name 127.0.0.1, not 0.0.0.0), the CA's key can be kept
away from the certificates the services mount, and the operator's file can live apart from
the database."""

from __future__ import annotations

import json

from click.testing import CliRunner

from cmk_trio.cli.main import cli
from cmk_trio.identity.config import IdentityConfig
from cmk_trio.identity.server import build_server
from cmk_trio.rpckit.server import dialable


def test_a_wildcard_listener_is_dialled_on_loopback():
    # (The services' endpoint is this; a server bound to every address is started in the
    # container suite only: tests here listen on loopback.)
    assert dialable("0.0.0.0", 50051) == "127.0.0.1:50051"  # noqa: S104
    assert dialable("", 7) == "127.0.0.1:7"
    assert dialable("::", 7) == "[::1]:7"
    assert dialable("127.0.0.1", 7) == "127.0.0.1:7"
    assert dialable("identity", 50051) == "identity:50051"


def test_certs_keeps_the_ca_key_in_its_own_directory(tmp_path):
    tls, ca = tmp_path / "tls", tmp_path / "ca"
    result = CliRunner().invoke(cli, ["--output", "json", "certs", "--dir", str(tls), "--ca-key-dir", str(ca)])
    assert result.exit_code == 0, result.output
    assert (ca / "ca.key").exists() and not (tls / "ca.key").exists()
    assert oct((ca / "ca.key").stat().st_mode & 0o777) == "0o600"
    first = json.loads(result.output)
    # A second run reuses the CA from its own directory and keeps the certificates.
    again = CliRunner().invoke(cli, ["--output", "json", "certs", "--dir", str(tls), "--ca-key-dir", str(ca)])
    assert again.exit_code == 0 and json.loads(again.output) == first


async def test_the_operator_file_can_live_apart_from_the_data(tmp_path, clock):
    config = IdentityConfig.from_env({"CMK_OPERATOR_FILE": str(tmp_path / "operator" / "operator.json")},
                                     data_dir=tmp_path / "data", port=0, secret_hash_cost=10)  # fmt: skip
    (tmp_path / "operator").mkdir(mode=0o700)
    server = await build_server(config, clock=clock)
    try:
        assert json.loads((tmp_path / "operator" / "operator.json").read_text())["client_secret"]
        assert not (tmp_path / "data" / "operator.json").exists()
    finally:
        await server.stop(0)
