"""`cmk load` against a private trio: every scenario runs and reports without errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

CMK = [sys.executable, "-m", "cmk_trio.cli"]


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
    if scenario in ("unwrap", "mixed"):
        assert summary["unwrap_as"] == "managed identity"  # the private trio's speech platform signs in


def test_a_remote_target_needs_consent(tmp_path):
    result = subprocess.run(
        [*CMK, "--endpoint", "10.1.2.3:50051", "load", "read", "--requests", "1"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode != 0 and "not on loopback" in result.stderr


def test_a_run_against_a_running_trio_cleans_up_and_can_plot(trio, tmp_path):
    import sqlite3

    from tests.e2e.conftest import cmk

    services = trio.banner["services"]
    plot = tmp_path / "latency.png"
    summary = cmk(
        trio, "--endpoint", services["identity"], "--keyvault-endpoint", services["keyvault"],
        "--speech-endpoint", services["speech"], "load", "read", "--data-dir", str(trio.data_dir),
        "--requests", "30", "--warmup", "0", "--concurrency", "3", "--plot", str(plot),
    )  # fmt: skip
    assert (summary["requests"], summary["errors"], summary["plot"]) == (30, {}, str(plot))
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000

    def rows(db: str, sql: str, *args: str) -> list[tuple[object, ...]]:
        with sqlite3.connect(trio.data_dir / db) as conn:
            return conn.execute(sql, args).fetchall()

    assert rows("speech.db", "SELECT COUNT(*) FROM resources") == [(0,)]
    assert rows("speech.db", "SELECT COUNT(*) FROM applications") == [(0,)]
    operator_tenant = json.loads((trio.data_dir / "operator.json").read_text())["tenant_id"]
    # Left: the operator and the two platform principals; the load's admin, worker and the
    # CMK resource's managed identity are gone.
    assert rows("identity.db", "SELECT COUNT(*) FROM principals WHERE tenant_id != ?", operator_tenant) == [(0,)]
    [(deleted,)] = rows("keyvault.db", "SELECT delete_time FROM vaults")
    assert deleted  # soft-deleted: purge protection keeps it for its retention days


def test_unwrap_load_calls_the_vault_as_the_resources_managed_identity(trio):
    import sqlite3

    from tests.e2e.conftest import cmk

    services = trio.banner["services"]
    summary = cmk(
        trio, "--endpoint", services["identity"], "--keyvault-endpoint", services["keyvault"],
        "--speech-endpoint", services["speech"], "load", "unwrap", "--data-dir", str(trio.data_dir),
        "--requests", "20", "--warmup", "0", "--concurrency", "2", "--keep",
    )  # fmt: skip
    assert (summary["requests"], summary["errors"], summary["unwrap_as"]) == (20, {}, "managed identity")
    with sqlite3.connect(trio.data_dir / "speech.db") as db:
        [(identity,)] = db.execute("SELECT identity_principal_id FROM resources WHERE identity_principal_id != ''")
    with sqlite3.connect(trio.data_dir / "keyvault.db") as db:
        callers = db.execute(
            "SELECT caller_object_id, COUNT(*) FROM audit_log WHERE operation = 'UnwrapKey' AND result = 'allowed'"
            " GROUP BY caller_object_id"
        ).fetchall()
    assert [caller for caller, _ in callers] == [identity]  # speech's own unwraps and the load's: one identity
    assert sum(count for _, count in callers) >= 20
