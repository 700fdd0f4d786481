"""The trio started by `cmk up` in a subprocess, and `cmk` run against it in this process
with click's test runner: the same command, options, output and exit code as a shell gets,
without a Python start-up per command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from cmk_trio.cli.main import cli

CMK = [sys.executable, "-m", "cmk_trio.cli"]


@dataclass
class Trio:
    process: subprocess.Popen[str]
    banner: dict[str, Any]
    data_dir: Path
    env: dict[str, str]


def start(data_dir: Path, env: dict[str, str]) -> Trio:
    process = subprocess.Popen(
        [*CMK, "up", "--data-dir", str(data_dir), "--port-base", "0", "--output", "json", "--dev-time-control"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    line = process.stdout.readline()  # type: ignore[union-attr]
    assert line, process.stderr.read()  # type: ignore[union-attr]
    return Trio(process, json.loads(line), data_dir, env)


def stop(trio: Trio) -> str:
    trio.process.send_signal(signal.SIGTERM)
    assert trio.process.wait(timeout=20) == 0
    return trio.process.stderr.read()  # type: ignore[union-attr]


def service_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a service process and of the CLI: none of the developer's CMK_*
    variables, a cheap secret hash, and a profile of the test's own."""
    values = {k: v for k, v in os.environ.items() if not k.startswith("CMK_")}
    values.update({"CMK_SECRET_HASH_COST": "10", "CMK_PROFILE": str(tmp_path / "profile.json")})
    return values


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return service_env(tmp_path)


@pytest.fixture
def trio(tmp_path: Path, env: dict[str, str]) -> Iterator[Trio]:
    running = start(tmp_path / "data", env)
    try:
        yield running
    finally:
        if running.process.poll() is None:
            running.process.send_signal(signal.SIGTERM)
            running.process.wait(timeout=20)


def invoke(env: dict[str, str], *args: str) -> Result:
    """`cmk ARGS` in this process, with the CMK_* variables of `env` (and no others) set while
    it runs. An exception other than an exit is not caught: the test fails with its traceback."""
    variables: dict[str, str | None] = {k: None for k in os.environ if k.startswith("CMK_")}
    variables.update({k: v for k, v in env.items() if k.startswith("CMK_")})
    return CliRunner().invoke(cli, list(args), env=variables, prog_name="cmk", catch_exceptions=False)


def cmk_json(env: dict[str, str], *args: str, ok: bool = True) -> Any:
    """`cmk --output json ARGS`, parsed. With ok, it must exit 0; without, it must exit 1 as a
    refusal does, with nothing on standard output and the error's JSON on standard error (the
    reason is in it, for the caller to check)."""
    result = invoke(env, "--output", "json", *args)
    assert result.exit_code == (0 if ok else 1), result.stderr + result.stdout
    if not ok:
        assert result.stdout == "", result.stdout
        return json.loads(result.stderr)
    return json.loads(result.stdout) if result.stdout.strip() else None


def cmk(trio: Trio, *args: str, ok: bool = True) -> Any:
    """`cmk --output json ARGS` against the trio, with its development PKI for mutual TLS."""
    tls = ["--tls-dir", trio.banner["tls_dir"]] if trio.banner.get("tls_dir") else []
    return cmk_json(trio.env, *tls, *args, ok=ok)


def login_operator(trio: Trio) -> None:
    services = trio.banner["services"]
    args = ["login", "--endpoint", services["identity"], "--operator-file", str(trio.data_dir / "operator.json"),
            "--keyvault-endpoint", services["keyvault"]]  # fmt: skip
    if "speech" in services:
        args += ["--speech-endpoint", services["speech"]]
    cmk(trio, *args)


@dataclass
class Served:
    """`cmk serve identity` in a process of its own, and the environment of a CLI that calls it."""

    process: subprocess.Popen[str]
    endpoint: str
    data_dir: Path
    banner: str
    env: dict[str, str]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    env = service_env(tmp_path)
    data_dir = tmp_path / "data"
    process = subprocess.Popen(
        [*CMK, "serve", "identity", "--data-dir", str(data_dir), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        first = process.stdout.readline()  # type: ignore[union-attr]
        assert first.startswith("identity listening on "), first + process.stderr.read()  # type: ignore[union-attr]
        banner = first
        for _ in range(6):
            banner += process.stdout.readline()  # type: ignore[union-attr]
        yield Served(process, first.split()[-1], data_dir, banner, env)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=15)
