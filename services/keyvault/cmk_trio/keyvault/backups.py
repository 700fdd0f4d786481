"""What key backups (key_backup.py) and secret backups (vault_secrets.py) share: a JSON
document sealed under the key derived for backups alone and bound to its format, so that only
this key vault service opens it and a key's backup is never taken for a secret's; the order a
restore stores versions in; and the refusals of a blob that is not one, or not for this vault."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, TypeVar

from cmk_trio.keyvault import errors
from cmk_trio.keyvault.crypto import CannotDecrypt, Sealer
from cmk_trio.keyvault.model import Vault
from cmk_trio.rpckit.json_input import Json
from cmk_trio.rpckit.reasons import Reason

MAX_VERSIONS = 500
"""As Key Vault: an object with more versions than this cannot be backed up."""


class Versioned(Protocol):
    @property
    def version(self) -> str: ...

    @property
    def create_time(self) -> datetime: ...


V = TypeVar("V", bound=Versioned)


def restore_order(versions: Sequence[V], latest: V | None) -> list[V]:
    """Oldest first and the newest last: the order in which a restore stores them makes the
    same version the newest again."""
    older = sorted((v for v in versions if latest is None or v.version != latest.version), key=lambda v: v.create_time)
    return older + ([latest] if latest is not None else [])


def invalid() -> errors.ServiceError:
    return errors.with_akv(
        errors.InvalidArgument(
            Reason.BACKUP_INVALID, "the backup blob is not one this key vault made, or it was altered"
        ),
        "BadParameter",
    )


def too_many(what: str, name: str, vault: Vault) -> errors.ServiceError:
    return errors.with_akv(
        errors.FailedPrecondition(
            Reason.BACKUP_TOO_LARGE,
            f"{what} {name} has more than {MAX_VERSIONS} versions, more than a backup holds",
            metadata={"vault": vault.vault_name, what: name},
        ),
        "BadParameter",
    )


def time_of(text: str) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


class BackupSeal:
    """Seals and opens the backup documents of one format (cmk-key-backup/1, ...)."""

    def __init__(self, sealer: Sealer, form: str, max_bytes: int) -> None:
        self._sealer = sealer.for_backups()
        self.form = form
        self.max_bytes = max_bytes

    def seal(self, document: dict[str, object]) -> bytes:
        return self._sealer.seal(json.dumps({"format": self.form, **document}, separators=(",", ":")).encode(),
                                 self.form)  # fmt: skip

    def open(self, blob: bytes, vault: Vault) -> dict[str, Json]:
        """The document of a backup of this format, for a vault of the subscription it was made
        in; BACKUP_INVALID for anything else this service did not seal, or altered."""
        if len(blob) > self.max_bytes:
            raise invalid()
        try:
            opened = json.loads(self._sealer.open(blob, self.form))
        except (CannotDecrypt, ValueError, UnicodeDecodeError):
            raise invalid() from None
        # The seal is authenticated and bound to the format: what opens was sealed above.
        if not isinstance(opened, dict) or opened.get("format") != self.form or not opened.get("versions"):
            raise invalid()
        if opened.get("subscription_id") != vault.subscription_id:
            raise errors.with_akv(
                errors.InvalidArgument(Reason.BACKUP_OTHER_SUBSCRIPTION, "the backup was made in another "
                                       "subscription; restore it into a vault of the subscription it came from"),
                "BadParameter",
            )  # fmt: skip
        return opened
