"""The speech service's settings: what every service linked to the directory has
(platform.settings), and its own."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import ClassVar

from cmk_trio.platform.settings import LinkedServiceSettings
from cmk_trio.rpckit.config import setting
from cmk_trio.rpckit.settings import port_setting


@dataclass(frozen=True, kw_only=True)
class SpeechConfig(LinkedServiceSettings):
    """Everything the speech service needs to start."""

    SERVICE: ClassVar[str] = "SPEECH"

    port: int = port_setting(50053)
    master_key_ring_file: Path | None = setting(
        None,
        env="CMK_SPEECH_MASTER_KEY_RING_FILE",
        help="the versioned file of Microsoft-managed master keys [speech-master-keys.json in the data directory]",
    )
    auto_approve_cmk: bool = setting(
        False, env="CMK_AUTO_APPROVE_CMK", help="approve CMK requests at once (development only)"
    )
    keyvault_endpoint: str = setting(
        "", env="CMK_KEYVAULT_ENDPOINT", help="the key vault service; without it, customer-managed keys cannot be used"
    )
    data_key_max_age: timedelta = setting(
        timedelta(minutes=5),
        env="CMK_DATA_KEY_MAX_AGE_SECONDS",
        help="the longest an unwrapped data key stays cached, even when no event ever comes",
    )

    @property
    def ring_path(self) -> Path:
        return self.master_key_ring_file or self.data_dir / "speech-master-keys.json"
