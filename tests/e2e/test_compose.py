"""compose.yaml read without containers (the container suite, python3 dev.py containers,
brings it up): well formed for Compose v2 and docker-compose 1.29 alike, and every command,
port and environment variable it uses is one the CLI or the service reads."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner

from cmk_trio.cli.main import cli
from cmk_trio.identity.config import IdentityConfig
from cmk_trio.keyvault.config import KeyVaultConfig
from cmk_trio.rpckit.settings import variables
from cmk_trio.speech.config import SpeechConfig

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
SERVERS = ("identity", "keyvault", "speech")
PUBLISHED = re.compile(r"^127\.0\.0\.1:\$\{(CMK_PUBLISH_[A-Z_]+):-(\d+)\}:(\d+)$")


def cmk_invocations(service: dict[str, Any]) -> list[list[str]]:
    """The `cmk ...` command lines a service runs (also inside `sh -c`)."""
    command = service["command"]
    if command[:2] == ["sh", "-c"]:
        return [shlex.split(part) for part in command[2].split("&&")]
    return [command]


def command_of(args: list[str]) -> click.Command:
    """The click command that `cmk serve NAME ...` runs (no group options come before it)."""
    command: click.Command = cli
    tokens = list(args[1:])
    while isinstance(command, click.Group):
        command = command.commands[tokens.pop(0)]
    return command


def variables_read_by(name: str) -> set[str]:
    """CMK_* names the service's settings read (rpckit.settings), and the process around them
    (the descriptor and call limits, the operator secret's display)."""
    config = {"identity": IdentityConfig, "keyvault": KeyVaultConfig, "speech": SpeechConfig}[name]
    around = ROOT / "services/rpckit/cmk_trio/rpckit"
    found = {n for path in around.glob("*.py") for n in re.findall(r'"(CMK_[A-Z0-9_]+)"', path.read_text())}
    return variables(config) | found | {"CMK_HIDE_OPERATOR_SECRET"}


def test_the_file_is_well_formed_for_both_compose_versions():
    assert "name" not in COMPOSE, "docker-compose 1.29 rejects a top-level name: (use -p or COMPOSE_PROJECT_NAME)"
    assert set(SERVICES) == {"certs", "identity", "platform-credentials", "keyvault", "speech", "arm", "proxy"}
    volumes, networks = set(COMPOSE["volumes"]), set(COMPOSE["networks"])
    for name, service in SERVICES.items():
        assert service["image"] == "cmk-trio:latest" and service["build"] == ".", name
        for mount in service.get("volumes", []):
            assert mount.split(":")[0] in volumes, f"{name}: undeclared volume {mount}"
        assert set(service.get("networks", [])) <= networks, name
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in SERVICES and condition["condition"] in {
                "service_healthy", "service_completed_successfully"
            }  # fmt: skip
    for name in (*SERVERS, "arm", "proxy"):
        assert SERVICES[name]["restart"] == "unless-stopped", name
    for name in ("certs", "platform-credentials"):
        assert SERVICES[name]["restart"] == "no", name


def test_the_ca_key_and_the_master_keys_are_kept_apart():
    for name, service in SERVICES.items():
        mounted = {mount.split(":")[0] for mount in service.get("volumes", [])}
        assert ("ca" in mounted) == (name == "certs"), f"{name} and the CA's key"
        assert ("pki" in mounted) == (name == "certs"), f"{name} and every certificate's key"
    for name in SERVERS:
        mounted = {mount.split(":")[0] for mount in SERVICES[name]["volumes"]}
        others = {other for other in SERVERS if other != name}
        assert f"tls-{name}" in mounted and not {f"tls-{o}" for o in others} & mounted, name
        assert not {f"{o}-credentials" for o in others} & mounted, name
    for name in SERVERS:
        environment = SERVICES[name]["environment"]
        key_file = next(v for k, v in environment.items() if k.endswith(("MASTER_KEY_FILE", "MASTER_KEY_RING_FILE")))
        assert key_file.startswith("/keys/"), name
        assert f"{name}-keys:/keys" in SERVICES[name]["volumes"] and f"{name}-data:/data" in SERVICES[name]["volumes"]
    assert SERVICES["identity"]["environment"]["CMK_HIDE_OPERATOR_SECRET"] == "1"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_command_line_is_accepted_by_the_cli(name):
    # --help after the arguments: click parses them all (an unknown option or command fails
    # with exit code 2) and then prints the help instead of running the command.
    for args in cmk_invocations(SERVICES[name]):
        assert args[0] == "cmk"
        result = CliRunner().invoke(cli, [*args[1:], "--help"], prog_name="cmk", catch_exceptions=False)
        assert result.exit_code == 0, f"{name}: {args}: {result.stderr}"


@pytest.mark.parametrize("name", SERVERS)
def test_ports_probes_and_environment_names_are_the_ones_the_service_reads(name):
    service = SERVICES[name]
    args = service["command"]
    port = args[args.index("--port") + 1]
    metrics = args[args.index("--metrics-port") + 1]
    published = [PUBLISHED.match(p) for p in service["ports"]]
    assert all(published), f"{name}: publish on the host's loopback, the host port from a variable"
    http = [args[args.index("--http-port") + 1]] if "--http-port" in args else []
    assert {m.group(3) for m in published if m} == {port, metrics, *http}
    assert service["healthcheck"]["test"] == ["CMD", "python", "-m", "cmk_trio.rpckit.probe", port]
    command = command_of(args)
    known = {param.envvar for param in command.params if isinstance(getattr(param, "envvar", None), str)}
    known |= variables_read_by(name) | {"CMK_LOG_LEVEL"}
    unknown = set(service.get("environment", {})) - known
    assert not unknown, f"{name} sets variables the service does not read: {sorted(unknown)}"
    for path in service.get("environment", {}).values():
        if str(path).startswith("/tls/"):
            stem = Path(path).stem
            assert stem in {"ca", name}, f"{name} uses another service's certificate: {path}"


def routes_of(proxy: dict[str, Any]) -> dict[str, str]:
    args = proxy["command"]
    return dict(args[i + 1].split("=", 1) for i, a in enumerate(args) if a == "--route")


def door_port(service: dict[str, Any]) -> str:
    args = service["command"]
    return str(args[args.index("--http-port") + 1])


def test_the_proxy_routes_azures_names_to_the_doors_without_joining_the_services():
    proxy = SERVICES["proxy"]
    args = proxy["command"]
    assert args[:3] == ["cmk", "serve", "proxy"]
    port = args[args.index("--port") + 1]
    published = [PUBLISHED.match(p) for p in proxy["ports"]]
    assert all(published) and {m.group(1) for m in published if m} == {"CMK_PUBLISH_PROXY"}
    assert {m.group(3) for m in published if m} == {port}
    assert proxy["healthcheck"]["test"] == ["CMD", "python", "-m", "cmk_trio.rpckit.probe", "--proxy", port]
    arm = SERVICES["arm"]["command"]
    assert routes_of(proxy) == {"login.microsoftonline.com": f"identity:{door_port(SERVICES['identity'])}",
                                "*.vault.azure.net": f"keyvault:{door_port(SERVICES['keyvault'])}",
                                "management.azure.com": f"arm:{arm[arm.index('--port') + 1]}"}  # fmt: skip
    assert set(proxy["depends_on"]) == {"identity", "keyvault", "arm"} and "volumes" not in proxy
    networks = {name: set(SERVICES[name]["networks"]) for name in (*SERVERS, "arm", "proxy")}
    assert networks["proxy"] & networks["identity"] and networks["proxy"] & networks["keyvault"]
    assert networks["proxy"] & networks["arm"]
    assert not networks["proxy"] & networks["speech"]
    # ARM's door reaches the three services, and the proxy through a network of its own only.
    assert all(networks["arm"] & networks[name] for name in SERVERS)
    assert networks["proxy"] & networks["arm"] == {"arm-door"}
    # The proxy joins neither door's service to the other: they share the link that is theirs alone.
    assert networks["identity"] & networks["keyvault"] == {"directory-vault"}


def test_arms_door_takes_its_own_certificate_and_the_settings_it_reads():
    arm = SERVICES["arm"]
    args = arm["command"]
    assert args[:3] == ["cmk", "serve", "arm"]
    port = args[args.index("--port") + 1]
    published = [PUBLISHED.match(p) for p in arm["ports"]]
    assert all(published) and {(m.group(1), m.group(3)) for m in published if m} == {("CMK_PUBLISH_ARM", port)}
    assert arm["healthcheck"]["test"] == ["CMD", "python", "-m", "cmk_trio.rpckit.probe", "--https", port]
    known = {p.envvar for p in command_of(args).params if isinstance(getattr(p, "envvar", None), str)}
    assert set(arm["environment"]) <= known, sorted(set(arm["environment"]) - known)
    assert arm["volumes"] == ["tls-arm:/tls:ro"]
    assert {Path(v).stem for v in arm["environment"].values() if str(v).startswith("/tls/")} == {"arm", "ca"}
    assert "arm=/issued/arm" in SERVICES["certs"]["command"]
    login = arm["environment"]["CMK_ARM_LOGIN_ENDPOINT"]
    assert login == SERVICES["identity"]["environment"]["CMK_IDENTITY_HTTP_PUBLIC_URL"]


REPLICAS = yaml.safe_load((ROOT / "compose.replicas.yaml").read_text())


def test_the_replicas_profile_serves_the_doors_behind_one_name():
    services: dict[str, Any] = REPLICAS["services"]
    for name, port in (("identity", "50054"), ("keyvault", "50055")):
        for r in (1, 2):
            replica = services[f"{name}-{r}"]
            assert door_port(replica) == port
            assert any(p.endswith(f":{port}") and f"_HTTP_{r}:" in p for p in replica["ports"]), replica["ports"]
    for r in (1, 2):  # each identity replica names its door as the host reaches it
        url = services[f"identity-{r}"]["environment"]["CMK_IDENTITY_HTTP_PUBLIC_URL"]
        assert url.startswith(f"https://localhost:${{CMK_PUBLISH_IDENTITY_HTTP_{r}:-")
    proxy = services["proxy"]
    assert routes_of(proxy) == {"login.microsoftonline.com": "identity:50054", "*.vault.azure.net": "keyvault:50055",
                                "management.azure.com": "arm:50057"}  # fmt: skip
    assert proxy["networks"] == ["services"] and proxy["restart"] == "unless-stopped"
    assert set(proxy["depends_on"]) == {"identity-1", "identity-2", "keyvault-1", "keyvault-2", "arm-1", "arm-2"}
    for r in (1, 2):  # ARM's door twice behind its name, calling every replica of each service
        arm = services[f"arm-{r}"]
        assert arm["networks"]["services"]["aliases"] == ["arm"] and arm["restart"] == "unless-stopped"
        assert any(p.endswith(":50057") and f"CMK_PUBLISH_ARM_{r}:" in p for p in arm["ports"]), arm["ports"]
        args = arm["command"]
        for name, grpc_port in (("identity", 50051), ("keyvault", 50052), ("speech", 50053)):
            assert args[args.index(f"--{name}-endpoint") + 1] == f"dns:///{name}:{grpc_port}"


def test_the_replicas_profile_puts_two_replicas_of_each_service_behind_one_name():
    assert "name" not in REPLICAS
    services: dict[str, Any] = REPLICAS["services"]
    for name in SERVERS:
        replicas = [services[f"{name}-{r}"] for r in (1, 2)]
        for replica in replicas:
            assert replica["networks"]["services"]["aliases"] == [name]
            # Its own role, whose password only its own volume holds.
            url = f"postgresql://cmk_{name}@postgres:5432/cmk_{name}"  # its own database, too
            assert replica["environment"]["CMK_DATABASE_URL"] == url
            assert replica["environment"]["PGPASSFILE"] == "/pg-secret/pgpass"
            secrets = {m.split(":")[0] for m in replica["volumes"] if m.startswith("pg-")}
            assert secrets == {f"pg-{name}"} and f"pg-{name}:/pg-secret:ro" in replica["volumes"], name
            port = replica["command"][replica["command"].index("--port") + 1]
            assert replica["healthcheck"]["test"] == ["CMD", "python", "-m", "cmk_trio.rpckit.probe", port]
            assert replica["restart"] == "unless-stopped"
    # Clients of a name reach every replica behind it (gRPC's DNS resolver, round robin).
    for name in ("keyvault", "speech"):
        environment = services[f"{name}-1"]["environment"]
        assert environment["CMK_IDENTITY_ENDPOINT"] == "dns:///identity:50051"
    assert services["speech-1"]["environment"]["CMK_KEYVAULT_ENDPOINT"] == "dns:///keyvault:50052"
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"] == "/pg-admin/password"
    for name, service in services.items():
        mounted = {mount.split(":")[0] for mount in service.get("volumes", [])}
        assert ("ca" in mounted) == (name == "certs"), f"{name} and the CA's key"
        assert ("pki" in mounted) == (name == "certs"), f"{name} and every certificate's key"
        assert ("pg-admin" in mounted) == (name in {"pg-secrets", "postgres", "pg-roles"}), name
