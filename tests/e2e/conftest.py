"""The trio started by `cmk up` in a subprocess, and `cmk` run against it."""

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


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    values = {k: v for k, v in os.environ.items() if not k.startswith("CMK_")}
    values.update({"CMK_SECRET_HASH_COST": "10", "CMK_PROFILE": str(tmp_path / "profile.json")})
    return values


@pytest.fixture
def trio(tmp_path: Path, env: dict[str, str]) -> Iterator[Trio]:
    running = start(tmp_path / "data", env)
    try:
        yield running
    finally:
        if running.process.poll() is None:
            running.process.send_signal(signal.SIGTERM)
            running.process.wait(timeout=20)


def cmk(trio: Trio, *args: str, ok: bool = True) -> Any:
    tls = ["--tls-dir", trio.banner["tls_dir"]] if trio.banner.get("tls_dir") else []
    result = subprocess.run(
        [*CMK, "--output", "json", *tls, *args], capture_output=True, text=True, env=trio.env, timeout=120
    )
    assert (result.returncode == 0) is ok, result.stderr + result.stdout
    return json.loads(result.stdout) if result.stdout.strip() else None


def login_operator(trio: Trio) -> None:
    services = trio.banner["services"]
    args = ["login", "--endpoint", services["identity"], "--operator-file", str(trio.data_dir / "operator.json"),
            "--keyvault-endpoint", services["keyvault"]]  # fmt: skip
    if "speech" in services:
        args += ["--speech-endpoint", services["speech"]]
    cmk(trio, *args)
