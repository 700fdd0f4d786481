"""What running in containers needs of the services: a server bound to every address is
dialled on loopback (its certificates name 127.0.0.1, not 0.0.0.0), the CA's key can be kept
away from the certificates the services mount, and the operator's file can live apart from
the database."""

from __future__ import annotations

import base64
import json
import os
from urllib.parse import urlsplit

import asyncpg
import pytest
from click.testing import CliRunner

from cmk_trio.cli.main import cli
from cmk_trio.identity.config import IdentityConfig
from cmk_trio.identity.server import build_server
from cmk_trio.rpckit.devca import ensure_dev_pki, issue_copy
from cmk_trio.rpckit.server import dialable
from cmk_trio.rpckit.storage import roles


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
    config = IdentityConfig.load({"CMK_OPERATOR_FILE": str(tmp_path / "operator" / "operator.json")},
                                 {"CMK_DATA_DIR": str(tmp_path / "data"), "CMK_IDENTITY_PORT": "0",
                                  "CMK_SECRET_HASH_COST": "10"})  # fmt: skip
    (tmp_path / "operator").mkdir(mode=0o700)
    server = await build_server(config, clock=clock)
    try:
        assert json.loads((tmp_path / "operator" / "operator.json").read_text())["client_secret"]
        assert not (tmp_path / "data" / "operator.json").exists()
    finally:
        await server.stop(0)


def test_issue_copy_gives_a_service_its_own_certificate_and_no_other(tmp_path):
    pki = ensure_dev_pki(tmp_path / "pki", ca_key_dir=tmp_path / "ca")
    issue_copy(pki, "speech", tmp_path / "speech")
    issue_copy(pki, "speech", tmp_path / "speech")  # again (every `up`): the same files
    assert sorted(p.name for p in (tmp_path / "speech").iterdir()) == ["ca.crt", "speech.crt", "speech.key"]
    assert (tmp_path / "speech" / "speech.key").read_bytes() == pki.identity("speech").key_file.read_bytes()
    assert oct((tmp_path / "speech" / "speech.key").stat().st_mode & 0o777) == "0o600"


def test_a_ca_key_made_beside_the_certificates_moves_to_its_own_directory(tmp_path):
    old = ensure_dev_pki(tmp_path / "tls")  # the layout before --ca-key-dir
    key = (tmp_path / "tls" / "ca.key").read_bytes()
    ensure_dev_pki(tmp_path / "tls", ca_key_dir=tmp_path / "ca")
    assert not (tmp_path / "tls" / "ca.key").exists()
    assert (tmp_path / "ca" / "ca.key").read_bytes() == key
    assert old.ca_file.exists()


def test_a_scram_verifier_is_what_postgresql_computes():
    # RFC 7677's example: user "user", password "pencil", this salt and 4096 iterations give
    # this stored key and server key (the SCRAM-SHA-256 exchange of section 3).
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    verifier = roles.scram_verifier("pencil", salt, 4096)
    assert verifier == (
        "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
        "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
    )


def test_the_roles_tool_refuses_bad_input_before_writing(tmp_path):
    admin = tmp_path / "admin"
    admin.mkdir()
    for services in ({"Bad": tmp_path}, {"ok": tmp_path / "missing"}):
        with pytest.raises(roles.RolesError):
            roles.make_secrets(admin, services)
        assert list(admin.iterdir()) == []
    assert roles.main(["secrets", str(admin), "nodir"]) == 1


async def test_each_service_gets_a_role_and_a_database_no_other_role_can_reach(tmp_path, postgres_url):
    """compose.replicas.yaml's roles, made against the local server: a login role and a
    database of its own per service; another service's role cannot connect to it."""
    tag = os.urandom(3).hex()
    services = {f"a{tag}": tmp_path / "a", f"b{tag}": tmp_path / "b"}
    for directory in (tmp_path / "admin", *services.values()):
        directory.mkdir()
    made = roles.make_secrets(tmp_path / "admin", services)
    assert len(made) == 5 and roles.make_secrets(tmp_path / "admin", services) == []  # once
    assert all(oct(os.stat(p).st_mode & 0o777) == "0o600" for p in made)
    url = urlsplit(postgres_url)._replace(query="").geturl()
    a, b = (roles.role_of(name) for name in services)
    server = urlsplit(url)
    try:
        for _ in range(2):  # a second run changes nothing
            await roles.grant(url, tmp_path / "admin", list(services), admin_password=server.password or "")
        own = await asyncpg.connect(server._replace(path=f"/{a}").geturl(), user=a,
                                    passfile=str(services[f"a{tag}"] / "pgpass"))  # fmt: skip
        try:
            attributes = await own.fetchrow(
                "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls FROM pg_roles "
                "WHERE rolname = current_user"
            )
            assert not any(attributes.values())
            assert await own.fetchval("SELECT pg_catalog.pg_get_userbyid(datdba) FROM pg_database "
                                      "WHERE datname = current_database()") == a  # fmt: skip
        finally:
            await own.close()
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await asyncpg.connect(server._replace(path=f"/{a}").geturl(), user=b)
    finally:
        conn = await asyncpg.connect(url)
        try:
            for role in (a, b):
                await conn.execute(f'DROP DATABASE IF EXISTS "{role}"')
                await conn.execute(f'DROP ROLE IF EXISTS "{role}"')
        finally:
            await conn.close()


def test_certs_refuses_an_issue_target_that_would_overwrite_the_pki(tmp_path):
    pki = tmp_path / "pki"
    CliRunner().invoke(cli, ["certs", "--dir", str(pki), "--ca-key-dir", str(tmp_path / "ca")])
    key = (pki / "identity.key").read_bytes()
    for target in (str(pki), str(tmp_path / "ca"), str(pki / "identity.crt")):
        result = CliRunner().invoke(
            cli, ["certs", "--dir", str(pki), "--ca-key-dir", str(tmp_path / "ca"), "--issue-to", f"identity={target}"]
        )
        assert result.exit_code == 2 and "directory of its own" in result.output, result.output
    both = ["--issue-to", f"identity={tmp_path / 'x'}", "--issue-to", f"speech={tmp_path / 'x'}"]
    result = CliRunner().invoke(cli, ["certs", "--dir", str(pki), *both])
    assert result.exit_code == 2, result.output
    assert (pki / "identity.key").read_bytes() == key and not (tmp_path / "x").exists()


def test_a_ca_half_there_is_a_clear_error(tmp_path):
    CliRunner().invoke(cli, ["certs", "--dir", str(tmp_path / "pki"), "--ca-key-dir", str(tmp_path / "ca")])
    (tmp_path / "ca" / "ca.key").unlink()  # the CA's volume removed, the certificates' kept
    result = CliRunner().invoke(cli, ["certs", "--dir", str(tmp_path / "pki"), "--ca-key-dir", str(tmp_path / "ca")])
    assert result.exit_code == 1 and "the CA is half there" in result.output, result.output
    assert not (tmp_path / "ca" / "ca.key").exists()
