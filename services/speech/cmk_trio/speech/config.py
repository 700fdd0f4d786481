"""Configuration of the speech service: a frozen dataclass built from the environment and
overridden by command-line flags."""

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

DEFAULT_PORT = 50053


@dataclass(frozen=True)
class SpeechConfig:
    """Everything the speech service needs to start."""

    data_dir: Path
    identity_endpoint: str
    credentials: ClientCredentials
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    issuer_base: str = "https://login.microsoftonline.com"
    clock_skew: timedelta = timedelta(seconds=30)
    """How far a token's times may be off this service's clock and still be accepted."""
    revocation_max_staleness: timedelta = timedelta(seconds=60)
    """Tokens are refused once nothing has been heard from identity's event stream (events,
    or its heartbeats) for this long: revocations may be missed meanwhile (fail closed)."""
    master_key_ring_file: Path | None = None
    """The versioned file of Microsoft-managed master keys (default: in the data directory)."""
    auto_approve_cmk: bool = False
    """A development option: CMK requests are approved at once."""
    keyvault_endpoint: str = ""
    """The key vault service; without it, customer-managed keys cannot be used."""
    vault_dns_suffix: str = "vault.azure.net"
    data_key_max_age: timedelta = timedelta(minutes=5)
    """The longest an unwrapped data key stays cached, even when no event ever comes."""
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

    def __post_init__(self) -> None:
        check_database_url(self.database_url)
        if not timedelta(seconds=1) <= self.revocation_max_staleness <= timedelta(hours=1):
            raise ConfigError("the revocation max staleness must be between 1 second and 1 hour")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0-65535, not {self.port}")
        if not self.identity_endpoint:
            raise ConfigError("the identity endpoint is required (CMK_IDENTITY_ENDPOINT)")

    @property
    def ring_path(self) -> Path:
        return self.master_key_ring_file or self.data_dir / "speech-master-keys.json"

    @property
    def database_path(self) -> Path:
        return self.data_dir / "speech.db"

    @property
    def database_location(self) -> str | Path:
        """Where the store is: the PostgreSQL URL, or else the SQLite file."""
        return self.database_url or self.database_path

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: object) -> SpeechConfig:
        """Build from CMK_* variables; keyword overrides (from flags) win when not None.

        The platform credentials come from CMK_SPEECH_CREDENTIALS_FILE (JSON with tenant_id,
        client_id, client_secret) or the three CMK_SPEECH_* variables.
        """
        credentials = overrides.pop("credentials", None) or ClientCredentials.from_env(env, "CMK_SPEECH")
        if credentials is None:
            raise ConfigError("the speech service needs platform credentials (CMK_SPEECH_CREDENTIALS_FILE)")
        values: dict[str, object] = {
            "data_dir": env_path(env, "CMK_DATA_DIR", Path(".cmk")),
            "identity_endpoint": env_str(env, "CMK_IDENTITY_ENDPOINT", ""),
            "credentials": credentials,
            "host": env_str(env, "CMK_SPEECH_HOST", "127.0.0.1"),
            "port": env_int(env, "CMK_SPEECH_PORT", DEFAULT_PORT),
            "issuer_base": env_str(env, "CMK_ISSUER_BASE", "https://login.microsoftonline.com"),
            "clock_skew": timedelta(seconds=env_int(env, "CMK_CLOCK_SKEW_SECONDS", 30)),
            "revocation_max_staleness": timedelta(seconds=env_int(env, "CMK_REVOCATION_MAX_STALENESS_SECONDS", 60)),
            "master_key_ring_file": env_path(env, "CMK_SPEECH_MASTER_KEY_RING_FILE", None),
            "auto_approve_cmk": env_bool(env, "CMK_AUTO_APPROVE_CMK", False),
            "keyvault_endpoint": env_str(env, "CMK_KEYVAULT_ENDPOINT", ""),
            "vault_dns_suffix": env_str(env, "CMK_VAULT_DNS_SUFFIX", "vault.azure.net"),
            "data_key_max_age": timedelta(seconds=env_int(env, "CMK_DATA_KEY_MAX_AGE_SECONDS", 300)),
            "tls": TlsConfig.from_env(env),
            "log_level": env_str(env, "CMK_LOG_LEVEL", "INFO"),
            "metrics_port": env_optional_int(env, "CMK_SPEECH_METRICS_PORT"),
            "metrics_host": env_str(env, "CMK_METRICS_HOST", "127.0.0.1"),
            "database_url": env_str(env, "CMK_DATABASE_URL", ""),
            "dev_time_control": env_bool(env, "CMK_DEV_TIME_CONTROL", False),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
