"""A service's claim on its data directory, checked before anything is opened: the directory
is usable and private, no other process of the service uses it, its key files are private,
and a directory that shows it held data never gets a fresh, empty database.

Each refusal is a StartupError whose message is one line saying what is wrong and what to do;
the entry points print it and exit non-zero instead of a traceback."""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


class StartupError(RuntimeError):
    """The service cannot start with what it found; the message says what and what to do."""


@dataclass
class DataDirClaim:
    """Held while the service runs: the lock that keeps a second process of it out."""

    path: Path
    _lock: IO[str] | None = field(repr=False)

    def release(self) -> None:
        """Give the directory up (again is fine: a server stopped twice releases once)."""
        if self._lock is None or self._lock.closed:
            return
        with contextlib.suppress(OSError):
            fcntl.flock(self._lock, fcntl.LOCK_UN)
        self._lock.close()


def make_private_dir(path: Path) -> None:
    """Create `path` and each of its missing parents with mode 0700 (mkdir's parents=True
    makes the parents with the default mode, 0755, whatever `mode` says)."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)


def claim_data_dir(path: Path, service: str, *, database: Path | None, key_files: Sequence[Path]) -> DataDirClaim:
    """Create `path` (mode 0700) if needed and claim it for `service`, or refuse.

    `key_files` are the secrets kept there (master keys): each must be private (0600), and
    any of them existing is the sign that the directory held data, so `database` must then
    exist and not be empty. With `database` None (the store is on PostgreSQL), the replicas
    of the service may share the directory: it is not locked."""
    try:
        make_private_dir(path)
    except OSError as exc:
        raise StartupError(f"cannot use {path} as the data directory: {exc.strerror or exc}") from None
    if not path.is_dir():
        raise StartupError(f"the data directory {path} is not a directory")
    probe = path / f".{service}.probe"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise StartupError(
            f"the data directory {path} is not writable ({exc.strerror or exc}); give this user write access to it"
        ) from None
    lock = _lock(path, service) if database is not None else None
    try:
        for key_file in key_files:
            _require_private(key_file)
        if database is not None:
            _require_database(path, database, key_files)
    except BaseException:
        if lock is not None:
            lock.close()
        raise
    return DataDirClaim(path, lock)


def _lock(path: Path, service: str) -> IO[str]:
    lock_path = path / f".{service}.lock"
    handle = os.fdopen(os.open(lock_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise StartupError(
            f"another {service} process is using the data directory {path} (it holds {lock_path.name}); "
            "stop it first, or give this one its own data directory"
        ) from None
    return handle


def _require_private(key_file: Path) -> None:
    """Key files are readable by their owner only, as ssh requires of its keys."""
    try:
        mode = stat.S_IMODE(key_file.stat().st_mode)
    except FileNotFoundError:
        return
    if mode & 0o077:
        raise StartupError(
            f"the key file {key_file} is open to group or others (mode {mode:04o}); run: chmod 600 {key_file}"
        )
    if not mode & 0o400:
        # (root could read it anyway: refused all the same, as any other user would be)
        raise StartupError(
            f"the key file {key_file} is not readable by its owner (mode {mode:04o}); run: chmod 600 {key_file}"
        )


def _require_database(path: Path, database: Path, key_files: Sequence[Path]) -> None:
    held = [k for k in key_files if k.exists()]
    size = database.stat().st_size if database.exists() else None
    if held and not size:
        state = "missing" if size is None else "empty"
        raise StartupError(
            f"the data directory {path} held data ({held[0].name} exists) but its database {database.name} is "
            f"{state}; restore {database} from a backup, or move the data directory away to start afresh"
        )
    if size is not None and (not stat.S_IMODE(database.stat().st_mode) & 0o200 or not os.access(database, os.W_OK)):
        raise StartupError(f"the database {database} is read-only; make it writable by this user: chmod 600 {database}")
