"""Configuration of the identity service: a frozen dataclass, checked on construction,
built from a mapping (the environment) and overridden by command-line flags."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from cmk_trio.rpckit import audiences
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

DEFAULT_PORT = 50051
DEFAULT_ISSUER_BASE = "https://login.microsoftonline.com"


@dataclass(frozen=True)
class IdentityConfig:
    """Everything the identity service needs to start.

    `operator_client_id`/`operator_client_secret`, when both are set, make the bootstrap
    operator with those credentials instead of generating and writing them.
    """

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    issuer_base: str = DEFAULT_ISSUER_BASE
    audiences: frozenset[str] = audiences.ALL
    token_lifetime: timedelta = timedelta(minutes=15)
    """How long an issued token is valid (1 minute to 24 hours)."""
    clock_skew: timedelta = timedelta(seconds=30)
    """How far a token's times may be off this service's clock and still be accepted."""
    master_key_file: Path | None = None
    """The key file that seals the signing keys' private halves (default: in the data directory)."""
    operator_client_id: str | None = None
    operator_client_secret: str | None = field(default=None, repr=False)
    operator_file_path: Path | None = None
    """Where the bootstrap operator's credentials are written (default: operator.json in the
    data directory); in containers a volume of its own, so that whoever reads the operator's
    credentials does not also read the database."""
    secret_hash_cost: int = 14
    """log2 of scrypt's N for client secrets (10 to 20; lower only in tests)."""
    event_heartbeat: timedelta = timedelta(seconds=5)
    """How often an idle event stream says it is alive (followers refuse tokens when they
    have heard nothing for much longer: see CMK_REVOCATION_MAX_STALENESS_SECONDS)."""
    tls: TlsConfig = field(default_factory=TlsConfig)
    log_level: str = "INFO"
    metrics_port: int | None = None
    """Where Prometheus metrics are served over HTTP (0: a free port); None: not served."""
    metrics_host: str = "127.0.0.1"
    http_port: int | None = None
    """Where the OpenID Connect discovery document, the JWKS and the OAuth 2.0 token endpoint
    are served over HTTP (HTTPS with the service's certificate), on `host` (0: a free port);
    None: not served."""
    http_public_url: str = ""
    """The base URL the discovery document names its endpoints under, where clients reach
    them (behind a published port or a proxy); empty: the address the service listens on."""
    """The address metrics listen on: loopback unless the operator exposes them (plain HTTP)."""
    database_url: str = ""
    """A postgresql:// URL: the service keeps its tables there, and any number of replicas may
    share them. Empty: a SQLite file in the data directory, for one process."""
    dev_time_control: bool = False
    """Lets the operator move the service clock forward (tests only; off by default)."""

    def __post_init__(self) -> None:
        check_database_url(self.database_url)
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0-65535, not {self.port}")
        if not self.issuer_base.startswith(("https://", "http://")):
            raise ConfigError("the issuer base must be an http(s) URL")
        if self.http_port is not None and not 0 <= self.http_port <= 65535:
            raise ConfigError(f"the HTTP port must be 0-65535, not {self.http_port}")
        if self.http_public_url and not self.http_public_url.startswith(("https://", "http://")):
            raise ConfigError("the HTTP public URL must be an http(s) URL")
        if not timedelta(minutes=1) <= self.token_lifetime <= timedelta(hours=24):
            raise ConfigError("the token lifetime must be between 1 minute and 24 hours")
        if not timedelta(0) <= self.clock_skew <= timedelta(minutes=5):
            raise ConfigError("the clock skew must be between 0 and 5 minutes")
        if not timedelta(milliseconds=10) <= self.event_heartbeat <= timedelta(minutes=1):
            raise ConfigError("the event heartbeat must be between 10 ms and 1 minute")
        if not 10 <= self.secret_hash_cost <= 20:
            raise ConfigError("the secret hash cost (log2 of scrypt's N) must be between 10 and 20")
        if (self.operator_client_id is None) != (self.operator_client_secret is None):
            raise ConfigError("set both the operator client id and secret, or neither")
        if self.operator_client_secret is not None and len(self.operator_client_secret) < 16:
            raise ConfigError("a configured operator secret must have at least 16 characters")

    @property
    def master_key_path(self) -> Path:
        return self.master_key_file or self.data_dir / "identity-master.key"

    @property
    def database_path(self) -> Path:
        return self.data_dir / "identity.db"

    @property
    def database_location(self) -> str | Path:
        """Where the store is: the PostgreSQL URL, or else the SQLite file."""
        return self.database_url or self.database_path

    @property
    def operator_file(self) -> Path:
        return self.operator_file_path or self.data_dir / "operator.json"

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: object) -> IdentityConfig:
        """Build from CMK_* variables; keyword overrides (from flags) win when not None."""
        secret = env.get("CMK_OPERATOR_CLIENT_SECRET")
        secret_file = env_path(env, "CMK_OPERATOR_CLIENT_SECRET_FILE", None)
        if secret is None and secret_file is not None:
            secret = secret_file.read_text().strip()
        values: dict[str, object] = {
            "data_dir": env_path(env, "CMK_DATA_DIR", Path(".cmk")),
            "host": env_str(env, "CMK_IDENTITY_HOST", "127.0.0.1"),
            "port": env_int(env, "CMK_IDENTITY_PORT", DEFAULT_PORT),
            "issuer_base": env_str(env, "CMK_ISSUER_BASE", DEFAULT_ISSUER_BASE),
            "token_lifetime": timedelta(seconds=env_int(env, "CMK_TOKEN_LIFETIME_SECONDS", 900)),
            "clock_skew": timedelta(seconds=env_int(env, "CMK_CLOCK_SKEW_SECONDS", 30)),
            "master_key_file": env_path(env, "CMK_IDENTITY_MASTER_KEY_FILE", None),
            "operator_client_id": env.get("CMK_OPERATOR_CLIENT_ID"),
            "operator_client_secret": secret,
            "operator_file_path": env_path(env, "CMK_OPERATOR_FILE", None),
            "secret_hash_cost": env_int(env, "CMK_SECRET_HASH_COST", 14),
            "event_heartbeat": timedelta(seconds=env_int(env, "CMK_EVENT_HEARTBEAT_SECONDS", 5)),
            "tls": TlsConfig.from_env(env),
            "log_level": env_str(env, "CMK_LOG_LEVEL", "INFO"),
            "metrics_port": env_optional_int(env, "CMK_IDENTITY_METRICS_PORT"),
            "metrics_host": env_str(env, "CMK_METRICS_HOST", "127.0.0.1"),
            "http_port": env_optional_int(env, "CMK_IDENTITY_HTTP_PORT"),
            "http_public_url": env_str(env, "CMK_IDENTITY_HTTP_PUBLIC_URL", "").rstrip("/"),
            "database_url": env_str(env, "CMK_DATABASE_URL", ""),
            "dev_time_control": env_bool(env, "CMK_DEV_TIME_CONTROL", False),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
