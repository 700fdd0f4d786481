"""What the key vault needs of its storage, as Protocols: the reads, and a unit of work for
the writes that must commit together. `open_store` opens the engine a location names: a
SQLite file's path, or a postgresql:// URL; both pass tests/keyvault/test_storage.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from pathlib import Path
from typing import Protocol

from cmk_trio.keyvault.model import (
    AccessPolicy,
    AuditRecord,
    Checkpoint,
    Event,
    EventType,
    Key,
    KeyVersion,
    Secret,
    SecretVersion,
    StoredRotationPolicy,
    Vault,
)
from cmk_trio.keyvault.storage.sql import SqlKeyVaultStore
from cmk_trio.rpckit.storage import Store


class KeyVaultUnitOfWork(Protocol):
    """The writes of one transaction: all of them commit, or none."""

    @property
    def inserted_versions(self) -> tuple[KeyVersion | SecretVersion, ...]:
        """The key and secret versions this unit of work has inserted so far (what a call's
        audit record names, though their ids are made inside the change)."""
        ...

    async def insert_vault(self, v: Vault) -> None:
        """A new vault with its access policies."""
        ...

    async def update_vault_flags(
        self, name: str, *, soft_delete: bool, purge_protection: bool, when: datetime
    ) -> None: ...

    async def update_vault_labels(self, name: str, *, sku: str, tags: dict[str, str], when: datetime) -> None:
        """Set a vault's pricing tier and tags."""
        ...

    async def delete_policies(self, vault_name: str) -> None:
        """Remove every access policy entry of a vault."""
        ...

    async def mark_vault_deleted(self, name: str, deleted: datetime | None, purge: datetime | None) -> None:
        """Soft-delete a vault (or, with None and None, recover it)."""
        ...

    async def delete_vault(self, name: str) -> None:
        """Remove a vault with its policies, keys and versions for good."""
        ...

    async def vault_id(self, name: str) -> str | None:
        """The id of the vault holding `name` as this transaction sees it, or of the vault of
        that name it purged (its purge's audit record names it)."""
        ...

    async def latest_version_id(self, vault_name: str, key_name: str) -> str | None:
        """The id of the key's newest version as this transaction sees it."""
        ...

    async def get_policy(self, vault_name: str, object_id: str) -> AccessPolicy | None:
        """The access policy entry of `object_id` as this transaction sees it (a change
        computed from it commits with no other change of the vault in between)."""
        ...

    async def count_policies(self, vault_name: str) -> int:
        """How many entries the vault's policy holds, as this transaction sees it."""
        ...

    async def put_policy(self, vault_name: str, policy: AccessPolicy) -> None:
        """Add or replace the access policy entry of `policy.object_id`."""
        ...

    async def delete_policy(self, vault_name: str, object_id: str) -> bool:
        """Remove an access policy entry; False if there was none."""
        ...

    async def insert_secret(self, secret: Secret) -> None: ...

    async def mark_secret_deleted(
        self, vault_name: str, secret_name: str, deleted: datetime | None, purge: datetime | None
    ) -> None:
        """Soft-delete a secret (or, with None and None, recover it)."""
        ...

    async def delete_secret(self, vault_name: str, secret_name: str) -> None:
        """Remove a secret and its versions for good."""
        ...

    async def insert_secret_version(self, v: SecretVersion) -> None: ...

    async def update_secret_version(self, v: SecretVersion) -> None:
        """Store a version's changeable attributes (content type, enabled, dates, tags)."""
        ...

    async def insert_key(self, key: Key) -> None: ...

    async def mark_key_deleted(
        self, vault_name: str, key_name: str, deleted: datetime | None, purge: datetime | None
    ) -> None:
        """Soft-delete a key (or, with None and None, recover it)."""
        ...

    async def delete_key(self, vault_name: str, key_name: str) -> None:
        """Remove a key and its versions for good."""
        ...

    async def insert_version(self, v: KeyVersion) -> None: ...

    async def update_version(self, v: KeyVersion) -> None:
        """Store a version's changeable attributes (operations, enabled, dates, tags)."""
        ...

    async def append_event(self, event_type: EventType, when: datetime, **fields: str) -> None:
        """Append an event with the next sequence number, without gaps."""
        ...

    async def put_rotation_policy(self, vault_name: str, key_name: str, policy_json: str, when: datetime) -> None: ...

    async def mark_rotation_notified(self, vault_name: str, key_name: str, version: str) -> None:
        """Remember that the near-expiry of `version` has been announced."""
        ...

    async def audit_head(self) -> tuple[int, bytes] | None:
        """The newest audit record's sequence number and MAC as this transaction sees it,
        or None for an empty log."""
        ...

    async def insert_audit_records(self, records: list[AuditRecord]) -> None: ...

    async def save_checkpoint(self, checkpoint: Checkpoint) -> None: ...

    async def insert_service_key(self, name: str, public_key: bytes, sealed_private_key: bytes) -> None: ...


class KeyVaultStore(Store, Protocol):
    """The key vault's reads, and `unit_of_work()` for its writes."""

    def unit_of_work(self) -> AbstractAsyncContextManager[KeyVaultUnitOfWork]: ...

    def add_commit_hooks(
        self,
        *,
        before: Callable[[KeyVaultUnitOfWork], Awaitable[None]] | None = None,
        after: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """`before` runs inside every unit of work about to commit (its writes commit with it),
        `after` once it has committed."""
        ...

    async def get_vault(self, name: str) -> Vault | None:
        """A vault by its (lower-case) name, live or soft-deleted, with its policies."""
        ...

    async def vault_id(self, name: str) -> str | None:
        """The id of the vault now holding `name` (live or soft-deleted), if any."""
        ...

    async def list_vaults(self, *, subscription_id: str, deleted: bool, after: str | None, limit: int) -> list[Vault]:
        """The live (or soft-deleted) vaults of a subscription, by name, after `after`."""
        ...

    async def vaults_due_for_purge(self, now: datetime) -> list[str]: ...

    async def count_policies(self, vault_name: str) -> int: ...

    async def get_key(self, vault_name: str, key_name: str) -> Key | None:
        """A key by name (names compare without case), live or soft-deleted."""
        ...

    async def list_keys(self, vault_name: str, *, deleted: bool, after: str | None, limit: int) -> list[Key]: ...

    async def keys_due_for_purge(self, now: datetime) -> list[tuple[str, str]]: ...

    async def get_version(self, vault_name: str, key_name: str, version: str) -> KeyVersion | None: ...

    async def latest_version(self, vault_name: str, key_name: str) -> KeyVersion | None:
        """The version created last (the one a versionless identifier means)."""
        ...

    async def list_versions(
        self, vault_name: str, key_name: str, *, after: str | None, limit: int
    ) -> list[KeyVersion]: ...

    async def get_secret(self, vault_name: str, secret_name: str) -> Secret | None:
        """A secret by name (names compare without case), live or soft-deleted."""
        ...

    async def list_secrets(self, vault_name: str, *, deleted: bool, after: str | None, limit: int) -> list[Secret]: ...

    async def secrets_due_for_purge(self, now: datetime) -> list[tuple[str, str]]: ...

    async def get_secret_version(self, vault_name: str, secret_name: str, version: str) -> SecretVersion | None: ...

    async def latest_secret_version(self, vault_name: str, secret_name: str) -> SecretVersion | None:
        """The version set last (the one a versionless identifier means)."""
        ...

    async def list_secret_versions(
        self, vault_name: str, secret_name: str, *, after: str | None, limit: int
    ) -> list[SecretVersion]: ...

    async def events_after(self, sequence: int, limit: int = 500) -> list[Event]:
        """Events with a sequence number above `sequence`, oldest first."""
        ...

    async def last_sequence(self) -> int: ...

    async def get_rotation_policy(self, vault_name: str, key_name: str) -> StoredRotationPolicy | None: ...

    async def live_rotation_policies(self) -> list[StoredRotationPolicy]:
        """The policies of keys that are neither deleted nor in a deleted vault."""
        ...

    async def audit_records(
        self,
        *,
        after: int = 0,
        limit: int = 100,
        vault: Vault | None = None,
        vault_name: str | None = None,
        key_name: str | None = None,
        caller_object_id: str | None = None,
        result: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[AuditRecord]:
        """Audit records after sequence `after`, oldest first, matching every filter given:
        `vault` keeps the records of that vault incarnation only, `vault_name` those of
        every vault that had the name."""
        ...

    async def audit_head(self) -> tuple[int, bytes] | None:
        """The newest audit record's sequence number and MAC, or None for an empty log."""
        ...

    async def latest_checkpoint(self) -> Checkpoint | None: ...

    async def get_service_key(self, name: str) -> tuple[bytes, bytes] | None:
        """A key of the service itself (the audit checkpoint key): public key, sealed private key."""
        ...

    async def holds_keys(self) -> bool:
        """Whether any key material is stored (sealed under the master key)."""
        ...


async def open_store(location: str | Path, *, must_exist: bool = False) -> KeyVaultStore:
    """The key vault's store at `location` (a SQLite file, or a postgresql:// URL), migrated
    to this program's schema (`must_exist`: refuse an empty PostgreSQL schema)."""
    return await SqlKeyVaultStore.open(location, must_exist=must_exist)
