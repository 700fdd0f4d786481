"""Reading configuration from a mapping (the environment, or a test's dict).

Each service's configuration is a frozen dataclass built by `from_env(mapping)` and checked
in `__post_init__`; flags of the CLI override the same fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cmk_trio.rpckit.channels import ChannelTls


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


def env_str(env: Mapping[str, str], name: str, default: str) -> str:
    return env.get(name, default)


def check_database_url(url: str) -> None:
    """An empty URL (the SQLite file in the data directory) or a postgresql:// one."""
    if url and not url.startswith(("postgresql://", "postgres://")):
        raise ConfigError("the database URL must start with postgresql:// (or be empty: SQLite in the data directory)")


def env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, not {raw!r}") from None


def env_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {raw!r}") from None


def env_optional_int(env: Mapping[str, str], name: str) -> int | None:
    """An integer variable, or None when it is not set."""
    return env_int(env, name, 0) if env.get(name) else None


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, not {raw!r}")


def env_path(env: Mapping[str, str], name: str, default: Path | None) -> Path | None:
    raw = env.get(name)
    return Path(raw) if raw else default


@dataclass(frozen=True)
class TlsConfig:
    """Server TLS: a certificate and key, and, for mutual TLS, the CA that client
    certificates must chain to."""

    cert_file: Path | None = None
    key_file: Path | None = None
    client_ca_file: Path | None = None

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ConfigError("TLS needs both a certificate file and a key file")
        if self.client_ca_file is not None and self.cert_file is None:
            raise ConfigError("mutual TLS (a client CA) needs a server certificate too")

    @property
    def enabled(self) -> bool:
        return self.cert_file is not None

    def for_peers(self) -> ChannelTls | None:
        """How this service calls the others: with mutual TLS on, its own certificate as
        client certificate and the same CA as trust anchor; otherwise plain TCP."""
        if self.cert_file is None or self.key_file is None or self.client_ca_file is None:
            return None
        return ChannelTls(self.client_ca_file, self.cert_file, self.key_file)

    @classmethod
    def from_env(cls, env: Mapping[str, str], prefix: str = "CMK_") -> TlsConfig:
        return cls(
            cert_file=env_path(env, f"{prefix}TLS_CERT", None),
            key_file=env_path(env, f"{prefix}TLS_KEY", None),
            client_ca_file=env_path(env, f"{prefix}TLS_CLIENT_CA", None),
        )
