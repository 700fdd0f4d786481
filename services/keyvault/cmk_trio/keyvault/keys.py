"""The data plane: keys, their versions, the cryptographic operations and soft-delete, each
checked by its KeyChecks (key_checks.py) in the one order that module describes, with the
private keys sealed, opened and kept parsed by its KeyMaterials (key_material.py)."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from dataclasses import replace
from datetime import timedelta

from cmk_trio.keyvault import errors
from cmk_trio.keyvault.callers import PURGER, Recorder
from cmk_trio.keyvault.crypto import (
    BadKeyMaterial,
    CannotDecrypt,
    Curve,
    KeyMaterial,
    Padding,
    RandomBytes,
    Sealer,
    Signature,
    generate_ec,
    generate_like,
    generate_rsa,
    import_jwk,
    verify_with_public,
)
from cmk_trio.keyvault.key_attributes import (
    MAX_PAYLOAD,
    CryptoResult,
    KeyAttributes,
    check_tags,
    max_plaintext,
)
from cmk_trio.keyvault.key_checks import KeyChecks, isotime
from cmk_trio.keyvault.key_material import KeyMaterials
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
from cmk_trio.platform import key_names
from cmk_trio.platform.key_names import KeyRef, key_name, parse_key_ref, vault_name
from cmk_trio.rpckit.clock import Clock
from cmk_trio.rpckit.errors import invalid_field
from cmk_trio.rpckit.events import ChangeNotifier
from cmk_trio.rpckit.json_input import JsonObject
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.tokens import VerifiedToken

EC_KEY_OPERATIONS = (KeyOperation.SIGN, KeyOperation.VERIFY)
"""What an EC key may do, and what it does when created without key_ops (as Key Vault)."""


def _not_for_key(version: KeyVersion, algorithm: str) -> errors.ServiceError:
    kind = f"{version.curve} EC" if version.curve else f"RSA-{version.key_size}"
    return errors.with_akv(
        errors.InvalidArgument(
            Reason.ALGORITHM_NOT_FOR_KEY,
            f"key and algorithm are not compatible: {algorithm} is not an algorithm of {kind} keys",
            metadata={"algorithm": algorithm, "key_type": version.key_type},
        ),
        "BadParameter",
    )


def _rsa_only(version: KeyVersion, algorithm: Padding) -> None:
    if version.key_type != "RSA":
        raise _not_for_key(version, algorithm.value)


def _suits(version: KeyVersion, algorithm: Signature) -> None:
    fits = algorithm.key_type == version.key_type and (
        algorithm.curve is None or algorithm.curve.value == version.curve
    )
    if not fits:
        raise _not_for_key(version, algorithm.value)


def _digest_of(algorithm: Signature, digest: bytes) -> None:
    try:
        algorithm.check_digest(digest)
    except ValueError as wrong:
        raise invalid_field("digest", Reason.FIELD_INVALID, str(wrong)) from None


class Overtaken(Exception):
    """A conditional change found that another had been made first."""


class Keys:
    """Keys, versions, cryptographic operations and soft-delete. Holds its parts: `checks`,
    what every call checks before it acts, and `materials`, the private keys."""

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
        self.notifier = notifier
        self.dns_suffix = dns_suffix
        self._random = random
        self.checks = KeyChecks(store, clock, notifier, dns_suffix=dns_suffix)
        self.materials = KeyMaterials(sealer, dns_suffix=dns_suffix)

    # --- identifiers ------------------------------------------------------------------

    def vault_uri(self, vault: str) -> str:
        return f"https://{vault}.{self.dns_suffix}/"

    def key_id(self, vault: str, key: str, version: str) -> str:
        return key_names.key_id(vault, key, version, self.dns_suffix)

    def parse(self, field: str, value: str) -> KeyRef:
        return parse_key_ref(field, value, self.dns_suffix)

    def forget_vault(self, vault: str) -> None:
        """Drop the parsed private keys of a purged vault."""
        self.materials.forget(vault)

    # --- keys -------------------------------------------------------------------------

    async def create(
        self,
        caller: VerifiedToken,
        vault: str,
        name: str,
        *,
        size: int,
        attributes: KeyAttributes,
        curve: Curve | None = None,
        jwk: JsonObject | None = None,
    ) -> KeyVersion:
        """Create a key, or a new version of an existing one (as the real service does): an
        RSA key of `size` bits, or with `curve` an EC key. With `jwk`, import that private key
        (RSA or EC) instead of generating one."""
        vault = vault_name("parent", vault)
        name = key_name("key_name", name)
        permission = KeyPermission.IMPORT if jwk is not None else KeyPermission.CREATE
        if jwk is None and curve is None and size not in (2048, 3072, 4096):
            raise invalid_field("key.key_size", Reason.KEY_SIZE_INVALID, "RSA keys are 2048, 3072 or 4096 bits")
        self._check_attributes(attributes)
        found = await self.checks.authorize(caller, vault, permission)
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
        material: KeyMaterial
        if jwk is not None:
            try:
                material = import_jwk(jwk)
            except BadKeyMaterial as exc:
                raise invalid_field("key_material", Reason.KEY_MATERIAL_INVALID, str(exc)) from None
        elif curve is not None:
            material = await asyncio.to_thread(generate_ec, curve)
        else:
            material = await asyncio.to_thread(generate_rsa, size)
        self._check_operations(material.key_type, attributes)
        version = await self._store_version(found, name, material, attributes, new_key=existing is None)
        return version

    @staticmethod
    def _check_operations(key_type: str, attributes: KeyAttributes) -> None:
        """An EC key signs and verifies; it is not asked to encrypt or wrap."""
        if key_type == "EC" and attributes.key_ops is not None:
            if any(op not in EC_KEY_OPERATIONS for op in attributes.key_ops):
                raise invalid_field("key.key_operations", Reason.KEY_OPERATION_NOT_FOR_KEY,
                                    "an EC key's operations are sign and verify")  # fmt: skip

    def _check_attributes(self, attributes: KeyAttributes) -> None:
        if attributes.tags is not None:
            check_tags("key.tags", attributes.tags)
        if attributes.not_before and attributes.expires and attributes.expires <= attributes.not_before:
            raise invalid_field("key.expires", Reason.FIELD_INVALID, "must be after not_before")

    async def _store_version(
        self,
        vault: Vault,
        name: str,
        material: KeyMaterial,
        attributes: KeyAttributes,
        *,
        new_key: bool,
        replaces: str | None = None,
    ) -> KeyVersion:
        """Store a new version (of a new key); with `replaces`, only if that version is still
        the newest when the change commits (else Overtaken: another replica rotated first)."""
        now = self.clock.now()
        version_id = uuid.UUID(bytes=self._random(16), version=4).hex
        kid = self.key_id(vault.vault_name, name, version_id)
        if attributes.key_ops is not None:
            ops = attributes.key_ops
        else:
            ops = EC_KEY_OPERATIONS if material.key_type == "EC" else ALL_KEY_OPERATIONS
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
            sealed_private_key=self.materials.seal(vault.vault_name, name, version_id, material),
            curve=material.curve.value if material.curve is not None else "",
        )
        async with self.store.unit_of_work() as uow:
            if replaces is not None and await uow.latest_version_id(vault.vault_name, name) != replaces:
                raise Overtaken
            if new_key:
                await uow.insert_key(Key(vault.vault_name, name, now))
            await uow.insert_version(version)
            event = EventType.KEY_CREATED if new_key else EventType.KEY_ROTATED
            await uow.append_event(event, now, vault_name=vault.vault_name, key_name=name, version=version_id)
        self.materials.keep(vault.vault_name, name, version_id, material)
        await self.notifier.notify()
        return version

    async def rotate(self, caller: VerifiedToken, ref: KeyRef) -> KeyVersion:
        """A new version with the newest version's size and key operations."""
        vault = await self.checks.authorize(caller, ref.vault_name, KeyPermission.ROTATE)
        latest = await self.checks.version(vault, replace(ref, version=None))
        material = await asyncio.to_thread(generate_like, latest.key_type, latest.key_size)
        attributes = KeyAttributes(key_ops=latest.key_ops, tags=latest.tags)
        return await self._store_version(vault, latest.key_name, material, attributes, new_key=False)

    async def rotate_as_service(self, vault: Vault, latest: KeyVersion, attributes: KeyAttributes) -> KeyVersion | None:
        """A new version made by the service itself (a rotation policy), not by a caller; None
        if `latest` is no longer the newest (a replica that held the lease before rotated)."""
        material = await asyncio.to_thread(generate_like, latest.key_type, latest.key_size)
        try:
            return await self._store_version(
                vault, latest.key_name, material, attributes, new_key=False, replaces=latest.version
            )
        except Overtaken:
            return None

    async def get(self, caller: VerifiedToken, ref: KeyRef) -> KeyVersion:
        vault = await self.checks.authorize(caller, ref.vault_name, KeyPermission.GET)
        return await self.checks.version(vault, ref)

    async def list_keys(
        self, caller: VerifiedToken, vault: str, *, deleted: bool, after: str | None, limit: int
    ) -> list[tuple[Key, KeyVersion | None]]:
        found = await self.checks.authorize(caller, vault_name("parent", vault), KeyPermission.LIST)
        keys = await self.store.list_keys(found.vault_name, deleted=deleted, after=after, limit=limit)
        return [(k, await self.store.latest_version(found.vault_name, k.key_name)) for k in keys]

    async def list_versions(
        self, caller: VerifiedToken, ref: KeyRef, *, after: str | None, limit: int
    ) -> list[KeyVersion]:
        vault = await self.checks.authorize(caller, ref.vault_name, KeyPermission.LIST)
        await self.checks.live_key(vault, ref.key_name)
        return await self.store.list_versions(vault.vault_name, ref.key_name, after=after, limit=limit)

    async def update(self, caller: VerifiedToken, ref: KeyRef, attributes: KeyAttributes) -> KeyVersion:
        self._check_attributes(attributes)
        vault = await self.checks.authorize(caller, ref.vault_name, KeyPermission.UPDATE)
        version = await self.checks.version(vault, ref)
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
        self._check_operations(version.key_type, attributes)
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
            raise invalid_field("plaintext", Reason.FIELD_REQUIRED, "is required")
        vault = await self.checks.authorize(caller, ref.vault_name, permission)
        version = await self.checks.version(vault, ref)
        _rsa_only(version, algorithm)
        self.checks.usable(version, operation)
        limit = max_plaintext(version.key_size, algorithm)
        if len(plaintext) > limit:
            raise invalid_field(
                "plaintext", Reason.PAYLOAD_TOO_LARGE, f"at most {limit} bytes for this key size with {algorithm.value}"
            )
        return CryptoResult(version, (await self.materials.open(version)).wrap(algorithm, plaintext), algorithm)

    async def _recover(
        self, caller: VerifiedToken, ref: KeyRef, algorithm: Padding, ciphertext: bytes,
        permission: KeyPermission, operation: KeyOperation,
    ) -> CryptoResult:  # fmt: skip
        if not ciphertext:
            raise invalid_field("ciphertext", Reason.FIELD_REQUIRED, "is required")
        if len(ciphertext) > MAX_PAYLOAD:
            raise invalid_field("ciphertext", Reason.PAYLOAD_TOO_LARGE, f"at most {MAX_PAYLOAD} bytes")
        vault = await self.checks.authorize(caller, ref.vault_name, permission)
        version = await self.checks.version(vault, ref)
        _rsa_only(version, algorithm)
        self.checks.usable(version, operation)
        material = await self.materials.open(version)
        try:
            # RSA decryption releases the GIL: off the loop, so other calls go on meanwhile.
            plaintext = await asyncio.to_thread(material.unwrap, algorithm, ciphertext)
        except CannotDecrypt:
            raise errors.InvalidArgument(
                Reason.CANNOT_DECRYPT,
                "cannot decrypt: the value was not produced by this key version with this algorithm, or was altered",
            ) from None
        return CryptoResult(version, plaintext, algorithm)

    async def sign(self, caller: VerifiedToken, ref: KeyRef, algorithm: Signature, digest: bytes) -> CryptoResult:
        """The signature of a digest the caller computed (RS*, PS* with RSA keys; ES* with the
        EC curve that goes with each)."""
        vault = await self.checks.authorize(caller, ref.vault_name, KeyPermission.SIGN)
        version = await self.checks.version(vault, ref)
        _suits(version, algorithm)
        self.checks.usable(version, KeyOperation.SIGN)
        _digest_of(algorithm, digest)
        material = await self.materials.open(version)
        # Signing with a private key releases the GIL: off the loop, as unwrap is.
        signature = await asyncio.to_thread(material.sign, algorithm, digest)
        return CryptoResult(version, signature, algorithm)

    async def verify(
        self, caller: VerifiedToken, ref: KeyRef, algorithm: Signature, digest: bytes, signature: bytes
    ) -> tuple[KeyVersion, bool]:
        """Whether a signature is the key version's signature of the digest: a verdict, not a
        refusal, for a signature that does not match. Verifying needs only the public key."""
        if not signature:
            raise invalid_field("signature", Reason.FIELD_REQUIRED, "is required")
        if len(signature) > MAX_PAYLOAD:
            raise invalid_field("signature", Reason.PAYLOAD_TOO_LARGE, f"at most {MAX_PAYLOAD} bytes")
        vault = await self.checks.authorize(caller, ref.vault_name, KeyPermission.VERIFY)
        version = await self.checks.version(vault, ref)
        _suits(version, algorithm)
        self.checks.usable(version, KeyOperation.VERIFY)
        _digest_of(algorithm, digest)
        valid = await asyncio.to_thread(verify_with_public, version.public_jwk, algorithm, digest, signature)
        return version, valid

    # --- soft-delete ------------------------------------------------------------------

    async def delete(self, caller: VerifiedToken, ref: KeyRef) -> Key:
        vault = await self.checks.authorize(caller, ref.vault_name, KeyPermission.DELETE)
        key = await self.checks.live_key(vault, ref.key_name)
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
            self.materials.forget(vault.vault_name, key.key_name)
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
        vault = await self.checks.authorize(caller, ref.vault_name, KeyPermission.GET)
        key = await self._deleted_key(vault, ref.key_name)
        return key, await self.store.latest_version(vault.vault_name, key.key_name)

    async def recover(self, caller: VerifiedToken, ref: KeyRef) -> KeyVersion:
        vault = await self.checks.authorize(caller, ref.vault_name, KeyPermission.RECOVER)
        key = await self._deleted_key(vault, ref.key_name)
        now = self.clock.now()
        async with self.store.unit_of_work() as uow:
            await uow.mark_key_deleted(vault.vault_name, key.key_name, None, None)
            await uow.append_event(EventType.KEY_RECOVERED, now, vault_name=vault.vault_name, key_name=key.key_name)
        await self.notifier.notify()
        return await self.checks.version(vault, KeyRef(vault.vault_name, key.key_name))

    async def purge(self, caller: VerifiedToken, ref: KeyRef) -> None:
        vault = await self.checks.authorize(caller, ref.vault_name, KeyPermission.PURGE)
        key = await self._deleted_key(vault, ref.key_name)
        now = self.clock.now()
        if vault.purge_protection and key.purge_time is not None and now < key.purge_time:
            raise errors.with_akv(
                errors.FailedPrecondition(
                    Reason.PURGE_PROTECTED,
                    f"purge protection is on for vault {vault.vault_name}: key {key.key_name} cannot be purged before "
                    f"{isotime(key.purge_time)}, when the service purges it by itself",
                    metadata={
                        "vault": vault.vault_name,
                        "key": key.key_name,
                        "purge_time": isotime(key.purge_time),
                    },
                ),
                "Forbidden",
            )
        await self._purge(vault.vault_name, key.key_name)

    async def _purge(self, vault: str, name: str) -> None:
        async with self.store.unit_of_work() as uow:
            await uow.delete_key(vault, name)
            await uow.append_event(EventType.KEY_PURGED, self.clock.now(), vault_name=vault, key_name=name)
        self.materials.forget(vault, name)
        await self.notifier.notify()

    async def purge_due(self, recorder: Recorder) -> list[tuple[str, str]]:
        """Purge every deleted key whose purge date has come, each purge audited with it."""
        due = await self.store.keys_due_for_purge(self.clock.now())
        for vault, name in due:
            async with recorder.system_call("PurgeDeletedKey", request_id=PURGER, vault_name=vault, key_name=name):
                await self._purge(vault, name)
        return due
