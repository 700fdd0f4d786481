"""`cmk load` (run in this process) against a private trio and against a running one: every
scenario runs and reports without errors."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import cmk, cmk_json, invoke


@pytest.mark.parametrize("scenario", ["read", "unwrap", "mixed"])
def test_a_short_load_run(scenario, env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./.cmk of a developer's trio nearby
    summary = cmk_json(env, "load", scenario, "--private", "--requests", "40", "--warmup", "0", "--concurrency", "4")
    assert (summary["scenario"], summary["requests"], summary["errors"]) == (scenario, 40, {})
    assert summary["throughput_per_s"] > 0 and summary["latency_ms"]["max"] >= summary["latency_ms"]["p50"]
    if scenario in ("unwrap", "mixed"):
        assert summary["unwrap_as"] == "managed identity"  # the private trio's speech platform signs in


def test_a_remote_target_needs_consent(env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke(env, "--endpoint", "10.1.2.3:50051", "load", "read", "--requests", "1")
    assert result.exit_code == 1
    assert "10.1.2.3:50051 is not on loopback; give --allow-remote to load it anyway" in result.stderr


def test_a_run_against_a_running_trio_cleans_up_and_can_plot(trio, tmp_path):
    import sqlite3

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


def test_the_report_survives_the_target_stopping_mid_run(trio):
    """The trio goes away a second into the run: the requests after that fail and are counted,
    the clean-up is refused and says what it left, and the report is printed all the same."""
    import signal
    import subprocess

    from tests.e2e.conftest import CMK

    services = trio.banner["services"]
    load = subprocess.Popen(
        [*CMK, "--output", "json", "--tls-dir", trio.banner["tls_dir"], "--endpoint", services["identity"],
         "--keyvault-endpoint", services["keyvault"], "--speech-endpoint", services["speech"], "load", "read",
         "--data-dir", str(trio.data_dir), "--duration", "5", "--warmup", "0", "--concurrency", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=trio.env,
    )  # fmt: skip
    assert load.stderr is not None
    seen = ""
    while "requests," not in seen:  # the first progress line: the run is measuring
        char = load.stderr.read(1)
        assert char, f"cmk load ended before measuring: {seen}"
        seen += char
    trio.process.send_signal(signal.SIGTERM)
    assert trio.process.wait(timeout=20) == 0
    out, err = load.communicate(timeout=120)
    assert load.returncode == 0, out + err
    summary = json.loads(out)
    assert summary["requests"] > 0
    assert any(kind.startswith("UNAVAILABLE") for kind in summary["errors"]), summary["errors"]
    assert "left behind: everything the run made" in err and "Traceback" not in err
