"""The README's quick start, run as written: the block after `<!-- quick-start -->`, in bash,
in a directory where `cmk up` runs (its data in ./.cmk, ./.venv the environment this test
runs in), against a trio of the test's own. Only where the services listen differs from a
newcomer's machine (free ports, not 50051-50053), and nothing tells the CLI: it finds them as
it would for any --port-base, in the ./.cmk/endpoints.json that cmk up writes."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import CMK

README = Path(__file__).resolve().parents[2] / "README.md"
BASH = shutil.which("bash") or "/bin/bash"  # the shell the README's block is written for


def quick_start() -> str:
    text = README.read_text()
    found = re.search(r"<!-- quick-start -->\n```sh\n(.*?)\n```", text, re.S)
    assert found, "the README has no quick-start block"
    return found.group(1)


def test_the_readme_quick_start_runs_as_written(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CMK_", "PYTEST"))}
    env.update({"CMK_SECRET_HASH_COST": "10", "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path)})
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))  # the environment `python3 dev.py up` made
    trio = subprocess.Popen(
        [*CMK, "--output", "json", "up", "--data-dir", ".cmk", "--port-base", "0"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert trio.stdout is not None
        banner = json.loads(trio.stdout.readline())
        assert banner["services"]["identity"] != "127.0.0.1:50051"
        done = subprocess.run(
            [BASH, "-euo", "pipefail", "-c", quick_start()],
            cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300,
        )  # fmt: skip
    finally:
        trio.send_signal(signal.SIGTERM)
        trio.wait(timeout=30)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "the seed behaved as written" in out
    assert "refused, as the seed says" in out  # the revocation took effect at once
    assert "CUSTOMER_KEY_ACCESS_REVOKED" in done.stderr
    assert re.search(r"^UnwrapKey\tallowed\t[0-9a-f-]{36}$", out, re.M), out[-2000:]
    assert "Traceback" not in done.stderr
    profiles = tmp_path / "xdg" / "cmk"
    assert (profiles / "profile.json").exists() and not (profiles / "profiles" / "alice.json").exists()
