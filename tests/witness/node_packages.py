"""Microsoft's JavaScript SDKs for the witness suite, installed with npm on first use.

As dev.py installs buf: into the virtual environment (`{sys.prefix}/witness-js`, or where
CMK_WITNESS_JS_DIR says), once, then reused while tests/witness/js/package-lock.json is
unchanged. `npm ci` installs exactly what the lock says (versions and integrity hashes),
runs no package's install scripts, and refuses a package whose declared engines exclude this
node. There is no skipping: without node, npm or the registry, the witness tests fail, so that
CI cannot pass without having run them.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

SOURCES = Path(__file__).resolve().parent / "js"
"""package.json, package-lock.json and the scripts node runs."""
DIR_ENV = "CMK_WITNESS_JS_DIR"
INSTALL_SECONDS = 600


def install_dir() -> Path:
    return Path(os.environ.get(DIR_ENV) or Path(sys.prefix) / "witness-js")


def _digest() -> str:
    return hashlib.sha256(
        b"".join((SOURCES / name).read_bytes() for name in ("package.json", "package-lock.json"))
    ).hexdigest()


def _installed(prefix: Path, wanted: str) -> bool:
    stamp = prefix / ".installed"
    return (prefix / "node_modules").is_dir() and stamp.exists() and stamp.read_text() == wanted


def ensure_node_packages() -> Path:
    """The directory whose node_modules holds the pinned SDKs, with the witness scripts beside
    it (copied at every call: node resolves an ES module's imports from the script's own
    folder, and a script edited since the install must be the one that runs)."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"the JavaScript witness tests need {tool} (Node.js 20 or newer) on PATH")
    prefix, wanted = install_dir(), _digest()
    if not _installed(prefix, wanted):
        prefix.mkdir(parents=True, exist_ok=True)
        # One install at a time (two test runs beside each other share the directory).
        with open(prefix.parent / f".{prefix.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not _installed(prefix, wanted):
                _install(prefix, wanted)
    for script in SOURCES.glob("*.mjs"):
        shutil.copyfile(script, prefix / script.name)
    return prefix


def _install(prefix: Path, wanted: str) -> None:
    print(f"installing the JavaScript witnesses' packages into {prefix} (npm ci)", file=sys.stderr)
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(SOURCES / name, prefix / name)
    npm = [str(shutil.which("npm")), "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--engine-strict",
           "--loglevel=error"]  # fmt: skip
    done = subprocess.run(npm, cwd=prefix, capture_output=True, text=True, timeout=INSTALL_SECONDS, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"npm ci failed in {prefix} (exit {done.returncode}):\n{done.stderr[-3000:]}")
    (prefix / ".installed").write_text(wanted)
