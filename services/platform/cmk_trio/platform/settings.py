"""The settings of a service that follows the directory (the key vault, speech): where
identity is, the service's own platform principal, and how long it may go without hearing
identity's event stream before it refuses tokens."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from cmk_trio.client.identity import ClientCredentials
from cmk_trio.rpckit.config import ConfigError, setting
from cmk_trio.rpckit.settings import ServiceSettings


def _credentials(env: Mapping[str, str], service: str) -> ClientCredentials | None:
    """From the file CMK_<SERVICE>_CREDENTIALS_FILE names (a private file: one that is not is
    refused with what to do, rpckit.keyfiles), or from the three variables."""
    try:
        return ClientCredentials.from_env(env, f"CMK_{service}")
    except FileNotFoundError as exc:
        raise ConfigError(
            f"CMK_{service}_CREDENTIALS_FILE (--credentials-file): no such file: {exc.filename}"
        ) from None
    except (KeyError, ValueError) as exc:  # not JSON, or a field missing
        raise ConfigError(
            f"CMK_{service}_CREDENTIALS_FILE (--credentials-file): not a credentials file (JSON with tenant_id,"
            f" client_id, client_secret): {type(exc).__name__}"
        ) from None


@dataclass(frozen=True, kw_only=True)
class LinkedServiceSettings(ServiceSettings):
    """A service with a link to the directory (platform.directory_link's DirectorySettings)."""

    identity_endpoint: str = setting(env="CMK_IDENTITY_ENDPOINT", help="the identity service's host:port")
    credentials: ClientCredentials = setting(
        env="CMK_{SERVICE}_CREDENTIALS_FILE",
        flag="--credentials-file",
        help="JSON with tenant_id, client_id, client_secret of the service's platform principal (or the"
        " CMK_<SERVICE>_TENANT_ID, _CLIENT_ID and _CLIENT_SECRET variables)",
        load=_credentials,
        also=("CMK_{SERVICE}_TENANT_ID", "CMK_{SERVICE}_CLIENT_ID", "CMK_{SERVICE}_CLIENT_SECRET"),
    )
    vault_dns_suffix: str = setting(
        "vault.azure.net", env="CMK_VAULT_DNS_SUFFIX", help="the host name suffix of vault URIs"
    )
    """(The vault serves its vaults under it; speech knows a vault's URI by it.)"""
    revocation_max_staleness: timedelta = setting(
        timedelta(seconds=60),
        env="CMK_REVOCATION_MAX_STALENESS_SECONDS",
        help="refuse tokens once nothing has been heard from identity's event stream for this long",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.identity_endpoint:
            raise ConfigError("the identity endpoint is required (CMK_IDENTITY_ENDPOINT)")
        if not self.vault_dns_suffix or "/" in self.vault_dns_suffix:
            raise ConfigError("the vault DNS suffix must be a host name suffix such as vault.azure.net")
        if not timedelta(seconds=1) <= self.revocation_max_staleness <= timedelta(hours=1):
            raise ConfigError("the revocation max staleness must be between 1 second and 1 hour")
