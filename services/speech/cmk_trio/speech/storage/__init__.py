"""What the speech service needs of its storage, as Protocols: the reads, and a unit of work
for the writes that must commit together. Secrets reach the store only sealed and data keys
only wrapped. `open_store` opens the engine a location names: a SQLite file's path, or a
postgresql:// URL; both pass tests/speech/test_storage.py.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Protocol

from cmk_trio.rpckit.storage import Store
from cmk_trio.speech.model import Application, CmkApproval, PendingStep, SealedLuisKeys, SpeechResource
from cmk_trio.speech.storage.sql import SqlSpeechStore


class SpeechUnitOfWork(Protocol):
    """The writes of one transaction: all of them commit, or none."""

    async def insert_resource(self, r: SpeechResource) -> None: ...

    async def update_resource(self, r: SpeechResource) -> bool:
        """Write a resource's identity and encryption settings (its data key rewrapped), only
        if the stored row is still at `r.generation` (the one it was computed from), and add
        one to it; False, writing nothing, if another change came first."""
        ...

    async def set_subscription_tenant(self, subscription_id: str, tenant_id: str) -> None:
        """Record the tenant a subscription now belongs to, for every resource in it (a change:
        their generations move on)."""
        ...

    async def delete_resource(self, uid: str) -> None:
        """Remove a resource with its applications and LUIS keys."""
        ...

    async def put_approval(self, a: CmkApproval) -> None: ...

    async def insert_application(self, resource_uid: str, a: Application) -> None: ...

    async def update_application(self, resource_uid: str, a: Application, expected_version: int) -> bool:
        """Write a new version only if the stored one is still `expected_version` (the etag
        check, done so that of two concurrent updates exactly one wins); False if it was not."""
        ...

    async def delete_application(self, resource_uid: str, application_id: str, expected_version: int | None) -> bool:
        """Remove an application (only at `expected_version`, when given); False if none was."""
        ...

    async def put_luis_keys(self, resource_uid: str, keys: SealedLuisKeys) -> None: ...

    async def insert_step(self, step: PendingStep) -> int:
        """Record the intent of a change before its first remote call; returns its id."""
        ...

    async def delete_step(self, step_id: int, owner: str) -> bool:
        """Remove a step if `owner` still holds it; False if another replica claimed it."""
        ...

    async def claim_step(self, step_id: int, owner: str, claimant: str) -> bool:
        """Make `claimant` the step's owner if `owner` still is (a replica taking over the
        step of one that is gone; the owner, should it still run, then fails to finish it)."""
        ...


class SpeechStore(Store, Protocol):
    """The speech service's reads, and `unit_of_work()` for its writes."""

    def unit_of_work(self) -> AbstractAsyncContextManager[SpeechUnitOfWork]: ...

    async def resources_using(self, *, key_prefix: str) -> list[SpeechResource]:
        """Resources whose data key is wrapped by a key identifier starting with `key_prefix`
        (a vault URI, or a key URI without version)."""
        ...

    async def resources_with_identity(self, object_id: str) -> list[SpeechResource]: ...

    async def resources_in_subscription(self, subscription_id: str) -> list[SpeechResource]: ...

    async def get_resource(self, resource_id: str) -> SpeechResource | None:
        """A resource by id (ids compare without case)."""
        ...

    async def list_resources(self, subscription_id: str, *, after: str | None, limit: int) -> list[SpeechResource]: ...

    async def get_approval(self, subscription_id: str) -> CmkApproval | None: ...

    async def get_application(self, resource_uid: str, application_id: str) -> Application | None: ...

    async def list_applications(self, resource_uid: str, *, after: int, limit: int) -> list[tuple[int, Application]]:
        """Applications of a resource in creation order after position `after`, with their positions."""
        ...

    async def get_luis_keys(self, resource_uid: str) -> SealedLuisKeys | None: ...

    async def resource_count(self) -> int: ...

    async def microsoft_managed_not_wrapped_by(self, ring_version: str) -> list[str]:
        """Ids of the Microsoft-managed resources whose data key another ring version wraps."""
        ...

    async def resource_by_uid(self, uid: str) -> SpeechResource | None:
        """The resource of this uid, wherever it has moved."""
        ...

    async def pending_steps(self) -> list[PendingStep]:
        """The intents recorded and not yet finished or undone, oldest first."""
        ...

    async def microsoft_managed_per_ring_version(self) -> list[str]:
        """One Microsoft-managed resource id for each ring version that wraps a data key."""
        ...


async def open_store(location: str | Path, *, must_exist: bool = False) -> SpeechStore:
    """The speech service's store at `location` (a SQLite file, or a postgresql:// URL),
    migrated to this program's schema (`must_exist`: refuse an empty PostgreSQL schema)."""
    return await SqlSpeechStore.open(location, must_exist=must_exist)
