"""The CLI's profiles: the endpoints it talks to and the tokens it signed in with, one file
per profile, so that the operator and a user can both stay signed in (`--profile NAME`).

A profile lives in $XDG_CONFIG_HOME/cmk (default ~/.config/cmk): the default profile in
profile.json, a named one in profiles/NAME.json. A --profile (or CMK_PROFILE) with a slash or
ending in .json names a file instead. Mode 0600, in a directory only its user may write
(rpckit.keyfiles: read and written as ssh treats its own files). It holds tokens (which expire in minutes),
one per audience, never a client secret; a profile made from an operator file remembers the
file's path and signs in again from it when a token runs out.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cmk_trio.rpckit.keyfiles import read_private_text, write_private_file

DEFAULT_NAME = "default"
PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
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

    def keep(self, audience: str, token: str, expires_in: int) -> None:
        """Keep a token the issuer says lasts `expires_in` seconds, until then on this
        machine's clock (the issuer's may be a development clock moved forward)."""
        self.tokens[audience] = {"token": token, "expires_at": time.time() + expires_in}

    def forget(self, audience: str) -> None:
        self.tokens.pop(audience, None)

    def login_command(self, name: str) -> str:
        """The command that signs this profile in again, as it was (the secret prompted for)."""
        words = ["cmk"]
        if name != DEFAULT_NAME:
            words += ["--profile", name]
        if self.tls_dir:
            words += ["--tls-dir", self.tls_dir]
        words += ["login", "--endpoint", self.identity_endpoint]
        if self.operator_file:
            words += ["--operator-file", self.operator_file]
        else:
            words += ["--tenant", self.tenant_id, "--client-id", self.client_id]
        for option, value in (
            ("--keyvault-endpoint", self.keyvault_endpoint),
            ("--speech-endpoint", self.speech_endpoint),
        ):
            if value:
                words += [option, value]
        return shlex.join(words)

    def save(self, path: Path) -> None:
        """Write the profile to `path` (mode 0600), replacing it whole; refused (with
        PrivateFileRefused) in a directory others may write, or over a link or another
        user's file (see rpckit.keyfiles)."""
        write_private_file(path, json.dumps(asdict(self), indent=2), replace=True)

    @classmethod
    def load(cls, path: Path) -> Profile | None:
        """The profile in `path`, None if there is none; refused (with PrivateFileRefused)
        when the file or a directory above it is another user's or open to others: a
        profile says where the CLI sends a secret, so a planted one must not be followed."""
        try:
            text = read_private_text(path)
        except FileNotFoundError:
            return None
        data = json.loads(text)
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def config_home() -> Path:
    """$XDG_CONFIG_HOME/cmk, or ~/.config/cmk."""
    base = os.environ.get("XDG_CONFIG_HOME", "")
    return (Path(base) if os.path.isabs(base) else Path.home() / ".config") / "cmk"


def profile_path(chosen: str | None) -> Path:
    """The file of the profile `chosen` (a name, or a file path), default the default profile.
    Raises ValueError for a name that is not one."""
    chosen = chosen or DEFAULT_NAME
    if "/" in chosen or os.sep in chosen or chosen.endswith(".json"):
        return Path(chosen)
    if not PROFILE_NAME.fullmatch(chosen):
        raise ValueError(f"{chosen!r} is not a profile name (letters, digits, '.', '_' and '-'; or a file path)")
    if chosen == DEFAULT_NAME:
        return config_home() / "profile.json"
    return config_home() / "profiles" / f"{chosen}.json"


def profile_name(path: Path) -> str:
    """The name a profile file goes by (its path, when it is outside the profile directory)."""
    if path == config_home() / "profile.json":
        return DEFAULT_NAME
    if path.parent == config_home() / "profiles" and path.suffix == ".json":
        return path.stem
    return str(path)
