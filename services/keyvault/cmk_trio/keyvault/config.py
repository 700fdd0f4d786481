"""The key vault's settings: what every service linked to the directory has
(platform.settings), and its own."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import ClassVar

from cmk_trio.platform.settings import LinkedServiceSettings
from cmk_trio.rpckit.config import setting
from cmk_trio.rpckit.settings import heartbeat_setting, port_setting


@dataclass(frozen=True, kw_only=True)
class KeyVaultConfig(LinkedServiceSettings):
    """Everything the key vault service needs to start."""

    SERVICE: ClassVar[str] = "KEYVAULT"

    port: int = port_setting(50052)
    master_key_file: Path | None = setting(
        None,
        env="CMK_KEYVAULT_MASTER_KEY_FILE",
        help="the key file that seals the keys' private halves and keys the audit chain"
        " [keyvault-master.key in the data directory]",
    )
    purge_interval: timedelta = setting(
        timedelta(minutes=1),
        env="CMK_PURGE_INTERVAL_SECONDS",
        help="how often the service purges what is due, applies rotation policies and signs an audit checkpoint",
    )
    event_heartbeat: timedelta = heartbeat_setting()
    http_port: int | None = setting(
        None,
        env="CMK_KEYVAULT_HTTP_PORT",
        help="serve Azure Key Vault's data plane over HTTPS on this port (0: a free one), for Microsoft's SDKs;"
        " vaults are reached as https://{vault}.{CMK_VAULT_DNS_SUFFIX}",
    )

    @property
    def master_key_path(self) -> Path:
        return self.master_key_file or self.data_dir / "keyvault-master.key"


__all__ = ["KeyVaultConfig"]
