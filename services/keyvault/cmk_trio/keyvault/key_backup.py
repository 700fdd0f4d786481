"""Key backups: every version of a key, its private halves included, in a blob that only this
key vault service can open (sealed under a key derived from its master key, never the one that
seals private keys at rest), and the key restored from it, under its name, with its versions
and their attributes, into a vault of the same subscription (as Azure restores only within the
subscription and geography it backed up from).

A backup is what Key Vault's backup is: a way to move a key between vaults, or to bring back a
key that was purged. It is not an export: nobody outside the service reads the private keys in
it, and the blob names its format so that a later version of the service can still read it.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import TypedDict, cast

from cmk_trio.keyvault import errors
from cmk_trio.keyvault.backups import MAX_VERSIONS, BackupSeal, invalid, restore_order, time_of, too_many
from cmk_trio.keyvault.crypto import CannotDecrypt, KeyMaterial, Sealer, load_private_der
from cmk_trio.keyvault.key_checks import isotime
from cmk_trio.keyvault.keys import Keys
from cmk_trio.keyvault.model import EventType, Key, KeyOperation, KeyPermission, KeyVersion
from cmk_trio.platform.key_names import KeyRef, vault_name
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.tokens import VerifiedToken

FORMAT = "cmk-key-backup/1"
"""Written into every backup and bound to its seal: a blob of another kind does not open as one."""
MAX_BACKUP_BYTES = 3 * 1024 * 1024
"""The largest blob a restore reads (500 RSA-4096 versions fit, with room)."""


class BackupVersion(TypedDict):
    version: str
    curve: str
    key_ops: list[str]
    enabled: bool
    nbf: str
    exp: str
    tags: dict[str, str]
    created: str
    updated: str
    private: str
    """The private key, PKCS#8 DER in base64: inside the sealed blob only."""


class BackupDocument(TypedDict):
    subscription_id: str
    vault: str
    name: str
    created: str
    versions: list[BackupVersion]


class KeyBackups:
    """Backs keys up and restores them, through the same checks as every key call."""

    def __init__(self, keys: Keys, sealer: Sealer) -> None:
        self._keys = keys
        self._seal = BackupSeal(sealer, FORMAT, MAX_BACKUP_BYTES)

    async def backup(self, caller: VerifiedToken, ref: KeyRef) -> bytes:
        keys = self._keys
        vault = await keys.checks.authorize(caller, ref.vault_name, KeyPermission.BACKUP)
        key = await keys.checks.live_key(vault, ref.key_name)
        versions = await keys.store.list_versions(vault.vault_name, key.key_name, after=None, limit=MAX_VERSIONS + 1)
        if len(versions) > MAX_VERSIONS:
            raise too_many("key", key.key_name, vault)
        ordered = restore_order(versions, await keys.store.latest_version(vault.vault_name, key.key_name))
        document: BackupDocument = {
            "subscription_id": vault.subscription_id,
            "vault": vault.vault_name,
            "name": key.key_name,
            "created": isotime(key.create_time),
            "versions": [await self._version_entry(v) for v in ordered],
        }
        return self._seal.seal(dict(document))

    async def _version_entry(self, v: KeyVersion) -> BackupVersion:
        material = await self._keys.materials.open(v)
        return {
            "version": v.version,
            "curve": v.curve,
            "key_ops": [o.value for o in v.key_ops],
            "enabled": v.enabled,
            "nbf": isotime(v.not_before),
            "exp": isotime(v.expires),
            "tags": v.tags,
            "created": isotime(v.create_time),
            "updated": isotime(v.update_time),
            "private": base64.b64encode(material.private_der()).decode(),
        }

    async def restore(self, caller: VerifiedToken, vault: str, blob: bytes) -> KeyVersion:
        """The key of a backup, made again in `vault` under its name; refused if the vault
        holds a key of that name (live or soft-deleted) or belongs to another subscription."""
        keys = self._keys
        found = await keys.checks.authorize(caller, vault_name("parent", vault), KeyPermission.RESTORE)
        document = cast(BackupDocument, self._seal.open(blob, found))
        name = document["name"]
        if await keys.store.get_key(found.vault_name, name) is not None:
            raise errors.with_akv(
                errors.AlreadyExists(
                    Reason.KEY_EXISTS,
                    f"vault {found.vault_name} already holds a key named {name} (it may be soft-deleted: purge or "
                    "recover it first)",
                    metadata={"vault": found.vault_name, "key": name},
                ),
                "Conflict",
            )
        versions = [self._restored_version(found.vault_name, name, entry) for entry in document["versions"]]
        now = keys.clock.now()
        async with keys.store.unit_of_work() as uow:
            await uow.insert_key(Key(found.vault_name, name, time_of(document["created"]) or now))
            for version, _ in versions:
                await uow.insert_version(version)
            await uow.append_event(EventType.KEY_CREATED, now, vault_name=found.vault_name, key_name=name,
                                   version=versions[-1][0].version)  # fmt: skip
        for version, material in versions:
            keys.materials.keep(found.vault_name, name, version.version, material)
        await keys.notifier.notify()
        return versions[-1][0]

    def _restored_version(self, vault: str, name: str, entry: BackupVersion) -> tuple[KeyVersion, KeyMaterial]:
        try:
            material = load_private_der(base64.b64decode(entry["private"]), validated=True)
        except (CannotDecrypt, ValueError, binascii.Error, KeyError):
            raise invalid() from None
        keys = self._keys
        ops = tuple(KeyOperation(o) for o in entry["key_ops"])
        kid = keys.key_id(vault, name, entry["version"])
        version = KeyVersion(
            vault_name=vault,
            key_name=name,
            version=entry["version"],
            key_size=material.size,
            key_ops=ops,
            enabled=entry["enabled"],
            not_before=time_of(entry["nbf"]),
            expires=time_of(entry["exp"]),
            tags=dict(entry["tags"]),
            create_time=time_of(entry["created"]) or keys.clock.now(),
            update_time=time_of(entry["updated"]) or keys.clock.now(),
            public_jwk=json.dumps(material.public_jwk(kid, [o.value for o in ops]), sort_keys=True),
            sealed_private_key=keys.materials.seal(vault, name, entry["version"], material),
            curve=entry["curve"],
        )
        return version, material
