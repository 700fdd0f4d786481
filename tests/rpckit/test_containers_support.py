"""What running in containers needs of the services: a server bound to every address is
dialled on loopback (its certificates name 127.0.0.1, not 0.0.0.0), the CA's key can be kept
away from the certificates the services mount, and the operator's file can live apart from
the database."""

from __future__ import annotations

import json
import os
from urllib.parse import urlsplit

import asyncpg
import pytest
from click.testing import CliRunner

from cmk_trio.cli.main import cli
from cmk_trio.identity.config import IdentityConfig
from cmk_trio.identity.server import build_server
from cmk_trio.launcher import database_roles
from cmk_trio.rpckit.devca import ensure_dev_pki, issue_copy
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


async def test_database_roles_reach_their_own_schema_only(tmp_path, postgres_url):
    """compose.replicas.yaml's roles, made against the local server: one login role per
    service, owning the schema it creates, with no privilege on another's."""
    tag = os.urandom(3).hex()
    services = {f"a{tag}": tmp_path / "a", f"b{tag}": tmp_path / "b"}
    for directory in services.values():
        directory.mkdir()
    admin = tmp_path / "admin"
    admin.mkdir()
    made = database_roles.make_secrets(admin, services)
    assert len(made) == 5 and database_roles.make_secrets(admin, services) == []  # once
    assert all(oct(os.stat(p).st_mode & 0o777) == "0o600" for p in made)
    url = urlsplit(postgres_url)._replace(query="").geturl()
    database = urlsplit(url).path.lstrip("/")
    await database_roles.grant(url, admin, list(services))
    await database_roles.grant(url, admin, list(services))  # again: nothing new
    a, b = (database_roles.role_of(name) for name in services)
    try:
        first = await asyncpg.connect(url, user=a)
        try:
            await first.execute(f'CREATE SCHEMA "{a}"')
            await first.execute(f'CREATE TABLE "{a}".t (x int)')
            assert not await first.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        finally:
            await first.close()
        second = await asyncpg.connect(url, user=b)
        try:
            assert await second.fetchval("SELECT has_schema_privilege(current_user, $1, 'USAGE')", a) is False
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await second.fetch(f'SELECT * FROM "{a}".t')  # noqa: S608 (a role name of the test's own)
        finally:
            await second.close()
    finally:
        conn = await asyncpg.connect(url)
        try:
            for role in (a, b):
                await conn.execute(f'DROP SCHEMA IF EXISTS "{role}" CASCADE')
                await conn.execute(f'DROP OWNED BY "{role}"')
                await conn.execute(f'DROP ROLE "{role}"')
            await conn.execute(f'GRANT CONNECT, TEMPORARY ON DATABASE "{database}" TO PUBLIC')
        finally:
            await conn.close()
