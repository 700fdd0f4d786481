"""Secrets: named values with versions, as Key Vault keeps them, on the same vaults, access
policies (their secret half), audit, soft-delete, purge protection and clock as keys.

A value is sealed under a key derived from the master key for secrets alone, bound to its
version's identifier, so that neither the database nor its backups hold it in the clear, and
a sealed value moved to another row does not open. Reading a value needs `get`; listing shows
no values, as Key Vault's listings do not. A disabled version's value is refused
(SecretDisabled); `nbf` and `exp` are recorded and shown but, as Key Vault does for secrets,
not enforced on reads (the service observably returns an expired secret's value).
"""

from __future__ import annotations

import base64
import binascii
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TypedDict, cast

from cmk_trio.keyvault import errors
from cmk_trio.keyvault.backups import MAX_VERSIONS, BackupSeal, invalid, restore_order, time_of, too_many
from cmk_trio.keyvault.callers import PURGER, Recorder
from cmk_trio.keyvault.crypto import CannotDecrypt, RandomBytes, Sealer
from cmk_trio.keyvault.key_attributes import check_tags
from cmk_trio.keyvault.key_checks import KeyChecks, isotime
from cmk_trio.keyvault.model import Secret, SecretPermission, SecretVersion, Vault
from cmk_trio.keyvault.storage import KeyVaultStore
from cmk_trio.platform import key_names
from cmk_trio.platform.key_names import SecretRef, secret_name, vault_name
from cmk_trio.rpckit.clock import Clock
from cmk_trio.rpckit.errors import invalid_field
from cmk_trio.rpckit.events import ChangeNotifier
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.tokens import VerifiedToken

MAX_VALUE_BYTES = 25 * 1024
"""Key Vault's limit on a secret's value."""
MAX_CONTENT_TYPE = 255
BACKUP_FORMAT = "cmk-secret-backup/1"
MAX_BACKUP_BYTES = 16 * 1024 * 1024 // 4
"""What a restore reads at most (large values in many versions are refused at backup first)."""


@dataclass(frozen=True, slots=True)
class SecretAttributes:
    """What a caller may set on a secret version (None: left as it is, or the default)."""

    content_type: str | None = None
    enabled: bool | None = None
    not_before: datetime | None = None
    expires: datetime | None = None
    tags: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Revealed:
    """A secret version with its value, opened for a caller who may read it."""

    version: SecretVersion
    value: str


class _BackupVersion(TypedDict):
    version: str
    content_type: str
    enabled: bool
    nbf: str
    exp: str
    tags: dict[str, str]
    created: str
    updated: str
    value: str


class _Backup(TypedDict):
    subscription_id: str
    name: str
    created: str
    versions: list[_BackupVersion]


class Secrets:
    """Secrets and their versions, checked by the same KeyChecks as keys (the vault, the
    caller's tenant, the access policy's secret permissions)."""

    def __init__(
        self,
        store: KeyVaultStore,
        clock: Clock,
        sealer: Sealer,
        checks: KeyChecks,
        notifier: ChangeNotifier,
        *,
        dns_suffix: str,
        random: RandomBytes = os.urandom,
    ) -> None:
        self.store = store
        self.clock = clock
        self._values = sealer.for_secrets()
        self._backups = BackupSeal(sealer, BACKUP_FORMAT, MAX_BACKUP_BYTES)
        self._checks = checks
        self._notifier = notifier
        self.dns_suffix = dns_suffix
        self._random = random

    def secret_id(self, vault: str, name: str, version: str | None = None) -> str:
        return key_names.secret_id(vault, name, version, self.dns_suffix)

    def parse(self, field: str, value: str) -> SecretRef:
        return key_names.parse_secret_ref(field, value, self.dns_suffix)

    def _context(self, vault: str, name: str, version: str) -> str:
        # Bound to the version's identifier with the name in lower case: it opens whatever case
        # a caller names the secret in, and nowhere else.
        return self.secret_id(vault, name.lower(), version)

    def _open(self, v: SecretVersion) -> str:
        try:
            return self._values.open(v.sealed_value, self._context(v.vault_name, v.secret_name, v.version)).decode()
        except (CannotDecrypt, UnicodeDecodeError):
            raise errors.Unavailable(
                Reason.INTERNAL, "a stored secret value does not open with this service's master key"
            ) from None

    # --- checks -----------------------------------------------------------------------

    @staticmethod
    def _check(attributes: SecretAttributes) -> None:
        if attributes.tags is not None:
            check_tags("secret.tags", attributes.tags)
        if attributes.content_type is not None and len(attributes.content_type) > MAX_CONTENT_TYPE:
            raise invalid_field("secret.content_type", Reason.FIELD_TOO_LONG, f"at most {MAX_CONTENT_TYPE} characters")
        if attributes.not_before and attributes.expires and attributes.expires <= attributes.not_before:
            raise invalid_field("secret.expires", Reason.FIELD_INVALID, "must be after not_before")

    async def _live(self, vault: Vault, name: str) -> Secret:
        found = await self.store.get_secret(vault.vault_name, name)
        if found is None:
            raise errors.with_akv(
                errors.NotFound(Reason.SECRET_NOT_FOUND, f"a secret with name {name} was not found in vault "
                                f"{vault.vault_name}", metadata={"vault": vault.vault_name, "secret": name}),
                "SecretNotFound",
            )  # fmt: skip
        if found.deleted:
            raise errors.with_akv(
                errors.NotFound(Reason.SECRET_DELETED, f"secret {name} is deleted; it can be recovered until "
                                f"{isotime(found.purge_time)}", metadata={"vault": vault.vault_name, "secret": name}),
                "SecretNotFound",
            )  # fmt: skip
        return found

    async def _version(self, vault: Vault, ref: SecretRef) -> SecretVersion:
        secret = await self._live(vault, ref.secret_name)
        if ref.version is None:
            found = await self.store.latest_secret_version(vault.vault_name, secret.secret_name)
        else:
            found = await self.store.get_secret_version(vault.vault_name, secret.secret_name, ref.version)
        if found is None:
            raise errors.with_akv(
                errors.NotFound(Reason.SECRET_VERSION_NOT_FOUND, f"secret {ref.secret_name} has no version "
                                f"{ref.version}", metadata={"vault": vault.vault_name, "secret": ref.secret_name}),
                "SecretNotFound",
            )  # fmt: skip
        return found

    async def _deleted(self, vault: Vault, name: str) -> Secret:
        found = await self.store.get_secret(vault.vault_name, name)
        if found is None or not found.deleted:
            raise errors.with_akv(
                errors.NotFound(Reason.DELETED_SECRET_NOT_FOUND, f"there is no deleted secret named {name} in vault "
                                f"{vault.vault_name}", metadata={"vault": vault.vault_name, "secret": name}),
                "SecretNotFound",
            )  # fmt: skip
        return found

    # --- values -----------------------------------------------------------------------

    async def set(
        self, caller: VerifiedToken, vault: str, name: str, value: str, attributes: SecretAttributes
    ) -> Revealed:
        """A new version of a secret (the secret made if new) with `value`."""
        vault = vault_name("parent", vault)
        name = secret_name("secret_name", name)
        if len(value.encode()) > MAX_VALUE_BYTES:
            raise invalid_field(
                "value", Reason.SECRET_TOO_LARGE, f"a secret's value is at most {MAX_VALUE_BYTES} bytes"
            )
        self._check(attributes)
        found = await self._checks.authorize(caller, vault, SecretPermission.SET)
        existing = await self.store.get_secret(found.vault_name, name)
        if existing is not None and existing.deleted:
            raise errors.with_akv(
                errors.AlreadyExists(
                    Reason.SECRET_DELETED_BUT_RECOVERABLE,
                    f"secret {name} is currently in a deleted but recoverable state, and its name cannot be reused; "
                    "in this state, the secret can only be recovered or purged",
                    metadata={"vault": found.vault_name, "secret": name},
                ),
                "ObjectIsDeletedButRecoverable",
            )
        now = self.clock.now()
        version_id = uuid.UUID(bytes=self._random(16), version=4).hex
        stored_name = existing.secret_name if existing is not None else name
        version = SecretVersion(
            vault_name=found.vault_name,
            secret_name=stored_name,
            version=version_id,
            content_type=attributes.content_type or "",
            enabled=True if attributes.enabled is None else attributes.enabled,
            not_before=attributes.not_before,
            expires=attributes.expires,
            tags=dict(attributes.tags or {}),
            create_time=now,
            update_time=now,
            sealed_value=self._values.seal(value.encode(), self._context(found.vault_name, stored_name, version_id)),
        )
        async with self.store.unit_of_work() as uow:
            if existing is None:
                await uow.insert_secret(Secret(found.vault_name, stored_name, now))
            await uow.insert_secret_version(version)
        await self._notifier.notify()
        return Revealed(version, value)

    async def get(self, caller: VerifiedToken, ref: SecretRef) -> Revealed:
        vault = await self._checks.authorize(caller, ref.vault_name, SecretPermission.GET)
        version = await self._version(vault, ref)
        if not version.enabled:
            raise errors.with_akv(
                errors.FailedPrecondition(
                    Reason.SECRET_DISABLED,
                    "Operation get is not allowed on a disabled secret.",
                    metadata={"secret_id": self.secret_id(vault.vault_name, version.secret_name, version.version)},
                ),
                "SecretDisabled",
            )
        return Revealed(version, self._open(version))

    async def update(self, caller: VerifiedToken, ref: SecretRef, attributes: SecretAttributes) -> SecretVersion:
        self._check(attributes)
        vault = await self._checks.authorize(caller, ref.vault_name, SecretPermission.SET)
        version = await self._version(vault, ref)
        changed = replace(
            version,
            content_type=version.content_type if attributes.content_type is None else attributes.content_type,
            enabled=version.enabled if attributes.enabled is None else attributes.enabled,
            not_before=attributes.not_before if attributes.not_before is not None else version.not_before,
            expires=attributes.expires if attributes.expires is not None else version.expires,
            tags=dict(attributes.tags) if attributes.tags is not None else version.tags,
            update_time=self.clock.now(),
        )
        if changed.not_before and changed.expires and changed.expires <= changed.not_before:
            raise invalid_field("secret.expires", Reason.FIELD_INVALID, "must be after not_before")
        async with self.store.unit_of_work() as uow:
            await uow.update_secret_version(changed)
        await self._notifier.notify()
        return changed

    # --- listings ---------------------------------------------------------------------

    async def list_secrets(
        self, caller: VerifiedToken, vault: str, *, deleted: bool, after: str | None, limit: int
    ) -> list[tuple[Secret, SecretVersion | None]]:
        found = await self._checks.authorize(caller, vault_name("parent", vault), SecretPermission.LIST)
        secrets = await self.store.list_secrets(found.vault_name, deleted=deleted, after=after, limit=limit)
        return [(s, await self.store.latest_secret_version(found.vault_name, s.secret_name)) for s in secrets]

    async def list_versions(
        self, caller: VerifiedToken, ref: SecretRef, *, after: str | None, limit: int
    ) -> list[SecretVersion]:
        vault = await self._checks.authorize(caller, ref.vault_name, SecretPermission.LIST)
        secret = await self._live(vault, ref.secret_name)
        return await self.store.list_secret_versions(vault.vault_name, secret.secret_name, after=after, limit=limit)

    # --- soft-delete ------------------------------------------------------------------

    async def delete(self, caller: VerifiedToken, ref: SecretRef) -> tuple[Secret, SecretVersion | None]:
        vault = await self._checks.authorize(caller, ref.vault_name, SecretPermission.DELETE)
        secret = await self._live(vault, ref.secret_name)
        latest = await self.store.latest_secret_version(vault.vault_name, secret.secret_name)
        now = self.clock.now()
        async with self.store.unit_of_work() as uow:
            if vault.soft_delete:
                purge_at = now + timedelta(days=vault.retention_days)
                await uow.mark_secret_deleted(vault.vault_name, secret.secret_name, now, purge_at)
                secret = replace(secret, delete_time=now, purge_time=purge_at)
            else:
                await uow.delete_secret(vault.vault_name, secret.secret_name)
                secret = replace(secret, delete_time=now)
        await self._notifier.notify()
        return secret, latest

    async def get_deleted(self, caller: VerifiedToken, ref: SecretRef) -> tuple[Secret, SecretVersion | None]:
        vault = await self._checks.authorize(caller, ref.vault_name, SecretPermission.GET)
        secret = await self._deleted(vault, ref.secret_name)
        return secret, await self.store.latest_secret_version(vault.vault_name, secret.secret_name)

    async def recover(self, caller: VerifiedToken, ref: SecretRef) -> SecretVersion:
        vault = await self._checks.authorize(caller, ref.vault_name, SecretPermission.RECOVER)
        secret = await self._deleted(vault, ref.secret_name)
        async with self.store.unit_of_work() as uow:
            await uow.mark_secret_deleted(vault.vault_name, secret.secret_name, None, None)
        await self._notifier.notify()
        return await self._version(vault, SecretRef(vault.vault_name, secret.secret_name))

    async def purge(self, caller: VerifiedToken, ref: SecretRef) -> None:
        vault = await self._checks.authorize(caller, ref.vault_name, SecretPermission.PURGE)
        secret = await self._deleted(vault, ref.secret_name)
        if vault.purge_protection and secret.purge_time is not None and self.clock.now() < secret.purge_time:
            raise errors.with_akv(
                errors.FailedPrecondition(
                    Reason.PURGE_PROTECTED,
                    f"purge protection is on for vault {vault.vault_name}: secret {secret.secret_name} cannot be "
                    f"purged before {isotime(secret.purge_time)}, when the service purges it by itself",
                    metadata={"vault": vault.vault_name, "secret": secret.secret_name,
                              "purge_time": isotime(secret.purge_time)},
                ),
                "Forbidden",
            )  # fmt: skip
        await self._purge(vault.vault_name, secret.secret_name)

    async def _purge(self, vault: str, name: str) -> None:
        async with self.store.unit_of_work() as uow:
            await uow.delete_secret(vault, name)
        await self._notifier.notify()

    async def purge_due(self, recorder: Recorder) -> list[tuple[str, str]]:
        """Purge every deleted secret whose purge date has come, each purge audited."""
        due = await self.store.secrets_due_for_purge(self.clock.now())
        for vault, name in due:
            async with recorder.system_call("PurgeDeletedSecret", request_id=PURGER, vault_name=vault, key_name=name):
                await self._purge(vault, name)
        return due

    # --- backups ----------------------------------------------------------------------

    async def backup(self, caller: VerifiedToken, ref: SecretRef) -> bytes:
        """Every version of a secret, values included, sealed for this service alone."""
        vault = await self._checks.authorize(caller, ref.vault_name, SecretPermission.BACKUP)
        secret = await self._live(vault, ref.secret_name)
        versions = await self.store.list_secret_versions(vault.vault_name, secret.secret_name, after=None,
                                                         limit=MAX_VERSIONS + 1)  # fmt: skip
        if len(versions) > MAX_VERSIONS:
            raise too_many("secret", secret.secret_name, vault)
        ordered = restore_order(versions, await self.store.latest_secret_version(vault.vault_name, secret.secret_name))
        document: _Backup = {
            "subscription_id": vault.subscription_id,
            "name": secret.secret_name,
            "created": isotime(secret.create_time),
            "versions": [
                {
                    "version": v.version, "content_type": v.content_type, "enabled": v.enabled,
                    "nbf": isotime(v.not_before), "exp": isotime(v.expires), "tags": v.tags,
                    "created": isotime(v.create_time), "updated": isotime(v.update_time),
                    "value": base64.b64encode(self._open(v).encode()).decode(),
                }
                for v in ordered
            ],
        }  # fmt: skip
        blob = self._backups.seal(dict(document))
        if len(blob) > MAX_BACKUP_BYTES:
            raise errors.with_akv(
                errors.FailedPrecondition(Reason.BACKUP_TOO_LARGE, f"the backup of secret {secret.secret_name} "
                                          f"would be over {MAX_BACKUP_BYTES} bytes"),
                "BadParameter",
            )  # fmt: skip
        return blob

    async def restore(self, caller: VerifiedToken, vault: str, blob: bytes) -> SecretVersion:
        found = await self._checks.authorize(caller, vault_name("parent", vault), SecretPermission.RESTORE)
        document = cast(_Backup, self._backups.open(blob, found))
        name = document["name"]
        if await self.store.get_secret(found.vault_name, name) is not None:
            raise errors.with_akv(
                errors.AlreadyExists(Reason.SECRET_EXISTS, f"vault {found.vault_name} already holds a secret named "
                                     f"{name} (it may be soft-deleted: purge or recover it first)",
                                     metadata={"vault": found.vault_name, "secret": name}),
                "Conflict",
            )  # fmt: skip
        now = self.clock.now()
        try:
            versions = [
                SecretVersion(
                    vault_name=found.vault_name, secret_name=name, version=e["version"],
                    content_type=e["content_type"], enabled=e["enabled"], not_before=time_of(e["nbf"]),
                    expires=time_of(e["exp"]), tags=dict(e["tags"]), create_time=time_of(e["created"]) or now,
                    update_time=time_of(e["updated"]) or now,
                    sealed_value=self._values.seal(base64.b64decode(e["value"]),
                                                   self._context(found.vault_name, name, e["version"])),
                )
                for e in document["versions"]
            ]  # fmt: skip
        except (KeyError, ValueError, binascii.Error):
            raise invalid() from None
        async with self.store.unit_of_work() as uow:
            await uow.insert_secret(Secret(found.vault_name, name, time_of(document["created"]) or now))
            for version in versions:
                await uow.insert_secret_version(version)
        await self._notifier.notify()
        return versions[-1]
