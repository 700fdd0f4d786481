"""What a project that installs cmk-trio meets first. The pytest plugin the install registers
is loaded by every pytest run of that project: loading it must not import grpc, the client or
cryptography (it did; issue 15 measured 0.45 s of CPU a run); its fixtures import what they need when a test
asks for one. `cmk --version` says which cmk-trio it is, and a port in use is one clear
line, not a traceback."""

from __future__ import annotations

import json
import socket
import subprocess
import sys


def test_loading_the_plugin_imports_nothing_heavy():
    script = (
        "import json, sys, pytest\n"
        "before = set(sys.modules)\n"
        "import cmk_trio.testing.pytest_plugin\n"
        "print(json.dumps(sorted(m for m in set(sys.modules) - before if not m.startswith('cmk_trio.testing'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    loaded = json.loads(done.stdout)
    heavy = [m for m in loaded if m.split(".")[0] in {"grpc", "cryptography", "google", "jwt", "testcontainers"}]
    assert heavy == [], heavy
    assert not [m for m in loaded if m.startswith("cmk_trio.") and m not in {"cmk_trio.testing"}], loaded


def test_cmk_help_imports_nothing_heavy():
    """`cmk --help` (and every usage error) costs what click and the command modules cost:
    gRPC, the clients and cryptography are imported when a command runs."""
    script = "import json, sys\nimport cmk_trio.cli.main\nprint(json.dumps(sorted(sys.modules)))\n"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    loaded = json.loads(done.stdout)
    heavy = [m for m in loaded if m.split(".")[0] in {"grpc", "cryptography", "jwt", "aiohttp", "opentelemetry"}]
    assert heavy == [], heavy
    assert not [m for m in loaded if m.startswith("cmk_trio.client.")], loaded


def test_cmk_says_its_version():
    from importlib.metadata import version

    done = subprocess.run([sys.executable, "-m", "cmk_trio.cli", "--version"], capture_output=True, text=True,
                          check=True, timeout=60)  # fmt: skip
    assert done.stdout.strip() == f"cmk {version('cmk-trio')}"


def test_a_port_in_use_is_one_clear_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "cmk_trio.cli", "serve", "identity", "--data-dir", str(tmp_path), "--port",
             str(port)], capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    assert f"identity: cannot start: cannot listen on 127.0.0.1:{port}: the port is in use" in done.stderr
