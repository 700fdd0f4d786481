"""`cmk load` against a private trio: every scenario runs and reports without errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

CMK = [sys.executable, "-m", "services.cli"]


@pytest.mark.parametrize("scenario", ["read", "unwrap", "mixed"])
def test_a_short_load_run(scenario, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CMK_")}
    env["CMK_SECRET_HASH_COST"] = "10"
    result = subprocess.run(
        [*CMK, "-o", "json", "load", scenario, "--private", "--requests", "40", "--warmup", "0", "--concurrency", "4"],
        capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["scenario"], summary["requests"], summary["errors"]) == (scenario, 40, {})
    assert summary["throughput_per_s"] > 0 and summary["latency_ms"]["max"] >= summary["latency_ms"]["p50"]


def test_a_remote_target_needs_consent(tmp_path):
    result = subprocess.run(
        [*CMK, "--endpoint", "10.1.2.3:50051", "load", "read", "--requests", "1"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode != 0 and "not on loopback" in result.stderr
