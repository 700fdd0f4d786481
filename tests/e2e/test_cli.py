"""The `cmk` command (in this process) against a real `cmk serve identity` process: health,
reflection, the tenant, subscription, principal, secret, role and token commands with
--output json; and, as a process of its own, `python -m cmk_trio.cli` and
`python -m cmk_trio.identity`."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.e2e.conftest import CMK, Served, cmk_json, invoke, service_env


def cmk(served: Served, *args: str, ok: bool = True) -> Any:
    return cmk_json(served.env, *args, ok=ok)


def test_health_reflection_and_graceful_shutdown(served):
    assert cmk(served, "health", "--endpoint", served.endpoint)["status"] == "SERVING"
    with grpc.insecure_channel(served.endpoint) as channel:
        stub: Any = reflection_pb2_grpc.ServerReflectionStub(channel)  # its methods are set at run time
        replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = {s.name for reply in replies for s in reply.list_services_response.service}
    assert {"cmk.identity.v1.IdentityService", "cmk.identity.v1.TokenService", "grpc.health.v1.Health"} <= names
    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(timeout=15) == 0


def test_the_operator_secret_is_shown_once_and_kept_in_a_private_file(served):
    operator = json.loads((served.data_dir / "operator.json").read_text())
    assert operator["client_secret"] in served.banner
    assert (served.data_dir / "operator.json").stat().st_mode & 0o777 == 0o600
    served.process.send_signal(signal.SIGTERM)
    served.process.wait(timeout=15)
    assert served.process.stderr is not None
    log = served.process.stderr.read()
    assert operator["client_secret"] not in log and '"identity service started"' in log


def test_the_directory_end_to_end_with_json_output(served, tmp_path):
    operator_file = str(served.data_dir / "operator.json")
    login = cmk(served, "login", "--endpoint", served.endpoint, "--operator-file", operator_file)
    assert login["signed_in"] is True
    profile = tmp_path / "profile.json"
    assert profile.stat().st_mode & 0o777 == 0o600
    assert json.loads(operator_file and Path(operator_file).read_text())["client_secret"] not in profile.read_text()

    tenant = cmk(served, "tenant", "create", "Contoso")
    tid = tenant["tenant_id"]
    assert tenant["issuer"].endswith(f"/{tid}/v2.0")
    other = cmk(served, "tenant", "create", "Fabrikam")["tenant_id"]
    sub = cmk(served, "subscription", "create", "--tenant", tid, "Production")
    assert cmk(served, "subscription", "show", sub["subscription_id"])["tenant_id"] == tid
    admin = cmk(served, "principal", "create", "--tenant", tid, "--kind", "user", "--admin", "--with-secret", "Alice")
    assert admin["client_secret"].startswith("cmk~") and admin["tenant_admin"] is True
    app = cmk(served, "principal", "create", "--tenant", tid, "--kind", "service-principal", "Build agent")
    listed = cmk(served, "principal", "list", tid)
    assert {p["display_name"] for p in listed["items"]} == {"Alice", "Build agent"}
    secret = cmk(served, "secret", "add", tid, app["object_id"], "--name", "ci", "--days", "30")
    assert cmk(served, "secret", "list", tid, app["object_id"])["items"][0]["secret_id"] == secret["secret_id"]

    scope = f"/subscriptions/{sub['subscription_id']}/resourceGroups/speech"
    assignment = cmk(
        served, "role", "assign", "--principal", app["object_id"], "--role", "contributor", "--scope", scope
    )
    assert assignment["role"] == "CONTRIBUTOR"
    check = cmk(
        served,
        "role",
        "check",
        "--scope",
        scope + "/providers/Microsoft.CognitiveServices/accounts/s1",
        "--action",
        "write",
        "--principal",
        app["object_id"],
    )
    assert check["allowed"] is True
    assert cmk(served, "role", "list", "--principal", app["object_id"])["items"][0]["scope"] == scope

    token = cmk(
        served,
        "token",
        "get",
        "--audience",
        "vault",
        "--tenant",
        tid,
        "--client-id",
        secret["client_id"],
        "--client-secret",
        secret["client_secret"],
    )
    assert token["token_type"] == "Bearer" and token["expires_in"] == 900

    cmk(served, "principal", "disable", tid, app["object_id"])
    refused = cmk(
        served,
        "token",
        "get",
        "--audience",
        "vault",
        "--tenant",
        tid,
        "--client-id",
        secret["client_id"],
        "--client-secret",
        secret["client_secret"],
        ok=False,
    )
    assert refused["error"]["reason"] == "PRINCIPAL_DISABLED"
    events = cmk(served, "events", "list", "--wait", "0.5")
    assert "PRINCIPAL_DISABLED" in [e["type"] for e in events["items"]]

    moved = cmk(served, "subscription", "transfer", sub["subscription_id"], "--to", other)
    assert moved["tenant_id"] == other
    assert cmk(served, "role", "list", "--principal", app["object_id"])["items"] == []

    rotated = cmk(served, "signing-key", "rotate")
    keys = cmk(served, "signing-key", "list")["items"]
    assert [k["state"] for k in keys] == ["ACTIVE", "RETIRING"] and keys[0]["kid"] == rotated["kid"]

    bad = cmk(served, "tenant", "show", "not-a-uuid", ok=False)
    assert bad["error"] == {
        "code": "INVALID_ARGUMENT",
        "reason": "UUID_MALFORMED",
        "message": bad["error"]["message"],
        "metadata": bad["error"]["metadata"],
    }


def test_serve_announces_itself_in_json_too(tmp_path):
    env = service_env(tmp_path)
    process = subprocess.Popen(
        [*CMK, "serve", "identity", "--data-dir", str(tmp_path / "d"), "--port", "0", "--output", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        banner = json.loads(process.stdout.readline())  # type: ignore[union-attr]
        operator = json.loads((tmp_path / "d" / "operator.json").read_text())
        assert banner["services"]["identity"] == banner["endpoint"] and banner["endpoint"].startswith("127.0.0.1:")
        assert banner["created_operator"]["client_secret"] == operator["client_secret"]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0


@pytest.mark.parametrize("how", ["flag", "env"])
def test_the_operator_secret_can_stay_out_of_standard_output(tmp_path, how):
    """For containers, whose engine keeps standard output in `logs` for good (issue 12,
    finding 10): the secret goes only to the 0600 operator file."""
    env = service_env(tmp_path)
    args = [*CMK, "serve", "identity", "--data-dir", str(tmp_path / "d"), "--port", "0"]
    if how == "flag":
        args.append("--hide-operator-secret")
    else:
        env["CMK_HIDE_OPERATOR_SECRET"] = "1"
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        banner = process.stdout.readline()  # type: ignore[union-attr]
        while "sign in with" not in banner:
            banner += process.stdout.readline()  # type: ignore[union-attr]
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=15)
    operator = json.loads((tmp_path / "d" / "operator.json").read_text())
    assert operator["client_id"] in banner and "in the file only" in banner
    assert operator["client_secret"] not in banner + out + err


def test_tables_for_people(served):
    cmk(served, "login", "--endpoint", served.endpoint, "--operator-file", str(served.data_dir / "operator.json"))
    result = invoke(served.env, "tenant", "list")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0].split() == ["TENANT_ID", "DISPLAY_NAME", "PLATFORM"]


def test_platform_credentials_are_made_once(served, tmp_path):
    out = tmp_path / "keyvault.json"
    args = ["--endpoint", served.endpoint, "platform-credentials", "--service", "keyvault",
            "--operator-file", str(served.data_dir / "operator.json"), "--out", str(out)]  # fmt: skip
    first = cmk(served, *args)
    assert first["created"] is True and out.stat().st_mode & 0o777 == 0o600
    made = json.loads(out.read_text())
    assert cmk(served, *args)["created"] is False and json.loads(out.read_text()) == made
    cmk(served, "login", "--endpoint", served.endpoint, "--operator-file", str(served.data_dir / "operator.json"))
    principal = cmk(served, "principal", "show", made["tenant_id"], first["object_id"])
    assert principal["platform_service"] == "keyvault"


# --- as processes of their own -------------------------------------------------------------


def test_the_cli_starts_as_a_module():
    result = subprocess.run([*CMK, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert {"serve", "up", "login", "vault", "speech", "load"} <= {
        line.split()[0] for line in result.stdout.split("Commands:")[1].splitlines() if line.strip()
    }


def test_the_identity_service_and_the_launcher_run_without_the_cli():
    probe = (
        "import sys, cmk_trio.identity.__main__, cmk_trio.keyvault.__main__, cmk_trio.speech.__main__,"
        " cmk_trio.launcher.trio, cmk_trio.rpckit.process;"
        "print(sorted(m for m in sys.modules if m == 'click' or m.split('.')[:2] == ['cmk_trio', 'cli']))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout.strip()) == (0, "[]"), result.stderr


@pytest.mark.parametrize("service", ["keyvault", "speech"])
def test_python_m_of_a_linked_service_says_what_it_lacks_in_one_line(service, tmp_path):
    """The key vault and speech run as `python -m` too, through the same process skeleton and
    the same settings parser as `cmk serve`: a setting missing or malformed is one line, which
    names the variable only (this way of starting takes no flags)."""
    env = service_env(tmp_path) | {"CMK_DATA_DIR": str(tmp_path / "d")}
    missing = subprocess.run([sys.executable, "-m", f"cmk_trio.{service}"], capture_output=True, text=True, env=env,
                             timeout=60)  # fmt: skip
    assert missing.returncode == 1
    assert missing.stderr.strip() == (
        f"error: the {service} service needs its identity endpoint: set CMK_IDENTITY_ENDPOINT"
    )
    env |= {"CMK_IDENTITY_ENDPOINT": "127.0.0.1:1", f"CMK_{service.upper()}_PORT": "fifty"}
    malformed = subprocess.run([sys.executable, "-m", f"cmk_trio.{service}"], capture_output=True, text=True, env=env,
                               timeout=60)  # fmt: skip
    assert malformed.returncode == 1
    assert malformed.stderr.strip() == f"error: CMK_{service.upper()}_PORT must be an integer, not 'fifty'"


def test_python_m_identity_serves_from_the_environment(tmp_path):
    env = service_env(tmp_path) | {"CMK_DATA_DIR": str(tmp_path / "d"), "CMK_IDENTITY_PORT": "0"}
    process = subprocess.Popen(
        [sys.executable, "-m", "cmk_trio.identity"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        first = process.stdout.readline()  # type: ignore[union-attr]
        assert first.startswith("identity listening on 127.0.0.1:"), first + process.stderr.read()  # type: ignore[union-attr]
        operator = json.loads((tmp_path / "d" / "operator.json").read_text())
        assert cmk_json(env, "health", "--endpoint", first.split()[-1])["status"] == "SERVING"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    banner = process.stdout.read()  # type: ignore[union-attr]
    assert operator["client_secret"] in banner and "sign in with: cmk login --endpoint" in banner
    assert "identity: stopping" in process.stderr.read()  # type: ignore[union-attr]


def test_python_m_identity_refuses_a_bad_configuration(tmp_path):
    env = service_env(tmp_path) | {"CMK_DATA_DIR": str(tmp_path / "d"), "CMK_IDENTITY_PORT": "fifty"}
    result = subprocess.run(
        [sys.executable, "-m", "cmk_trio.identity"], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "error: CMK_IDENTITY_PORT must be an integer, not 'fifty'"
    assert not (tmp_path / "d").exists()
