"""What every data-plane call of the key vault checks before it acts, and in which order.

Every call is checked in one order, each failure with its own reason: the vault exists;
the caller's token is of the vault's tenant; an access policy grants the permission; the
key exists and is not deleted; the version exists and is enabled; it is inside its
nbf/exp window (only for wrap, encrypt and sign: unwrap, decrypt and verify stay allowed
outside it, as in the real service, so that data is never lost to an expiry date); the
operation is among the version's key operations. Token validity and revocation are checked
before, by the shared validator.
"""

from __future__ import annotations

from datetime import datetime

from cmk_trio.keyvault import errors
from cmk_trio.keyvault.model import (
    Key,
    KeyOperation,
    KeyVersion,
    Permission,
    SecretPermission,
    Vault,
)
from cmk_trio.keyvault.storage import KeyVaultStore
from cmk_trio.platform import key_names
from cmk_trio.platform.key_names import KeyRef
from cmk_trio.rpckit.clock import Clock
from cmk_trio.rpckit.events import ChangeNotifier
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.storage import ReadCache
from cmk_trio.rpckit.tokens import VerifiedToken


class KeyChecks:
    """The checks every data-plane call makes, in the order above, on vaults, keys and
    versions read through a cache."""

    def __init__(self, store: KeyVaultStore, clock: Clock, notifier: ChangeNotifier, *, dns_suffix: str) -> None:
        self._store = store
        self._clock = clock
        self._dns_suffix = dns_suffix
        # Vaults, keys and versions read once per change: every write of this service, by
        # any replica, announces itself on the notifier (the store's change signal) as it
        # commits; audit appends do not, so they leave the cache alone.
        self._reads = ReadCache(notifier.cache_version)

    # --- authorization ----------------------------------------------------------------

    async def authorize(self, caller: VerifiedToken, vault: str, permission: Permission) -> Vault:
        """The vault, if the caller is of its tenant and an access policy grants `permission`
        (on keys, or on secrets).

        A soft-deleted vault is refused with VAULT_DELETED (it can be recovered) to a caller
        whom it would otherwise have allowed, and as not found to anyone else, so that only
        those who may use the vault learn that it still exists."""
        found = await self._reads.get(("vault", vault), lambda: self._store.get_vault(vault))
        if found is None or (found.deleted and not self._grants(found, caller, permission)):
            raise errors.vault_not_found(vault)
        if found.deleted:
            raise errors.NotFound(
                Reason.VAULT_DELETED,
                f"vault {vault} is deleted; it can be recovered until {isotime(found.purge_time)}",
                metadata={"vault": vault, "purge_time": isotime(found.purge_time)},
            )
        if caller.tenant_id != found.tenant_id:
            # Another tenant's vault is, to this caller, no vault at all: naming the tenant it
            # trusts (as Azure's 401 does) would tell a stranger that it exists, and whose it is.
            raise errors.vault_not_found(vault)
        if not self._grants(found, caller, permission):
            kind = "secrets" if isinstance(permission, SecretPermission) else "keys"
            raise errors.forbidden_by_policy(caller.object_id, permission.value, vault, kind)
        return found

    @staticmethod
    def _grants(vault: Vault, caller: VerifiedToken, permission: Permission) -> bool:
        policy = vault.policy_of(caller.object_id)
        return (
            policy is not None and policy.tenant_id == caller.tenant_id == vault.tenant_id and policy.grants(permission)
        )

    async def live_key(self, vault: Vault, name: str) -> Key:
        """The key of that name in the vault, refused if there is none or it is deleted."""
        key = await self._reads.get(
            ("key", vault.vault_name, name.lower()), lambda: self._store.get_key(vault.vault_name, name)
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
                    f"key {name} is deleted; it can be recovered until {isotime(key.purge_time)}",
                    metadata={"vault": vault.vault_name, "key": name, "purge_time": isotime(key.purge_time)},
                ),
                "KeyNotFound",
            )
        return key

    async def version(self, vault: Vault, ref: KeyRef) -> KeyVersion:
        """The version `ref` names (the newest, without one) of a live key."""
        await self.live_key(vault, ref.key_name)
        name, version = ref.key_name, ref.version
        if version is None:
            found = await self._reads.get(
                ("latest", vault.vault_name, name.lower()), lambda: self._store.latest_version(vault.vault_name, name)
            )
        else:
            found = await self._reads.get(
                ("version", vault.vault_name, name.lower(), version),
                lambda: self._store.get_version(vault.vault_name, name, version),
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

    def usable(self, version: KeyVersion, operation: KeyOperation) -> None:
        """Enabled, inside nbf/exp where the operation protects new data, and allowed."""
        kid = key_names.key_id(version.vault_name, version.key_name, version.version, self._dns_suffix)
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
            now = self._clock.now()
            if version.not_before is not None and now < version.not_before:
                raise errors.with_akv(
                    errors.FailedPrecondition(
                        Reason.KEY_NOT_YET_VALID,
                        f"operation {operation.value} is not allowed before the key's nbf "
                        f"{isotime(version.not_before)}",
                        metadata={"key_id": kid, "not_before": isotime(version.not_before)},
                    ),
                    "Forbidden",
                )
            if version.expires is not None and now > version.expires:
                raise errors.with_akv(
                    errors.FailedPrecondition(
                        Reason.KEY_EXPIRED,
                        f"operation {operation.value} is not allowed on a key that expired {isotime(version.expires)}; "
                        "unwrap and decrypt still work",
                        metadata={"key_id": kid, "expires": isotime(version.expires)},
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


def isotime(when: datetime | None) -> str:
    """ISO 8601, or empty for no time (as messages and metadata show it)."""
    return when.isoformat() if when else ""
