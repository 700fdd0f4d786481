"""Files that hold secrets: master keys, the operator's credential, platform credentials.
Created once, readable by the owner only, never overwritten."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from pathlib import Path

from cmk_trio.rpckit.datadir import StartupError, make_private_dir


def write_private_file(path: Path, text: str) -> None:
    """Create `path` with mode 0600 and write `text`; refuse if it exists (never overwrite a
    secret another process may already rely on)."""
    make_private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def read_or_create_key(path: Path, *, create: bool, size: int, random: Callable[[int], bytes] = os.urandom) -> bytes:
    """The key in a file of base64 text, or a new random one written there if `create`.

    Without `create`, a missing file is an error: data sealed with the lost key exists, and
    a new key could not open it.
    """
    if path.exists():
        try:
            key = base64.b64decode(path.read_text().strip(), validate=True)
        except ValueError:
            raise StartupError(f"{path} does not hold a base64 key; restore the key file") from None
        except OSError as exc:
            raise StartupError(
                f"cannot read the key file {path} ({exc.strerror or type(exc).__name__}); give this user read access"
                f" to it: chmod 600 {path}"
            ) from None
        if len(key) != size:
            raise StartupError(f"{path} holds a {len(key)}-byte key; {size} bytes are needed; restore the key file")
        return key
    if not create:
        raise StartupError(
            f"the master key file {path} is missing, but the database holds data sealed with it; "
            "restore the file (a new key could not open that data)"
        )
    key = random(size)
    write_private_file(path, base64.b64encode(key).decode() + "\n")
    return key
