"""The image installs what was tested (issue 22, item 12): it installed its dependencies from
pyproject.toml's ranges, so an image built a day later could hold versions no test had run.
Now requirements.lock holds exact versions with their hashes (python3 dev.py lock makes it),
the Dockerfile installs it with --require-hashes --no-deps and nothing else, the development
environment is held to the same versions, and `python3 dev.py check` (scripts/lock.py
--check) fails when the lock no longer matches pyproject.toml. Read without containers; the
container suite builds the image."""

from __future__ import annotations

import importlib.metadata
import re
import shlex
from pathlib import Path

import pytest

import dev
from scripts import lock

ROOT = Path(__file__).resolve().parents[1]


def test_the_lock_matches_pyproject_and_every_pin_is_exact_and_hashed():
    assert lock.check() == []
    pinned = lock.pins(dev.LOCK.read_text())
    assert {"grpcio", "protobuf", "cryptography", "uvloop", "setuptools"} <= set(pinned)  # uvloop: its marker holds
    assert all(hashes for _, hashes in pinned.values())


def test_the_image_installs_the_lock_with_hashes_and_nothing_from_ranges():
    dockerfile = (ROOT / "Dockerfile").read_text()
    runs = re.findall(r"^RUN (.*)$", dockerfile.replace("\\\n", " "), re.MULTILINE)  # continuations joined
    installs = [shlex.split(part) for run in runs for part in run.split("&&") if "pip install" in part]
    assert len(installs) == 2, installs
    dependencies, project = installs
    assert {"--require-hashes", "--no-deps"} <= set(dependencies) and dependencies[-2:] == ["-r", "requirements.lock"]
    assert {"--no-deps", "--no-build-isolation"} <= set(project) and project[-1] == "."  # the backend is locked too
    assert "tomllib" not in dockerfile  # no requirements made from pyproject.toml's ranges
    assert "COPY requirements.lock ./" in dockerfile
    assert "!requirements.lock" in (ROOT / ".dockerignore").read_text().splitlines()  # in the build context


def test_the_tests_run_with_the_versions_the_image_installs():
    """dev.py holds the development environment to the lock (while it matches pyproject.toml)."""
    constraints = dev.lock_constraints()
    assert constraints is not None and "--hash" not in constraints
    for name, (version, _) in lock.pins(dev.LOCK.read_text()).items():
        assert f"{name}=={version}" in constraints.replace("_", "-").lower()
        assert importlib.metadata.version(name) == version, f"{name}: the image installs {version}"


@pytest.fixture
def copies(tmp_path):
    """pyproject.toml and requirements.lock, copied to be changed."""
    pyproject, locked = tmp_path / "pyproject.toml", tmp_path / "requirements.lock"
    pyproject.write_text((ROOT / "pyproject.toml").read_text())
    locked.write_text(dev.LOCK.read_text())
    return pyproject, locked


def restamp(pyproject: Path, locked: Path) -> None:
    """The lock's header made to match the changed pyproject.toml (to reach the other checks)."""
    text = re.sub(rf"^{re.escape(dev.LOCK_STAMP)}.*$", dev.LOCK_STAMP + dev.requirements_digest(pyproject),
                  locked.read_text(), flags=re.MULTILINE)  # fmt: skip
    locked.write_text(text)


def test_a_changed_dependency_makes_the_lock_stale(copies):
    pyproject, locked = copies
    assert lock.check(locked, pyproject) == []
    pyproject.write_text(pyproject.read_text().replace('"click>=8.5",', '"click>=8.5",\n    "rich>=13",'))
    assert lock.check(locked, pyproject) == [
        "requirements.lock was made for other requirements than pyproject.toml's; run: python3 dev.py lock"
    ]
    pyproject.write_text((ROOT / "pyproject.toml").read_text().replace("# 2.13 or later", "# 2.13 or newer"))
    assert lock.check(locked, pyproject) == []  # a comment is not a requirement


def test_a_requirement_missing_unpinned_unhashed_or_outside_its_range_is_found(copies):
    pyproject, locked = copies
    pyproject.write_text(pyproject.read_text().replace('"click>=8.5",', '"click>=99",'))
    restamp(pyproject, locked)
    assert lock.check(locked, pyproject) == [
        f"requirements.lock pins click=={lock.pins(locked.read_text())['click'][0]}, outside click>=99; "
        "run: python3 dev.py lock"
    ]
    pyproject.write_text((ROOT / "pyproject.toml").read_text())
    restamp(pyproject, locked)
    text = locked.read_text()
    without_uvloop = re.sub(r"^uvloop==.*?(?=^\S)", "", text, flags=re.MULTILINE | re.DOTALL)
    locked.write_text(without_uvloop)
    assert any("does not pin uvloop" in p for p in lock.check(locked, pyproject))
    locked.write_text(re.sub(r"^click==(\S+) \\\n(    --hash=\S+ \\\n)*    --hash=\S+\n", r"click==\1\n", text,
                             flags=re.MULTILINE))  # fmt: skip
    assert any("click==" in p and "has no hash" in p for p in lock.check(locked, pyproject))
    locked.write_text(text.replace("\nclick==", "\nclick>="))
    assert any("not pinned to one exact version" in p for p in lock.check(locked, pyproject))
