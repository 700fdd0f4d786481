"""The CLI's profile file: the endpoint it talks to and the token it signed in with.

Mode 0600. It holds a token (which expires in minutes), never a client secret; a profile
made from an operator file remembers the file's path and signs in again from it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

DEFAULT_PROFILE = Path.home() / ".config" / "cmk" / "profile.json"


@dataclass
class Profile:
    identity_endpoint: str
    tenant_id: str
    client_id: str
    token: str = field(default="", repr=False)
    token_expires_at: float = 0.0
    operator_file: str = ""

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(self), f, indent=2)
        os.chmod(tmp, 0o600)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Profile | None:
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def profile_path(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    env = os.environ.get("CMK_PROFILE")
    return Path(env) if env else DEFAULT_PROFILE
