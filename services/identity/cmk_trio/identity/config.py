"""The identity service's settings: what every service has (rpckit.settings), and its own."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import ClassVar

from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.config import ConfigError, setting
from cmk_trio.rpckit.settings import ServiceSettings, heartbeat_setting, port_setting


def _operator_secret(env: Mapping[str, str], _service: str) -> str | None:
    """CMK_OPERATOR_CLIENT_SECRET, or the file CMK_OPERATOR_CLIENT_SECRET_FILE names."""
    secret = env.get("CMK_OPERATOR_CLIENT_SECRET")
    if secret is None and (path := env.get("CMK_OPERATOR_CLIENT_SECRET_FILE")):
        return Path(path).read_text().strip()
    return secret


@dataclass(frozen=True, kw_only=True)
class IdentityConfig(ServiceSettings):
    """Everything the identity service needs to start.

    `operator_client_id`/`operator_client_secret`, when both are set, make the bootstrap
    operator with those credentials instead of generating and writing them.
    """

    SERVICE: ClassVar[str] = "IDENTITY"

    port: int = port_setting(50051)
    audiences: frozenset[str] = audiences.ALL
    token_lifetime: timedelta = setting(
        timedelta(minutes=15), env="CMK_TOKEN_LIFETIME_SECONDS", help="how long an issued token is valid (1 min-24 h)"
    )
    master_key_file: Path | None = setting(
        None,
        env="CMK_IDENTITY_MASTER_KEY_FILE",
        help="the key file that seals the signing keys' private halves [identity-master.key in the data directory]",
    )
    operator_client_id: str | None = setting(
        None, env="CMK_OPERATOR_CLIENT_ID", flag=None, help="the bootstrap operator's client id, instead of a new one"
    )
    operator_client_secret: str | None = setting(
        None,
        env="CMK_OPERATOR_CLIENT_SECRET",
        secret=True,
        load=_operator_secret,
        also=("CMK_OPERATOR_CLIENT_SECRET_FILE",),
        help="its client secret (16 characters or more), or CMK_OPERATOR_CLIENT_SECRET_FILE naming its file",
    )
    operator_file_path: Path | None = setting(
        None,
        env="CMK_OPERATOR_FILE",
        flag=None,
        help="where the bootstrap operator's credentials are written [operator.json in the data directory]; in"
        " containers a volume of its own, so that whoever reads them does not also read the database",
    )
    secret_hash_cost: int = setting(
        14, env="CMK_SECRET_HASH_COST", flag=None, help="log2 of scrypt's N for client secrets (10 to 20)"
    )
    event_heartbeat: timedelta = heartbeat_setting()
    http_port: int | None = setting(
        None,
        env="CMK_IDENTITY_HTTP_PORT",
        help="serve OpenID Connect discovery, the JWKS and the OAuth 2.0 token endpoint over HTTP(S) on this"
        " port (0: a free one)",
    )
    http_public_url: str = setting(
        "",
        env="CMK_IDENTITY_HTTP_PUBLIC_URL",
        help="the base URL clients reach those endpoints at, named in the discovery document [the address they"
        " listen on]",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "http_public_url", self.http_public_url.rstrip("/"))
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
    def operator_file(self) -> Path:
        return self.operator_file_path or self.data_dir / "operator.json"
