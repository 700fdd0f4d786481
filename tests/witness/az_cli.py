"""Azure's CLI for its witness, installed with pip into an environment of its own on first use
and kept between runs.

azure-cli is heavy (about 730 MB installed, a few minutes to install from the registry), and
it pins its own versions of the azure-* packages, which must not meet the project's. So it
lives in a virtual environment of its own, outside the project's (CMK_AZ_CLI_DIR, else
`~/.cache/cmk-trio/azure-cli-<version>`), made once and reused while the version is the one
pinned here; a half-made one (no stamp) is made again. There is no skipping: without the
registry on the first run, the witness fails, so that CI cannot pass without having run it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

VERSION = "2.91.0"
"""The az CLI the witness runs (its newest release when the witness was written)."""
DIR_ENV = "CMK_AZ_CLI_DIR"
INSTALL_SECONDS = 1200


def install_dir() -> Path:
    return Path(os.environ.get(DIR_ENV) or Path.home() / ".cache" / "cmk-trio" / f"azure-cli-{VERSION}")


def _installed(prefix: Path) -> bool:
    stamp = prefix / ".installed"
    return (prefix / "bin" / "az").exists() and stamp.exists() and stamp.read_text() == VERSION


def ensure_az() -> Path:
    """A folder that holds only `az` (for PATH: the environment's own python and pip must not
    shadow the project's), installing the CLI first if needed."""
    prefix = install_dir()
    if not _installed(prefix):
        prefix.parent.mkdir(parents=True, exist_ok=True)
        # One install at a time (two test runs beside each other share the folder).
        with open(prefix.parent / f".{prefix.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not _installed(prefix):
                _install(prefix)
    only = prefix / "path"
    only.mkdir(exist_ok=True)
    if not (only / "az").exists():
        (only / "az").symlink_to(prefix / "bin" / "az")
    return only


def _install(prefix: Path) -> None:
    shutil.rmtree(prefix, ignore_errors=True)
    print(f"installing azure-cli {VERSION} into {prefix} (once; later runs reuse it)", file=sys.stderr)
    started = time.monotonic()
    base = getattr(sys, "_base_executable", sys.executable)  # the interpreter, not this venv's
    for step in ([base, "-m", "venv", str(prefix)],
                 [str(prefix / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                  f"azure-cli=={VERSION}"]):  # fmt: skip
        done = subprocess.run(step, capture_output=True, text=True, timeout=INSTALL_SECONDS, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(step[:4])} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    (prefix / ".installed").write_text(VERSION)
    print(f"azure-cli {VERSION} installed in {time.monotonic() - started:.0f} s", file=sys.stderr)
