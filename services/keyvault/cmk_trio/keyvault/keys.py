"""The data plane: keys, their versions, and the cryptographic operations, authorised by
the vault's access policies.

Every call is checked in one order, each failure with its own reason: the vault exists;
the caller's token is of the vault's tenant; an access policy grants the permission; the
key exists and is not deleted; the version exists and is enabled; it is inside its
nbf/exp window (only for wrap, encrypt and sign: unwrap, decrypt and verify stay allowed
outside it, as in the real service, so that data is never lost to an expiry date); the
operation is among the version's key operations. Token validity and revocation are checked
before, by the shared validator.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from cmk_trio.client import key_names
from cmk_trio.client.key_names import KeyRef, key_name, parse_key_ref, vault_name
from cmk_trio.keyvault import errors
from cmk_trio.keyvault.crypto import (
    BadKeyMaterial,
    CannotDecrypt,
    Padding,
    RandomBytes,
    RsaKeyMaterial,
    Sealer,
    generate_rsa,
    import_rsa_jwk,
    load_private_der,
)
from cmk_trio.keyvault.key_attributes import (
    MAX_PAYLOAD,
    CryptoResult,
    KeyAttributes,
    check_tags,
    max_plaintext,
)
from cmk_trio.keyvault.model import (
    ALL_KEY_OPERATIONS,
    EventType,
    Key,
    KeyOperation,
    KeyPermission,
    KeyVersion,
    Vault,
)
from cmk_trio.keyvault.storage import KeyVaultStore
from cmk_trio.rpckit.clock import Clock
from cmk_trio.rpckit.errors import invalid_field
from cmk_trio.rpckit.events import ChangeNotifier
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.storage import ReadCache
from cmk_trio.rpckit.tokens import VerifiedToken

T = TypeVar("T")


class Keys:
    """Keys and key operations in the vaults."""

    def __init__(
        self,
        store: KeyVaultStore,
        clock: Clock,
        sealer: Sealer,
        notifier: ChangeNotifier,
        *,
        dns_suffix: str,
        random: RandomBytes = os.urandom,
    ) -> None:
        self.store = store
        self.clock = clock
        self.sealer = sealer
        self.notifier = notifier
        self.dns_suffix = dns_suffix
        self._random = random
        self._materials: dict[tuple[str, str, str], RsaKeyMaterial] = {}
        # Vaults, keys and versions read once per change: every write of this service
        # announces itself on the notifier before its call answers (audit appends do not,
        # so they leave the cache alone).
        self._reads = ReadCache(lambda: self.notifier.version)

    # --- identifiers ------------------------------------------------------------------

    def vault_uri(self, vault: str) -> str:
        return f"https://{vault}.{self.dns_suffix}/"

    def key_id(self, vault: str, key: str, version: str) -> str:
        return key_names.key_id(vault, key, version, self.dns_suffix)

    def parse(self, field: str, value: str) -> KeyRef:
        return parse_key_ref(field, value, self.dns_suffix)

    # --- authorization ----------------------------------------------------------------

    async def authorize(self, caller: VerifiedToken, vault: str, permission: KeyPermission) -> Vault:
        """The vault, if the caller is of its tenant and an access policy grants `permission`."""
        found = await self._reads.get(("vault", vault), lambda: self.store.get_vault(vault))
        if found is None or found.deleted:
            raise errors.vault_not_found(vault)
        if caller.tenant_id != found.tenant_id:
            raise errors.with_akv(
                errors.Unauthenticated(
                    Reason.TOKEN_TENANT_MISMATCH,
                    f"the token was issued by tenant {caller.tenant_id}, but vault {vault} trusts only tenant "
                    f"{found.tenant_id}; get a token from that tenant",
                    metadata={"token_tenant_id": caller.tenant_id, "expected_tenant_id": found.tenant_id},
                ),
                "Unauthorized",
            )
        policy = found.policy_of(caller.object_id)
        if policy is None or policy.tenant_id != caller.tenant_id or not policy.grants(permission):
            raise errors.forbidden_by_policy(caller.object_id, permission.value, vault)
        return found

    async def live_key(self, vault: Vault, name: str) -> Key:
        key = await self._reads.get(
            ("key", vault.vault_name, name.lower()), lambda: self.store.get_key(vault.vault_name, name)
        )
        if key is None:
            raise errors.with_akv(
                errors.NotFound(
                    Reason.KEY_NOT_FOUND,
                    f"a key with name {name} was not found in vault {vault.vault_name}",
                    metadata={"vault": vault.vault_name, "key": name},
                ),
                "KeyNotFound",
            )
        if key.deleted:
            raise errors.with_akv(
                errors.NotFound(
                    Reason.KEY_DELETED,
                    f"key {name} is deleted; it can be recovered until {_iso(key.purge_time)}",
                    metadata={"vault": vault.vault_name, "key": name, "purge_time": _iso(key.purge_time)},
                ),
                "KeyNotFound",
            )
        return key

    async def _version(self, vault: Vault, ref: KeyRef) -> KeyVersion:
        await self.live_key(vault, ref.key_name)
        name, version = ref.key_name, ref.version
        if version is None:
            found = await self._reads.get(
                ("latest", vault.vault_name, name.lower()), lambda: self.store.latest_version(vault.vault_name, name)
            )
        else:
            found = await self._reads.get(
                ("version", vault.vault_name, name.lower(), version),
                lambda: self.store.get_version(vault.vault_name, name, version),
            )
        if found is None:
            raise errors.with_akv(
                errors.NotFound(
                    Reason.KEY_VERSION_NOT_FOUND,
                    f"key {ref.key_name} has no version {ref.version}",
                    metadata={"vault": vault.vault_name, "key": ref.key_name, "version": ref.version or ""},
                ),
                "KeyNotFound",
            )
        return found

    def _usable(self, version: KeyVersion, operation: KeyOperation) -> None:
        """Enabled, inside nbf/exp where the operation protects new data, and allowed."""
        kid = self.key_id(version.vault_name, version.key_name, version.version)
        if not version.enabled:
            raise errors.with_akv(
                errors.FailedPrecondition(
                    Reason.KEY_DISABLED,
                    f"operation {operation.value} is not allowed on a disabled key version ({kid})",
                    metadata={"key_id": kid},
                ),
                "KeyDisabled",
            )
        if operation in (KeyOperation.WRAP_KEY, KeyOperation.ENCRYPT, KeyOperation.SIGN):
            now = self.clock.now()
            if version.not_before is not None and now < version.not_before:
                raise errors.with_akv(
                    errors.FailedPrecondition(
                        Reason.KEY_NOT_YET_VALID,
                        f"operation {operation.value} is not allowed before the key's nbf {_iso(version.not_before)}",
                        metadata={"key_id": kid, "not_before": _iso(version.not_before)},
                    ),
                    "Forbidden",
                )
            if version.expires is not None and now > version.expires:
                raise errors.with_akv(
                    errors.FailedPrecondition(
                        Reason.KEY_EXPIRED,
                        f"operation {operation.value} is not allowed on a key that expired {_iso(version.expires)}; "
                        "unwrap and decrypt still work",
                        metadata={"key_id": kid, "expires": _iso(version.expires)},
                    ),
                    "Forbidden",
                )
        if operation not in version.key_ops:
            raise errors.with_akv(
                errors.FailedPrecondition(
                    Reason.KEY_OPERATION_NOT_ALLOWED,
                    f"operation {operation.value} is not permitted on this key version ({kid})",
                    metadata={"key_id": kid},
                ),
                "BadParameter",
            )

    def _material(self, version: KeyVersion) -> RsaKeyMaterial:
        cache_key = (version.vault_name, version.key_name.lower(), version.version)
        material = self._materials.get(cache_key)
        if material is None:
            context = self.key_id(version.vault_name, version.key_name.lower(), version.version)
            material = load_private_der(self.sealer.open(version.sealed_private_key, context))
            self._materials[cache_key] = material
        return material

    # --- keys -------------------------------------------------------------------------

    async def create(
        self, caller: VerifiedToken, vault: str, name: str, *, size: int, attributes: KeyAttributes, jwk: Any = None
    ) -> KeyVersion:
        """Create a key, or a new version of an existing one (as the real service does).
        With `jwk`, import that RSA private key instead of generating one."""
        vault = vault_name("parent", vault)
        name = key_name("key_name", name)
        permission = KeyPermission.IMPORT if jwk is not None else KeyPermission.CREATE
        if jwk is None and size not in (2048, 3072, 4096):
            raise invalid_field("key.key_size", Reason.KEY_SIZE_INVALID, "RSA keys are 2048, 3072 or 4096 bits")
        self._check_attributes(attributes)
        found = await self.authorize(caller, vault, permission)
        existing = await self.store.get_key(vault, name)
        if existing is not None and existing.deleted:
            raise errors.with_akv(
                errors.AlreadyExists(
                    Reason.KEY_DELETED_BUT_RECOVERABLE,
                    f"key {name} is currently in a deleted but recoverable state, and its name cannot be reused; "
                    "in this state, the key can only be recovered or purged",
                    metadata={"vault": vault, "key": name},
                ),
                "ObjectIsDeletedButRecoverable",
            )
        if jwk is not None:
            try:
                material = import_rsa_jwk(jwk)
            except BadKeyMaterial as exc:
                raise invalid_field("key_material", Reason.KEY_MATERIAL_INVALID, str(exc)) from None
        else:
            material = await _in_thread(generate_rsa, size)
        version = await self._store_version(found, name, material, attributes, new_key=existing is None)
        return version

    def _check_attributes(self, attributes: KeyAttributes) -> None:
        if attributes.tags is not None:
            check_tags("key.tags", attributes.tags)
        if attributes.not_before and attributes.expires and attributes.expires <= attributes.not_before:
            raise invalid_field("key.expires", Reason.FIELD_INVALID, "must be after not_before")

    async def _store_version(
        self, vault: Vault, name: str, material: RsaKeyMaterial, attributes: KeyAttributes, *, new_key: bool
    ) -> KeyVersion:
        now = self.clock.now()
        version_id = uuid.UUID(bytes=self._random(16), version=4).hex
        kid = self.key_id(vault.vault_name, name, version_id)
        ops = attributes.key_ops if attributes.key_ops is not None else ALL_KEY_OPERATIONS
        version = KeyVersion(
            vault_name=vault.vault_name,
            key_name=name,
            version=version_id,
            key_size=material.size,
            key_ops=ops,
            enabled=True if attributes.enabled is None else attributes.enabled,
            not_before=attributes.not_before,
            expires=attributes.expires,
            tags=dict(attributes.tags or {}),
            create_time=now,
            update_time=now,
            public_jwk=json.dumps(material.public_jwk(kid, [o.value for o in ops]), sort_keys=True),
            sealed_private_key=self.sealer.seal(
                material.private_der(), self.key_id(vault.vault_name, name.lower(), version_id)
            ),
        )
        async with self.store.unit_of_work() as uow:
            if new_key:
                await uow.insert_key(Key(vault.vault_name, name, now))
            await uow.insert_version(version)
            event = EventType.KEY_CREATED if new_key else EventType.KEY_ROTATED
            await uow.append_event(event, now, vault_name=vault.vault_name, key_name=name, version=version_id)
        self._materials[(vault.vault_name, name.lower(), version_id)] = material
        await self.notifier.notify()
        return version

    async def rotate(self, caller: VerifiedToken, ref: KeyRef) -> KeyVersion:
        """A new version with the newest version's size and key operations."""
        vault = await self.authorize(caller, ref.vault_name, KeyPermission.ROTATE)
        latest = await self._version(vault, replace(ref, version=None))
        material = await _in_thread(generate_rsa, latest.key_size)
        attributes = KeyAttributes(key_ops=latest.key_ops, tags=latest.tags)
        return await self._store_version(vault, latest.key_name, material, attributes, new_key=False)

    async def rotate_as_service(self, vault: Vault, latest: KeyVersion, attributes: KeyAttributes) -> KeyVersion:
        """A new version made by the service itself (a rotation policy), not by a caller."""
        material = await _in_thread(generate_rsa, latest.key_size)
        return await self._store_version(vault, latest.key_name, material, attributes, new_key=False)

    async def get(self, caller: VerifiedToken, ref: KeyRef) -> KeyVersion:
        vault = await self.authorize(caller, ref.vault_name, KeyPermission.GET)
        return await self._version(vault, ref)

    async def list_keys(
        self, caller: VerifiedToken, vault: str, *, deleted: bool, after: str | None, limit: int
    ) -> list[tuple[Key, KeyVersion | None]]:
        found = await self.authorize(caller, vault_name("parent", vault), KeyPermission.LIST)
        keys = await self.store.list_keys(found.vault_name, deleted=deleted, after=after, limit=limit)
        return [(k, await self.store.latest_version(found.vault_name, k.key_name)) for k in keys]

    async def list_versions(
        self, caller: VerifiedToken, ref: KeyRef, *, after: str | None, limit: int
    ) -> list[KeyVersion]:
        vault = await self.authorize(caller, ref.vault_name, KeyPermission.LIST)
        await self.live_key(vault, ref.key_name)
        return await self.store.list_versions(vault.vault_name, ref.key_name, after=after, limit=limit)

    async def update(self, caller: VerifiedToken, ref: KeyRef, attributes: KeyAttributes) -> KeyVersion:
        self._check_attributes(attributes)
        vault = await self.authorize(caller, ref.vault_name, KeyPermission.UPDATE)
        version = await self._version(vault, ref)
        changed = replace(
            version,
            key_ops=version.key_ops if attributes.key_ops is None else attributes.key_ops,
            enabled=version.enabled if attributes.enabled is None else attributes.enabled,
            not_before=attributes.not_before if attributes.not_before is not None else version.not_before,
            expires=attributes.expires if attributes.expires is not None else version.expires,
            tags=dict(attributes.tags) if attributes.tags is not None else version.tags,
            update_time=self.clock.now(),
        )
        if changed.not_before and changed.expires and changed.expires <= changed.not_before:
            raise invalid_field("key.expires", Reason.FIELD_INVALID, "must be after not_before")
        async with self.store.unit_of_work() as uow:
            await uow.update_version(changed)
            await uow.append_event(EventType.KEY_UPDATED, changed.update_time,
                vault_name=vault.vault_name, key_name=version.key_name, version=version.version,
            )  # fmt: skip
        await self.notifier.notify()
        return changed

    # --- cryptographic operations -----------------------------------------------------

    async def wrap(self, caller: VerifiedToken, ref: KeyRef, algorithm: Padding, plaintext: bytes) -> CryptoResult:
        return await self._protect(caller, ref, algorithm, plaintext, KeyPermission.WRAP_KEY, KeyOperation.WRAP_KEY)

    async def encrypt(self, caller: VerifiedToken, ref: KeyRef, algorithm: Padding, plaintext: bytes) -> CryptoResult:
        return await self._protect(caller, ref, algorithm, plaintext, KeyPermission.ENCRYPT, KeyOperation.ENCRYPT)

    async def unwrap(self, caller: VerifiedToken, ref: KeyRef, algorithm: Padding, ciphertext: bytes) -> CryptoResult:
        return await self._recover(
            caller, ref, algorithm, ciphertext, KeyPermission.UNWRAP_KEY, KeyOperation.UNWRAP_KEY
        )

    async def decrypt(self, caller: VerifiedToken, ref: KeyRef, algorithm: Padding, ciphertext: bytes) -> CryptoResult:
        return await self._recover(caller, ref, algorithm, ciphertext, KeyPermission.DECRYPT, KeyOperation.DECRYPT)

    async def _protect(
        self, caller: VerifiedToken, ref: KeyRef, algorithm: Padding, plaintext: bytes,
        permission: KeyPermission, operation: KeyOperation,
    ) -> CryptoResult:  # fmt: skip
        if not plaintext:
            raise invalid_field("value", Reason.FIELD_REQUIRED, "is required")
        vault = await self.authorize(caller, ref.vault_name, permission)
        version = await self._version(vault, ref)
        self._usable(version, operation)
        limit = max_plaintext(version.key_size, algorithm)
        if len(plaintext) > limit:
            raise invalid_field(
                "value", Reason.PAYLOAD_TOO_LARGE, f"at most {limit} bytes for this key size with {algorithm.value}"
            )
        return CryptoResult(version, self._material(version).wrap(algorithm, plaintext), algorithm)

    async def _recover(
        self, caller: VerifiedToken, ref: KeyRef, algorithm: Padding, ciphertext: bytes,
        permission: KeyPermission, operation: KeyOperation,
    ) -> CryptoResult:  # fmt: skip
        if not ciphertext:
            raise invalid_field("value", Reason.FIELD_REQUIRED, "is required")
        if len(ciphertext) > MAX_PAYLOAD:
            raise invalid_field("value", Reason.PAYLOAD_TOO_LARGE, f"at most {MAX_PAYLOAD} bytes")
        vault = await self.authorize(caller, ref.vault_name, permission)
        version = await self._version(vault, ref)
        self._usable(version, operation)
        material = self._material(version)
        try:
            # RSA decryption releases the GIL: off the loop, so other calls go on meanwhile.
            plaintext = await _in_thread(material.unwrap, algorithm, ciphertext)
        except CannotDecrypt:
            raise errors.InvalidArgument(
                Reason.CANNOT_DECRYPT,
                "cannot decrypt: the value was not produced by this key version with this algorithm, or was altered",
            ) from None
        return CryptoResult(version, plaintext, algorithm)

    # --- soft-delete ------------------------------------------------------------------

    async def delete(self, caller: VerifiedToken, ref: KeyRef) -> Key:
        vault = await self.authorize(caller, ref.vault_name, KeyPermission.DELETE)
        key = await self.live_key(vault, ref.key_name)
        now = self.clock.now()
        async with self.store.unit_of_work() as uow:
            if vault.soft_delete:
                purge_at = now + timedelta(days=vault.retention_days)
                await uow.mark_key_deleted(vault.vault_name, key.key_name, now, purge_at)
                key = replace(key, delete_time=now, purge_time=purge_at)
                await uow.append_event(EventType.KEY_DELETED, now, vault_name=vault.vault_name, key_name=key.key_name)
            else:
                await uow.delete_key(vault.vault_name, key.key_name)
                key = replace(key, delete_time=now)
                await uow.append_event(EventType.KEY_PURGED, now, vault_name=vault.vault_name, key_name=key.key_name)
        if not vault.soft_delete:
            self._forget(vault.vault_name, key.key_name)
        await self.notifier.notify()
        return key

    async def _deleted_key(self, vault: Vault, name: str) -> Key:
        key = await self.store.get_key(vault.vault_name, name)
        if key is None or not key.deleted:
            raise errors.with_akv(
                errors.NotFound(
                    Reason.DELETED_KEY_NOT_FOUND,
                    f"there is no deleted key named {name} in vault {vault.vault_name}",
                    metadata={"vault": vault.vault_name, "key": name},
                ),
                "KeyNotFound",
            )
        return key

    async def get_deleted(self, caller: VerifiedToken, ref: KeyRef) -> tuple[Key, KeyVersion | None]:
        vault = await self.authorize(caller, ref.vault_name, KeyPermission.GET)
        key = await self._deleted_key(vault, ref.key_name)
        return key, await self.store.latest_version(vault.vault_name, key.key_name)

    async def recover(self, caller: VerifiedToken, ref: KeyRef) -> KeyVersion:
        vault = await self.authorize(caller, ref.vault_name, KeyPermission.RECOVER)
        key = await self._deleted_key(vault, ref.key_name)
        now = self.clock.now()
        async with self.store.unit_of_work() as uow:
            await uow.mark_key_deleted(vault.vault_name, key.key_name, None, None)
            await uow.append_event(EventType.KEY_RECOVERED, now, vault_name=vault.vault_name, key_name=key.key_name)
        await self.notifier.notify()
        return await self._version(vault, KeyRef(vault.vault_name, key.key_name))

    async def purge(self, caller: VerifiedToken, ref: KeyRef) -> None:
        vault = await self.authorize(caller, ref.vault_name, KeyPermission.PURGE)
        key = await self._deleted_key(vault, ref.key_name)
        now = self.clock.now()
        if vault.purge_protection and key.purge_time is not None and now < key.purge_time:
            raise errors.with_akv(
                errors.FailedPrecondition(
                    Reason.PURGE_PROTECTED,
                    f"purge protection is on for vault {vault.vault_name}: key {key.key_name} cannot be purged before "
                    f"{_iso(key.purge_time)}, when the service purges it by itself",
                    metadata={"vault": vault.vault_name, "key": key.key_name, "purge_time": _iso(key.purge_time)},
                ),
                "Forbidden",
            )
        await self._purge(vault.vault_name, key.key_name)

    async def _purge(self, vault: str, name: str) -> None:
        async with self.store.unit_of_work() as uow:
            await uow.delete_key(vault, name)
            await uow.append_event(EventType.KEY_PURGED, self.clock.now(), vault_name=vault, key_name=name)
        self._forget(vault, name)
        await self.notifier.notify()

    def _forget(self, vault: str, name: str | None = None) -> None:
        """Drop cached key material of one key, or of a whole (purged) vault."""
        for cache_key in [k for k in self._materials if k[0] == vault and (name is None or k[1] == name.lower())]:
            del self._materials[cache_key]

    def forget_vault(self, vault: str) -> None:
        self._forget(vault)

    async def purge_due(self) -> list[tuple[str, str]]:
        """Purge every deleted key whose purge date has come."""
        due = await self.store.keys_due_for_purge(self.clock.now())
        for vault, name in due:
            await self._purge(vault, name)
        return due


def _iso(when: datetime | None) -> str:
    return when.isoformat() if when else ""


async def _in_thread(fn: Any, *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)
