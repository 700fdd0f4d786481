#!/usr/bin/env python3
"""Set-up and everyday commands, needing nothing but python3 (3.11 or newer).

    python3 dev.py up       start the trio (data in ./.cmk)
    python3 dev.py test     run the test suite (extra arguments go to pytest)
    python3 dev.py check    generated code (protos, synchronous clients) fresh, ruff, mypy and buf lint clean
    python3 dev.py bench    the benchmark suite (--smoke: a seconds-long run)
    python3 dev.py profile SCENARIO   py-spy on the trio under one load scenario
    python3 dev.py faults   the fault-injection suite, 20 kills per service; writes RELIABILITY.md
                            (--bounded: 3 kills per service, a minute, as .ci/run runs it)
    python3 dev.py containers  the container suite: podman (installed if missing), our image built
                            from the Dockerfile, compose.yaml brought up with Compose v2 and
                            docker-compose 1.29, faults across containers; writes RELIABILITY.md's
                            containers section (--no-report: leave it alone)
    python3 dev.py witness  the witness suite: Microsoft's SDKs, unmodified (Python, and JavaScript
                            run by node: npm installs the packages tests/witness/js pins on first
                            use), against a real trio
    python3 dev.py az       the az CLI witness: the README's az walk, verbatim, both ways (azure-cli is
                            installed once into ~/.cache/cmk-trio, or CMK_AZ_CLI_DIR, and reused)
    python3 dev.py security the security suite with the full fuzz (10,000 inputs per service, 3,000 to
                            the key vault's HTTPS door, 2,000 to ARM's) and 300 calls a phase of the fairness
                            measurement; writes SECURITY.md
    python3 dev.py protos   regenerate the code from protos/ and the README's reference sections
    python3 dev.py lock     make requirements.lock again from pyproject.toml (the exact, hashed versions
                            the image installs; `check` fails when it is stale; --upgrade: newest allowed)
    python3 dev.py cmk ...  any cmk command

The first run makes ./.venv and installs the project into it: `up` and `cmk` install what
running needs, the other commands the development tools too (pip shows its progress); later
runs reinstall only when pyproject.toml or requirements.lock has changed. The dependencies
are held to the versions in requirements.lock, those the image installs, so that what is
tested is what ships (while the lock matches pyproject.toml; else the ranges, and `check` fails).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("CMK_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"
STAMP = VENV / ".cmk-installed"
LOCK = ROOT / "requirements.lock"
LOCK_STAMP = "# pyproject-requirements-sha256: "
"""The line of requirements.lock's header that holds requirements_digest() (scripts/lock.py)."""


def requirements_digest(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """A digest of pyproject.toml's requirements (the dependencies and the build system's):
    requirements.lock keeps it in its header, and is current while they are unchanged."""
    import tomllib

    data = tomllib.loads(pyproject.read_text())
    wanted = {"dependencies": data["project"]["dependencies"], "build-system": data["build-system"]["requires"]}
    return hashlib.sha256(json.dumps(wanted, sort_keys=True).encode()).hexdigest()


def lock_constraints() -> str | None:
    """requirements.lock's pins as pip constraints (without hashes: pip takes a hash in a
    constraints file only if every requirement has one), None while the lock is stale."""
    if not LOCK.exists() or f"{LOCK_STAMP}{requirements_digest()}" not in LOCK.read_text().splitlines():
        return None
    lines = [line.rstrip(" \\") for line in LOCK.read_text().splitlines() if line[:1].isalnum()]
    return "\n".join(lines) + "\n"


def ensure_venv(*, dev: bool = True) -> None:
    """Make the virtual environment and install the project (with its development tools when
    `dev`), once per version of pyproject.toml. A second dev.py started meanwhile (`up` in
    one shell, `cmk` in another) waits for the first to finish instead of installing alongside it."""
    if sys.version_info < (3, 11):  # noqa: UP036 (this script may be started by an older python3)
        sys.exit(f"cmk-trio needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes())
    digest.update(LOCK.read_bytes() if LOCK.exists() else b"")
    wanted = digest.hexdigest()
    if _installed(wanted, dev):
        return
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV.parent / f".{VENV.name}.lock", "w") as lock:
        if os.name != "nt":
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)
        _install(wanted, dev)


def _installed(wanted: str, dev: bool) -> bool:
    """Whether this pyproject.toml is installed, with the development tools if `dev` (a stamp
    of "HASH dev" serves both; "HASH" serves running only)."""
    if not (STAMP.exists() and PYTHON.exists()):
        return False
    digest, _, extras = STAMP.read_text().partition(" ")
    return digest == wanted and (extras == "dev" or not dev)


def _install(wanted: str, dev: bool) -> None:
    if _installed(wanted, dev):
        return  # another dev.py installed it while this one waited
    if not PYTHON.exists():
        print(f"creating {VENV}", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(VENV)
    what = "cmk-trio and its development tools" if dev else "cmk-trio (what running needs; `test` adds the tools)"
    print(f"installing {what} into {VENV}", file=sys.stderr)
    constraints = lock_constraints()
    held: list[str] = []
    if constraints is None:
        print("requirements.lock does not match pyproject.toml: installing from the ranges "
              "(python3 dev.py lock makes it again)", file=sys.stderr)  # fmt: skip
    else:
        (VENV / "constraints.txt").write_text(constraints)
        held = ["-c", str(VENV / "constraints.txt")]
    subprocess.run(
        [str(PYTHON), "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "on",
         *held, "-e", f"{ROOT}[dev]" if dev else str(ROOT)],
        check=True,
    )  # fmt: skip
    STAMP.write_text(f"{wanted} dev" if dev else wanted)


BUF_VERSION = "1.75.0"
"""The proto linter, from the npm registry (buf.yaml says which rules)."""


def ensure_buf() -> str:
    """buf, installed with npm into the virtual environment the first time it is needed."""
    prefix = VENV / "buf"
    found = prefix / "node_modules" / ".bin" / "buf"
    stamp = prefix / ".version"
    if found.exists() and stamp.exists() and stamp.read_text() == BUF_VERSION:
        return str(found)
    npm = shutil.which("npm")
    if npm is None:
        sys.exit("buf lint needs npm (Node.js) to install buf from the npm registry")
    print(f"installing buf {BUF_VERSION} from the npm registry", file=sys.stderr)
    prefix.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [npm, "install", "--prefix", str(prefix), "--no-save", "--no-audit", "--no-fund", "--loglevel=error",
         f"@bufbuild/buf@{BUF_VERSION}"],
        check=True,
    )  # fmt: skip
    stamp.write_text(BUF_VERSION)
    return str(found)


def run(*args: str) -> int:
    return subprocess.run(list(args), cwd=ROOT).returncode


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    ensure_venv(dev=command not in {"up", "cmk"})
    if command in {"up", "cmk"}:
        # Become the service process, so that Ctrl-C and SIGTERM reach it directly.
        args = [str(BIN / "cmk"), *([command] if command == "up" else []), *rest]
        if command == "up":
            os.chdir(ROOT)  # the data directory ./.cmk is the repository's
        os.execv(args[0], args)  # noqa: S606 (our own console script)
    if command == "test":
        return run(str(PYTHON), "-m", "pytest", *rest)
    if command == "check":
        sources = ("services", "tests", "scripts", "bench", "dev.py")
        return (
            run(str(PYTHON), "scripts/gen_protos.py", "--check")
            or run(str(PYTHON), "scripts/gen_sync_clients.py", "--check")
            or run(str(PYTHON), "scripts/gen_docs.py", "--check")
            or run(str(PYTHON), "scripts/lock.py", "--check")
            or run(str(BIN / "ruff"), "check", *sources)
            or run(str(BIN / "ruff"), "format", "--check", *sources)
            or run(str(BIN / "mypy"))
            or run(ensure_buf(), "lint")
        )
    if command == "bench":
        return run(str(PYTHON), "bench/run.py", *rest)
    if command == "faults":
        bounded = "--bounded" in rest
        env = {**os.environ, "CMK_FAULT_KILLS": "3" if bounded else "20"}
        if not bounded:
            env["CMK_FAULT_REPORT"] = str(ROOT / "RELIABILITY.md")
        args = [str(PYTHON), "-m", "pytest", "-m", "faults", "tests/faults", *(a for a in rest if a != "--bounded")]
        return subprocess.run(args, cwd=ROOT, env=env).returncode
    if command == "containers":
        env = {**os.environ}
        if "--no-report" not in rest:
            env["CMK_CONTAINER_REPORT"] = str(ROOT / "RELIABILITY.md")
        args = [
            str(PYTHON),
            "-m",
            "pytest",
            "-m",
            "containers",
            "tests/containers",
            *(a for a in rest if a != "--no-report"),
        ]
        return subprocess.run(args, cwd=ROOT, env=env).returncode
    if command == "witness":
        # Apart from `test`: it needs node and the npm registry (on the first run), and fails
        # without them rather than skip; the everyday suite needs only Python.
        return run(str(PYTHON), "-m", "pytest", "-m", "witness", "tests/witness", *rest)
    if command == "az":
        # Apart from `witness`: azure-cli is heavy (minutes to install, once) and pins its own
        # azure-* packages, so it has an environment of its own; fails without it, never skips.
        return run(str(PYTHON), "-m", "pytest", "-m", "azcli", "tests/witness/test_az_cli.py", *rest)
    if command == "security":
        # The whole security suite with the full fuzz; SECURITY.md only from a run that passed.
        scratch = Path(tempfile.mkdtemp(prefix="cmk-security-"))
        fuzz, matrix = scratch / "fuzz.json", scratch / "matrix.md"
        listeners, fairness = scratch / "listeners.json", scratch / "fairness.json"
        doors = {"matrix": scratch / "door-matrix.json", "fuzz": scratch / "door-fuzz.json",
                 "flood": scratch / "door-flood.json", "arm-matrix": scratch / "arm-matrix.json",
                 "arm-fuzz": scratch / "arm-fuzz.json"}  # fmt: skip
        env = {**os.environ, "CMK_FUZZ_INPUTS": "10000", "CMK_FUZZ_REPORT": str(fuzz),
               "CMK_SECURITY_REPORT": str(matrix), "CMK_LISTENER_REPORT": str(listeners),
               "CMK_FAIRNESS_SAMPLES": "300", "CMK_FAIRNESS_REPORT": str(fairness),
               "CMK_DOOR_MATRIX_REPORT": str(doors["matrix"]), "CMK_DOOR_FUZZ_INPUTS": "3000",
               "CMK_DOOR_FUZZ_REPORT": str(doors["fuzz"]), "CMK_DOOR_FLOOD_CALLS": "200",
               "CMK_DOOR_FLOOD_REPORT": str(doors["flood"]), "CMK_ARM_MATRIX_REPORT": str(doors["arm-matrix"]),
               "CMK_ARM_FUZZ_INPUTS": "2000", "CMK_ARM_FUZZ_REPORT": str(doors["arm-fuzz"])}  # fmt: skip
        args = [str(PYTHON), "-m", "pytest", "-m", "security", "tests/security", *rest]
        return subprocess.run(args, cwd=ROOT, env=env).returncode or run(
            str(PYTHON), "-m", "tests.security.report", "--fuzz", str(fuzz), "--matrix", str(matrix),
            "--listeners", str(listeners), "--fairness", str(fairness), "--door-matrix", str(doors["matrix"]),
            "--door-fuzz", str(doors["fuzz"]), "--door-flood", str(doors["flood"]), "--arm-matrix",
            str(doors["arm-matrix"]), "--arm-fuzz", str(doors["arm-fuzz"]), "--out", str(ROOT / "SECURITY.md"),
        )  # fmt: skip
    if command == "profile":
        return run(str(PYTHON), "bench/profile.py", *rest)
    if command == "lock":
        return run(str(PYTHON), "scripts/lock.py", *rest)
    if command == "protos":
        return run(str(PYTHON), "scripts/gen_protos.py") or run(str(PYTHON), "scripts/gen_docs.py")
    print(f"unknown command {command!r}\n{__doc__}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
