"""A service started on a bad data directory refuses at once, non-zero, with one line that
says what is wrong and what to do (no traceback, no hang), and never starts a fresh store
beside keys that sealed data. `cmk serve identity` as a real process, as an operator runs it."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import CMK, service_env

START_TIMEOUT = 30  # a hang guard only: a refusal comes in well under a second


def serve_identity(data_dir: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CMK, "serve", "identity", "--data-dir", str(data_dir), "--port", "0", "--output", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def refusal(data_dir: Path, env: dict[str, str]) -> str:
    """The one line a refused start printed (it must exit 3, and print no traceback)."""
    process = serve_identity(data_dir, env)
    _, err = process.communicate(timeout=START_TIMEOUT)
    assert process.returncode == 3, err
    assert "Traceback" not in err, err
    (line,) = [line for line in err.splitlines() if line.strip()]
    assert line.startswith("identity: cannot start: "), line
    return line


def started(data_dir: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    process = serve_identity(data_dir, env)
    assert process.stdout is not None and process.stdout.readline(), process.stderr
    return process


def stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    assert process.wait(timeout=START_TIMEOUT) == 0


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return service_env(tmp_path)


@pytest.fixture
def used(tmp_path: Path, env: dict[str, str]) -> Path:
    """A data directory that has been used: a master key, a database with data."""
    data_dir = tmp_path / "data"
    stop(started(data_dir, env))
    return data_dir


def test_a_data_directory_that_is_a_file_is_refused(tmp_path, env):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    assert "data directory" in refusal(not_a_dir, env)


def test_the_data_directory_is_made_private(tmp_path, env):
    data_dir = tmp_path / "fresh" / "data"
    stop(started(data_dir, env))
    # The parents it had to make too (issue 12, finding 10: they were 0755).
    assert [d.stat().st_mode & 0o777 for d in (data_dir.parent, data_dir)] == [0o700, 0o700]
    assert all(f.stat().st_mode & 0o077 == 0 for f in data_dir.iterdir() if f.is_file())


def test_a_corrupted_database_is_refused_naming_the_file(used, env):
    (used / "identity.db").write_bytes(b"this is not a database" * 100)
    for sidecar in used.glob("identity.db-*"):
        sidecar.unlink()
    line = refusal(used, env)
    assert "identity.db is not a usable SQLite database" in line and "backup" in line


@pytest.mark.parametrize("damage", ["truncated", "deleted"])
def test_a_directory_that_held_data_never_gets_a_fresh_empty_database(used, env, damage):
    database = used / "identity.db"
    for sidecar in used.glob("identity.db-*"):
        sidecar.unlink()
    if damage == "truncated":
        database.write_bytes(b"")
    else:
        database.unlink()
    line = refusal(used, env)
    assert "held data" in line and ("empty" if damage == "truncated" else "missing") in line
    assert not database.exists() or database.stat().st_size == 0  # nothing was created in its place


def test_a_read_only_database_is_refused(used, env):
    (used / "identity.db").chmod(0o400)
    assert "read-only" in refusal(used, env)


def test_a_master_key_open_to_others_is_refused(used, env):
    key = next(used.glob("*master*.key"))
    key.chmod(0o644)
    line = refusal(used, env)
    assert str(key) in line and "chmod 600" in line


@pytest.mark.parametrize("mode", [0o000, 0o200])
def test_an_unreadable_master_key_is_refused_naming_the_file(used, env, mode):
    """One line and exit 3, as for every unreadable key file (mode 0000 gave a traceback and
    exit 1 to a non-root user; root, who could read it, is refused the same way)."""
    key = next(used.glob("*master*.key"))
    key.chmod(mode)
    line = refusal(used, env)
    assert str(key) in line and "chmod 600" in line


def test_a_master_key_that_cannot_be_read_is_refused_naming_the_file(used, env):
    key = next(used.glob("*master*.key"))
    key.unlink()
    key.mkdir(mode=0o700)  # there, but reading it fails (EISDIR), for root as for anyone
    line = refusal(used, env)
    assert str(key) in line and "not a regular file" in line


def test_a_wrong_master_key_is_refused_naming_the_file(used, env):
    key = next(used.glob("*master*.key"))
    key.chmod(0o600)
    key.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    line = refusal(used, env)
    assert str(key) in line and "does not open" in line


def test_a_second_process_on_the_same_data_directory_is_refused(used, env):
    first = started(used, env)
    try:
        assert "another identity process" in refusal(used, env)
    finally:
        stop(first)
    stop(started(used, env))  # once the first has stopped, the directory is free again


def test_the_module_entry_point_refuses_the_same_way(used, env):
    (used / "identity.db").write_bytes(b"")
    process = subprocess.run(
        [sys.executable, "-m", "cmk_trio.identity"], capture_output=True, text=True, timeout=START_TIMEOUT,
        env={**env, "CMK_DATA_DIR": str(used), "CMK_IDENTITY_PORT": "0"},
    )  # fmt: skip
    assert process.returncode == 3 and "held data" in process.stderr and "Traceback" not in process.stderr
