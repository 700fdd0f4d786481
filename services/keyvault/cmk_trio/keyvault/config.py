"""Configuration of the key vault service: a frozen dataclass built from the environment
and overridden by command-line flags."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from cmk_trio.client.identity import ClientCredentials
from cmk_trio.rpckit.config import (
    ConfigError,
    TlsConfig,
    check_database_url,
    env_bool,
    env_int,
    env_optional_int,
    env_path,
    env_str,
)

DEFAULT_PORT = 50052
DEFAULT_DNS_SUFFIX = "vault.azure.net"


@dataclass(frozen=True)
class KeyVaultConfig:
    """Everything the key vault service needs to start."""

    data_dir: Path
    identity_endpoint: str
    credentials: ClientCredentials
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    vault_dns_suffix: str = DEFAULT_DNS_SUFFIX
    issuer_base: str = "https://login.microsoftonline.com"
    clock_skew: timedelta = timedelta(seconds=30)
    """How far a token's times may be off this service's clock and still be accepted."""
    revocation_max_staleness: timedelta = timedelta(seconds=60)
    """Tokens are refused once nothing has been heard from identity's event stream (events,
    or its heartbeats) for this long: revocations may be missed meanwhile (fail closed)."""
    master_key_file: Path | None = None
    """The key file that seals the keys' private halves and keys the audit chain (default: in the data directory)."""
    purge_interval: timedelta = timedelta(minutes=1)
    """How often the service purges what is due, applies rotation policies and signs an
    audit checkpoint."""
    tls: TlsConfig = field(default_factory=TlsConfig)
    log_level: str = "INFO"
    metrics_port: int | None = None
    """Where Prometheus metrics are served over HTTP (0: a free port); None: not served."""
    metrics_host: str = "127.0.0.1"
    """The address metrics listen on: loopback unless the operator exposes them (plain HTTP)."""
    database_url: str = ""
    """A postgresql:// URL: the service keeps its tables there, and any number of replicas may
    share them. Empty: a SQLite file in the data directory, for one process."""
    dev_time_control: bool = False
    """Lets the operator move the service clock forward (tests only; off by default)."""
    event_heartbeat: timedelta = timedelta(seconds=5)
    """How long the event stream may be idle before it says it is alive (followers refuse to
    cache what it could revoke while they have not heard it)."""

    def __post_init__(self) -> None:
        check_database_url(self.database_url)
        if not timedelta(seconds=1) <= self.revocation_max_staleness <= timedelta(hours=1):
            raise ConfigError("the revocation max staleness must be between 1 second and 1 hour")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0-65535, not {self.port}")
        if not self.identity_endpoint:
            raise ConfigError("the identity endpoint is required (CMK_IDENTITY_ENDPOINT)")
        if not self.vault_dns_suffix or "/" in self.vault_dns_suffix:
            raise ConfigError("the vault DNS suffix must be a host name suffix such as vault.azure.net")

    @property
    def master_key_path(self) -> Path:
        return self.master_key_file or self.data_dir / "keyvault-master.key"

    @property
    def database_path(self) -> Path:
        return self.data_dir / "keyvault.db"

    @property
    def database_location(self) -> str | Path:
        """Where the store is: the PostgreSQL URL, or else the SQLite file."""
        return self.database_url or self.database_path

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: object) -> KeyVaultConfig:
        """Build from CMK_* variables; keyword overrides (from flags) win when not None.

        The platform credentials come from CMK_KEYVAULT_CREDENTIALS_FILE (JSON with tenant_id,
        client_id, client_secret) or the three CMK_KEYVAULT_* variables.
        """
        credentials = overrides.pop("credentials", None) or ClientCredentials.from_env(env, "CMK_KEYVAULT")
        if credentials is None:
            raise ConfigError("the key vault needs platform credentials (CMK_KEYVAULT_CREDENTIALS_FILE)")
        values: dict[str, object] = {
            "data_dir": env_path(env, "CMK_DATA_DIR", Path(".cmk")),
            "identity_endpoint": env_str(env, "CMK_IDENTITY_ENDPOINT", ""),
            "credentials": credentials,
            "host": env_str(env, "CMK_KEYVAULT_HOST", "127.0.0.1"),
            "port": env_int(env, "CMK_KEYVAULT_PORT", DEFAULT_PORT),
            "vault_dns_suffix": env_str(env, "CMK_VAULT_DNS_SUFFIX", DEFAULT_DNS_SUFFIX),
            "issuer_base": env_str(env, "CMK_ISSUER_BASE", "https://login.microsoftonline.com"),
            "clock_skew": timedelta(seconds=env_int(env, "CMK_CLOCK_SKEW_SECONDS", 30)),
            "revocation_max_staleness": timedelta(seconds=env_int(env, "CMK_REVOCATION_MAX_STALENESS_SECONDS", 60)),
            "master_key_file": env_path(env, "CMK_KEYVAULT_MASTER_KEY_FILE", None),
            "purge_interval": timedelta(seconds=env_int(env, "CMK_PURGE_INTERVAL_SECONDS", 60)),
            "tls": TlsConfig.from_env(env),
            "log_level": env_str(env, "CMK_LOG_LEVEL", "INFO"),
            "metrics_port": env_optional_int(env, "CMK_KEYVAULT_METRICS_PORT"),
            "metrics_host": env_str(env, "CMK_METRICS_HOST", "127.0.0.1"),
            "database_url": env_str(env, "CMK_DATABASE_URL", ""),
            "dev_time_control": env_bool(env, "CMK_DEV_TIME_CONTROL", False),
            "event_heartbeat": timedelta(seconds=env_int(env, "CMK_EVENT_HEARTBEAT_SECONDS", 5)),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]


__all__ = ["KeyVaultConfig"]
