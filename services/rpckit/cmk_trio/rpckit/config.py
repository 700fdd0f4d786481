"""Reading configuration from a mapping (the environment, or a test's dict): the `env_*`
readers for the few settings read on their own (the limits of listeners and calls), and the
declaration of a settings field (`setting`, `group`), which rpckit.settings reads."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cmk_trio.rpckit.channels import ChannelTls


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


TRUE, FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


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
    if raw.lower() in TRUE:
        return True
    if raw.lower() in FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, not {raw!r}")


def env_path(env: Mapping[str, str], name: str, default: Path | None) -> Path | None:
    raw = env.get(name)
    return Path(raw) if raw else default


SETTING = "cmk_setting"
GROUP = "cmk_group"


@dataclass(frozen=True)
class Setting:
    """How a field is set from outside (see the module)."""

    env: str
    flag: str | None = ""
    """The flag's name; "" makes it from the field's name, None gives the field no flag."""
    help: str = ""
    load: Callable[[Mapping[str, str], str], object] | None = None
    """Reads the value itself from the variables (and the service's prefix), for a value made
    of several variables (credentials from a file or from three variables); None: not set."""
    secret: bool = False
    """A malformed value is not quoted back, and it has no flag (a command line is not private)."""
    also: tuple[str, ...] = ()
    """The other variables `load` reads (for the documentation, and the names a launcher may give)."""
    must_exist: bool = False
    """A path that must name a file when it is given (a certificate): refused at once if not."""


# As dataclasses.field, a setting is typed Any where it is declared: the type is the annotation's.
def setting(
    default: Any = dataclasses.MISSING,  # (the annotation's type)
    *,
    env: str,
    flag: str | None = "",
    help: str = "",
    load: Callable[[Mapping[str, str], str], object] | None = None,
    secret: bool = False,
    also: tuple[str, ...] = (),
    must_exist: bool = False,
    factory: Callable[[], Any] | None = None,  # (the annotation's type)
) -> Any:  # (as dataclasses.field)
    """A field set by the variable `env` (and a flag); `default` when neither says."""
    meta = {SETTING: Setting(env, None if secret else flag, help, load, secret, also, must_exist)}
    if factory is not None:
        return field(default_factory=factory, metadata=meta, repr=not secret)
    return field(default=default, metadata=meta, repr=not secret)  # (a secret stays out of reprs and logs)


def group(factory: Callable[[], Any]) -> Any:  # (as setting: the annotation's type)
    """A field whose value is a dataclass of settings of its own (read by the same rules)."""
    return field(default_factory=factory, metadata={GROUP: True})


@dataclass(frozen=True)
class TlsConfig:
    """Server TLS: a certificate and key, and, for mutual TLS, the CA that client
    certificates must chain to. (Its fields are settings: `setting` is a field specifier, as
    dataclasses.field, which ruff cannot know within the module that defines it.)"""

    cert_file: Path | None = setting(  # noqa: RUF009
        None, env="CMK_TLS_CERT", must_exist=True, flag="--tls-cert", help="the service's certificate (PEM)"
    )
    key_file: Path | None = setting(  # noqa: RUF009
        None, env="CMK_TLS_KEY", must_exist=True, flag="--tls-key", help="its private key (PEM)"
    )
    client_ca_file: Path | None = setting(  # noqa: RUF009
        None,
        env="CMK_TLS_CLIENT_CA",
        must_exist=True,
        flag="--tls-client-ca",
        help="require client certificates from this CA (mutual TLS)",
    )

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
