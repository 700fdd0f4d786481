"""The CLI without surprises: named profiles (the operator and a user both signed in),
whoami and logout, one verb for reading, usage errors as JSON, and one clear line for an
endpoint that is another service or that speaks TLS when the call does not (or the other way)."""

from __future__ import annotations

import json
import re
import socket
import stat
import subprocess
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from tests.e2e.conftest import CMK, Trio, invoke


def _env(trio: Trio, tmp_path: Path) -> dict[str, str]:
    """The trio's environment, with profiles in an XDG config directory of the test's own."""
    env = {k: v for k, v in trio.env.items() if k != "CMK_PROFILE"}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    return env


def run(env: dict[str, str], *args: str, ok: bool = True) -> Any:
    result = subprocess.run([*CMK, "--output", "json", *args], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == (0 if ok else 1), result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    if not ok:  # errors on standard error, whatever the output format
        assert result.stdout == "", result.stdout
        return json.loads(result.stderr)
    return json.loads(result.stdout)


def test_named_profiles_keep_the_operator_and_a_user_signed_in(trio: Trio, tmp_path: Path) -> None:
    env = _env(trio, tmp_path)
    tls = ["--tls-dir", trio.banner["tls_dir"]]
    services = trio.banner["services"]
    run(env, *tls, "login", "--endpoint", services["identity"], "--operator-file", str(trio.data_dir / "operator.json"),
        "--keyvault-endpoint", services["keyvault"])  # fmt: skip
    tenant = run(env, "tenant", "create", "Contoso")
    alice = run(env, "principal", "create", "--tenant", tenant["tenant_id"], "--kind", "user", "--admin",
                "--with-secret", "Alice")  # fmt: skip
    signed_in = run(env, *tls, "--profile", "alice", "login", "--endpoint", services["identity"], "--tenant",
                    tenant["tenant_id"], "--client-id", alice["client_id"],
                    "--client-secret", alice["client_secret"])  # fmt: skip
    assert signed_in["profile"] == "alice"
    config = tmp_path / "xdg" / "cmk"
    for path in (config / "profile.json", config / "profiles" / "alice.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert alice["client_secret"] not in path.read_text()

    operator = run(env, "whoami")
    assert (operator["profile"], operator["operator"], operator["roles"]) == ("default", True, ["Platform.Operator"])
    assert operator["keyvault_endpoint"] == services["keyvault"]
    user = run(env, "--profile", "alice", "whoami")
    assert (user["profile"], user["tenant_id"], user["operator"]) == ("alice", tenant["tenant_id"], False)
    assert user["object_id"] == alice["object_id"] and user["kind"] == "user"
    # Alice works in her profile while the operator's stays signed in.
    assert run(env, "--profile", "alice", "tenant", "show", tenant["tenant_id"])["display_name"] == "Contoso"
    assert run(env, "logout", "--profile", "alice") == {
        "signed_out": True, "profile": "alice", "profile_file": str(config / "profiles" / "alice.json"),
    }  # fmt: skip
    assert run(env, "--profile", "alice", "logout")["signed_out"] is False
    notes = tmp_path / "notes.json"  # a file that is not a profile is not deleted by logout
    notes.write_text('["mine"]')
    notes.chmod(0o600)  # private, so read (one open to others is refused first: tests/security/test_planted_files.py)
    assert "is not a cmk profile" in run(env, "--profile", str(notes), "logout", ok=False)["error"]["message"]
    assert notes.exists()
    # --query prints the values alone, one line per item, even when more pages follow.
    listed = subprocess.run([*CMK, "tenant", "list", "--page-size", "1", "--query", "tenant_id"], capture_output=True,
                            text=True, env=env, timeout=60, check=True)  # fmt: skip
    assert re.fullmatch(r"[0-9a-f-]{36}\n", listed.stdout) and "--page-token" in listed.stderr
    refused = run(env, "--profile", "alice", "whoami", ok=False)
    assert "not signed in (profile alice" in refused["error"]["message"]
    assert tenant["tenant_id"] in {t["tenant_id"] for t in run(env, "tenant", "list")["items"]}


def test_one_verb_for_reading(trio: Trio, tmp_path: Path) -> None:
    env = _env(trio, tmp_path)
    services = trio.banner["services"]
    run(env, "--tls-dir", trio.banner["tls_dir"], "login", "--endpoint", services["identity"], "--operator-file",
        str(trio.data_dir / "operator.json"))  # fmt: skip
    tenant = run(env, "tenant", "create", "Fabrikam")
    assert run(env, "tenant", "show", tenant["tenant_id"])["display_name"] == "Fabrikam"
    old = subprocess.run([*CMK, "--output", "json", "tenant", "get", tenant["tenant_id"]], capture_output=True,
                         text=True, env=env, timeout=60)  # fmt: skip
    assert json.loads(old.stdout)["display_name"] == "Fabrikam"  # the old name still works,
    assert "deprecated" in old.stderr and "use `show`" in old.stderr  # and says so
    for group in ("tenant", "subscription", "principal", "role", "speech app", "speech luis-keys"):
        listed = invoke(env, *group.split(), "--help").stdout
        assert "  show " in listed and "  get " not in listed, group


def test_usage_errors_are_json_on_standard_error_under_output_json(tmp_path: Path) -> None:
    for args in (["tenant", "show"], ["nosuch"], ["--profile", "not a name", "whoami"]):
        done = subprocess.run([*CMK, "--output", "json", *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stdout == "", args
        error = json.loads(done.stderr)["error"]
        assert error["code"] == "USAGE" and error["reason"] == "CLI_USAGE" and error["message"], args
        plain = subprocess.run([*CMK, *args], capture_output=True, text=True, timeout=60)
        assert plain.returncode == 2 and plain.stdout == "" and "Error:" in plain.stderr, args


def test_the_wrong_service_and_a_tls_mismatch_are_one_clear_line(trio: Trio, tmp_path: Path) -> None:
    env = _env(trio, tmp_path)
    services = trio.banner["services"]
    operator_file = str(trio.data_dir / "operator.json")
    tls = ["--tls-dir", trio.banner["tls_dir"]]

    def refused(*args: str) -> dict[str, str]:
        done = subprocess.run([*CMK, *args], capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
        return {"line": done.stderr.strip()}

    wrong = refused(*tls, "login", "--endpoint", services["keyvault"], "--operator-file", operator_file)
    assert wrong["line"] == (
        f"error: FAILED_PRECONDITION ENDPOINT_WRONG_SERVICE: {services['keyvault']} is not the identity service"
        " (its certificate names another): check --endpoint"
    )
    plain = refused("login", "--endpoint", services["identity"], "--operator-file", operator_file)
    assert plain["line"].startswith(f"error: UNAVAILABLE ENDPOINT_TLS_MISMATCH: {services['identity']} closed the")
    assert "give --tls-dir" in plain["line"]

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))  # a plain-TCP gRPC server
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        over_tls = refused(*tls, "login", "--endpoint", f"127.0.0.1:{port}", "--operator-file", operator_file)
    finally:
        server.stop(0)
    assert over_tls["line"] == (
        f"error: UNAVAILABLE ENDPOINT_TLS_MISMATCH: 127.0.0.1:{port} does not speak TLS (cmk up --insecure serves"
        " plain TCP): sign in without --tls-dir"
    )


def test_demo_walks_the_trio_of_the_signed_in_profile(trio: Trio, tmp_path: Path) -> None:
    env = _env(trio, tmp_path)
    services = trio.banner["services"]
    work = tmp_path / "elsewhere"  # no .cmk here: nothing but the profile says where the trio is
    work.mkdir()

    def demo(*args: str, options: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        command = [*CMK, *args, "demo", *options]
        return subprocess.run(command, capture_output=True, text=True, env=env, cwd=work, timeout=180)

    with socket.socket() as probe:  # a port nothing listens on once this closes
        probe.bind(("127.0.0.1", 0))
        idle = probe.getsockname()[1]
    nothing = demo(
        "--output", "json", options=("--port-base", str(idle - 1))
    )  # not signed in, nothing there: it says so
    assert nothing.returncode == 1, nothing.stdout + nothing.stderr
    assert f"no trio answers at 127.0.0.1:{idle}" in json.loads(nothing.stderr)["error"]["message"]
    assert "cmk demo --private" in json.loads(nothing.stderr)["error"]["message"]
    run(env, "--tls-dir", trio.banner["tls_dir"], "login", "--endpoint", services["identity"], "--operator-file",
        str(trio.data_dir / "operator.json"), "--keyvault-endpoint", services["keyvault"],
        "--speech-endpoint", services["speech"])  # fmt: skip
    walked = demo()
    assert walked.returncode == 0, walked.stdout + walked.stderr
    assert f"walking the seed against {services['identity']}, {services['keyvault']}, {services['speech']}" in (
        walked.stdout
    )
    assert "starting a private trio" not in walked.stdout
    assert "byte-for-byte the same" in walked.stdout  # it found the trio's data through the operator file

    tenant = run(env, "tenant", "create", "Northwind")
    user = run(env, "principal", "create", "--tenant", tenant["tenant_id"], "--kind", "user", "--with-secret", "Bob")
    run(env, "--tls-dir", trio.banner["tls_dir"], "--profile", "bob", "login", "--endpoint", services["identity"],
        "--tenant", tenant["tenant_id"], "--client-id", user["client_id"], "--client-secret", user["client_secret"],
        "--keyvault-endpoint", services["keyvault"], "--speech-endpoint", services["speech"])  # fmt: skip
    for operator_file_nearby in (False, True):  # an operator file in ./.cmk changes nothing
        if operator_file_nearby:
            (work / ".cmk").mkdir()
            (work / ".cmk" / "operator.json").write_bytes((trio.data_dir / "operator.json").read_bytes())
        as_bob = demo("--output", "json", "--profile", "bob")
        assert as_bob.returncode == 1, as_bob.stdout
        assert "acts as the platform operator" in json.loads(as_bob.stderr)["error"]["message"]


def test_a_connection_closed_after_the_endpoint_answered_is_no_tls_mismatch():
    """ "It most likely wants TLS" is for an endpoint that never answered: once it has, TLS or
    not is right, and a connection closed now is the service going away (a replica killed,
    a restart), left to gRPC's UNAVAILABLE, which the client retries where it is safe (the
    bench's killed replica saw reads fail as ENDPOINT_TLS_MISMATCH, not retried)."""
    from grpc.aio import AioRpcError, Metadata

    from cmk_trio.cli.diagnose import explain
    from cmk_trio.rpckit.reasons import Reason

    closed = AioRpcError(grpc.StatusCode.UNAVAILABLE, Metadata(), Metadata(), details="Socket closed")
    method = "/cmk.speech.v1.ApplicationService/GetApplication"
    first = explain(closed, method, "127.0.0.1:50053", tls=False)
    assert first is not None and first.reason is Reason.ENDPOINT_TLS_MISMATCH
    assert explain(closed, method, "127.0.0.1:50053", tls=False, answered=True) is None
