"""requirements.lock: the exact versions, with their hashes, that the image installs.

    python scripts/lock.py            # (python3 dev.py lock) make the lock again from pyproject.toml
    python scripts/lock.py --upgrade  # the same, taking the newest versions the ranges allow
    python scripts/lock.py --check    # (in python3 dev.py check) fail if it no longer matches pyproject.toml

The Dockerfile installs the lock with `pip install --require-hashes --no-deps` and then the
project itself with `--no-deps --no-build-isolation` (the build backend is in the lock too), so
the image holds nothing that was not hashed here; `python3 dev.py` installs the development
environment constrained to the same versions, so the suites test what the image runs.

The lock is resolved by pip-compile (pip-tools) from pyproject.toml's dependencies and build
requirements, for the image's platform: CPython 3.11 on Linux x86_64 (markers are evaluated
there, so it is made on such a machine). pip-compile keeps the versions the lock already has
unless pyproject.toml needs others or `--upgrade` is given. Each pinned version comes with the
hashes of all its files on the index, so any platform's wheel of it installs.

The check needs no network: the lock's header holds a digest of pyproject.toml's
requirements (dev.py's requirements_digest), every requirement that applies on the image's
platform must be pinned in it to a version its range allows, and every pin must be exact and
hashed.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dev import BIN, LOCK, LOCK_STAMP, ROOT, requirements_digest  # dev.py, at the root (above)

HEADER = f"""\
# What the image installs (Dockerfile: pip install --require-hashes --no-deps -r requirements.lock),
# exact versions with their hashes, for CPython 3.11 on Linux x86_64. Do not edit: made by
# `python3 dev.py lock` (pip-compile); `python3 dev.py check` fails when pyproject.toml's
# requirements change and this file is not made again.
{LOCK_STAMP}{{digest}}
"""

BACKSLASH = "\\"

TARGET = {
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "python_version": "3.11",
    "python_full_version": "3.11.12",
    "os_name": "posix",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
}
"""The image's platform (python:3.11-slim-bookworm), where the markers of requirements are
evaluated: uvloop's `sys_platform != 'win32'` holds there."""


def make(extra: list[str]) -> int:
    """Resolve again with pip-compile and write the lock with its header."""
    if (sys.implementation.name, sys.version_info[:2], platform.system(), platform.machine()) != (
        "cpython", (3, 11), "Linux", "x86_64",
    ):  # fmt: skip
        sys.exit(
            f"the lock is made for the image's platform, CPython 3.11 on Linux x86_64; this is "
            f"{sys.implementation.name} {platform.python_version()} on {platform.system()} {platform.machine()}"
        )
    with tempfile.TemporaryDirectory(prefix="cmk-lock-") as scratch:
        out = Path(scratch) / "requirements.lock"
        if LOCK.exists():  # pip-compile keeps the versions of the file it writes, where it can
            out.write_text(LOCK.read_text())
        done = subprocess.run(
            [str(BIN / "pip-compile"), "--quiet", "--generate-hashes", "--allow-unsafe", "--strip-extras",
             "--build-deps-for", "wheel", "--no-header", "--no-emit-index-url", "--no-emit-find-links",
             "--no-emit-trusted-host", "--output-file", str(out), *extra, "pyproject.toml"],
            cwd=ROOT, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            return done.returncode
        LOCK.write_text(HEADER.format(digest=requirements_digest()) + out.read_text())
    problems = check()
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"wrote {LOCK.relative_to(ROOT)}", file=sys.stderr)
    return 1 if problems else 0


def pins(text: str) -> dict[str, tuple[str, int]]:
    """The lock's entries by canonical name: (version, number of hashes). Raises ValueError
    for an entry that is not one exact version."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    entries, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comments, and pip-compile's "# via" lines
        current = f"{current} {line.removesuffix(BACKSLASH).strip()}".strip()
        if not line.endswith(BACKSLASH):  # a pin's line goes on after a backslash
            entries.append(current)
            current = ""
    found: dict[str, tuple[str, int]] = {}
    for entry in entries:
        requirement = Requirement(entry.split(" --hash=", 1)[0])
        specifiers = list(requirement.specifier)
        if len(specifiers) != 1 or specifiers[0].operator != "==" or "*" in specifiers[0].version:
            raise ValueError(f"{requirement} is not pinned to one exact version")
        name = canonicalize_name(requirement.name)
        if name in found:
            raise ValueError(f"{name} is pinned twice")
        found[name] = (specifiers[0].version, entry.count(" --hash=sha256:"))
    return found


def check(lock: Path = LOCK, pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """What is wrong with the lock against pyproject.toml (nothing: an empty list)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    remake = "; run: python3 dev.py lock"
    if not lock.exists():
        return [f"{lock.name} is missing{remake}"]
    text = lock.read_text()
    if f"{LOCK_STAMP}{requirements_digest(pyproject)}" not in text.splitlines():
        return [f"{lock.name} was made for other requirements than pyproject.toml's{remake}"]
    try:
        locked = pins(text)
    except ValueError as exc:
        return [f"{lock.name}: {exc}{remake}"]
    problems = [f"{lock.name}: {name}=={version} has no hash{remake}"
                for name, (version, hashes) in locked.items() if not hashes]  # fmt: skip
    data = tomllib.loads(pyproject.read_text())
    for line in [*data["project"]["dependencies"], *data["build-system"]["requires"]]:
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate(dict(TARGET, extra="")):
            continue  # not installed on the image's platform
        pinned = locked.get(canonicalize_name(requirement.name))
        if pinned is None:
            problems.append(f"{lock.name} does not pin {requirement.name} ({line}){remake}")
        elif not requirement.specifier.contains(pinned[0], prereleases=True):
            problems.append(f"{lock.name} pins {requirement.name}=={pinned[0]}, outside {line}{remake}")
    return problems


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if the lock does not match pyproject.toml")
    args, extra = parser.parse_known_args(argv)
    if not args.check:
        return make(extra)
    problems = check()
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"{LOCK.name} matches pyproject.toml ({len(pins(LOCK.read_text()))} pinned, hashed)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
