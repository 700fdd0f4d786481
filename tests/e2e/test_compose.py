"""compose.yaml: well formed, and every command, port and environment variable it uses is
one the CLI accepts. (Docker does not run here; the file is checked, not run.)"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner

from cmk_trio.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]


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


def test_the_file_is_well_formed():
    assert set(SERVICES) == {"certs", "identity", "platform-credentials", "keyvault", "speech"}
    volumes = set(COMPOSE["volumes"])
    for name, service in SERVICES.items():
        assert service["image"] == "cmk-trio:latest" and service["build"] == ".", name
        for mount in service.get("volumes", []):
            assert mount.split(":")[0] in volumes, f"{name}: undeclared volume {mount}"
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in SERVICES and condition["condition"] in {
                "service_healthy", "service_completed_successfully"
            }  # fmt: skip
    for name in ("identity", "keyvault", "speech"):
        assert SERVICES[name]["healthcheck"]["test"][:2] == ["CMD", "cmk"]


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_command_line_is_accepted_by_the_cli(name):
    # --help after the arguments: click parses them all (an unknown option or command fails
    # with exit code 2) and then prints the help instead of running the command.
    for args in cmk_invocations(SERVICES[name]):
        assert args[0] == "cmk"
        result = CliRunner().invoke(cli, [*args[1:], "--help"], prog_name="cmk", catch_exceptions=False)
        assert result.exit_code == 0, f"{name}: {args}: {result.stderr}"
    check = SERVICES[name].get("healthcheck", {}).get("test")
    if check:
        result = CliRunner().invoke(cli, [*check[2:], "--help"], prog_name="cmk", catch_exceptions=False)
        assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize("name", ["identity", "keyvault", "speech"])
def test_ports_and_environment_names_are_the_ones_the_service_reads(name):
    service = SERVICES[name]
    args = service["command"]
    port = args[args.index("--port") + 1]
    assert service["ports"] == [f"{port}:{port}"]
    command = command_of(args)
    known = {param.envvar for param in command.params if isinstance(getattr(param, "envvar", None), str)}
    known |= {"CMK_LOG_LEVEL"}
    unknown = set(service.get("environment", {})) - known
    assert not unknown, f"{name} sets variables the service does not read: {sorted(unknown)}"
    for path in service.get("environment", {}).values():
        if str(path).startswith("/tls/"):
            stem = Path(path).stem
            assert stem in {"ca", name}, f"{name} uses another service's certificate: {path}"
