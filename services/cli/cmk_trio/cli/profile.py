"""The CLI's profile file: the endpoints it talks to and the tokens it signed in with.

Mode 0600. It holds tokens (which expire in minutes), one per audience, never a client
secret; a profile made from an operator file remembers the file's path and signs in again
from it when a token runs out.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cmk_trio.rpckit.datadir import make_private_dir

DEFAULT_PROFILE = Path.home() / ".config" / "cmk" / "profile.json"
RENEW_MARGIN_SECONDS = 30


@dataclass
class Profile:
    identity_endpoint: str
    tenant_id: str
    client_id: str
    keyvault_endpoint: str = ""
    speech_endpoint: str = ""
    tls_dir: str = ""
    """A development PKI directory (ca.crt, cli.crt, cli.key) when the services want mutual TLS."""
    tokens: dict[str, dict[str, object]] = field(default_factory=dict, repr=False)
    operator_file: str = ""

    def token(self, audience: str) -> str | None:
        """A stored token for `audience` that is not about to expire."""
        entry = self.tokens.get(audience)
        if not entry or float(str(entry.get("expires_at", 0))) - RENEW_MARGIN_SECONDS < time.time():
            return None
        return str(entry["token"])

    def keep(self, audience: str, token: str, expires_at: float) -> None:
        self.tokens[audience] = {"token": token, "expires_at": expires_at}

    def save(self, path: Path) -> None:
        make_private_dir(path.parent)
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
