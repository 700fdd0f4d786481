"""Customer-managed keys: what the speech service asks of the key vault and of identity, as
protocols (the gRPC implementations live in `gateways`), and the data key source that
unwraps through them, caches, and says exactly why a customer key is inaccessible."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from cmk_trio.rpckit.clock import Clock
from cmk_trio.rpckit.datadir import StartupError
from cmk_trio.rpckit.observe import Metrics, time_left
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.token_cache import RENEWABLE
from cmk_trio.speech.envelope import CannotDecrypt, DataKey, MasterKeyRing
from cmk_trio.speech.errors import (
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    ServiceError,
    Unauthenticated,
    Unavailable,
)
from cmk_trio.speech.model import KeySource, SpeechResource

KEY_PERMISSIONS = ("get", "wrapKey", "unwrapKey")


class ClocksDisagree(Unavailable):
    """The vault refuses even a new token of the managed identity (expired on its clock):
    the services' clocks or signing keys disagree."""


ANSWER_RESERVE_S = 0.5
"""What a call keeps of its caller's deadline to carry its answer back: speech waits for an
unwrap at most the caller's time left less this, so that a vault that says nothing is
reported as CUSTOMER_KEY_VAULT_UNREACHABLE, not as the caller's DEADLINE_EXCEEDED. That
matters most for a client's retry, which comes with only what its first attempt left."""

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class VaultInfo:
    name: str
    tenant_id: str
    subscription_id: str
    location: str
    soft_delete: bool
    purge_protection: bool


@dataclass(frozen=True, slots=True)
class KeyInfo:
    key_id: str
    size: int
    enabled: bool
    operations: frozenset[str]


class VaultGateway(Protocol):
    """The key vault, called with a bearer token: the caller's (management) or the
    resource identity's (vault)."""

    async def get_vault(self, token: str, vault_name: str) -> VaultInfo: ...
    async def grant(self, token: str, vault_name: str, tenant_id: str, object_id: str) -> frozenset[str] | None:
        """Add get/wrapKey/unwrapKey; returns the permissions held before (None: no entry)."""
        ...

    async def restore(
        self, token: str, vault_name: str, tenant_id: str, object_id: str, before: frozenset[str] | None
    ) -> None: ...
    async def get_key(self, token: str, key: str) -> KeyInfo: ...
    async def wrap(self, token: str, key_id: str, plaintext: bytes) -> tuple[str, bytes]: ...
    async def unwrap(self, token: str, key_id: str, wrapped: bytes) -> bytes: ...


class IdentityGateway(Protocol):
    """The identity service, as the platform that owns the resources' managed identities."""

    async def create_identity(self, tenant_id: str, resource_id: str) -> str: ...
    async def delete_identity(self, tenant_id: str, object_id: str) -> None: ...
    async def identity_token(self, tenant_id: str, object_id: str) -> str: ...
    async def tenant_of(self, subscription_id: str) -> str | None: ...
    def forget_token(self, object_id: str | None = None) -> None: ...


# Which vault or identity refusal means which cause, for the resource's status and reads.
CAUSES: dict[Reason, Reason] = {
    Reason.FORBIDDEN_BY_POLICY: Reason.CUSTOMER_KEY_ACCESS_REVOKED,
    Reason.KEY_DISABLED: Reason.CUSTOMER_KEY_DISABLED,
    Reason.KEY_OPERATION_NOT_ALLOWED: Reason.CUSTOMER_KEY_DISABLED,
    Reason.KEY_DELETED: Reason.CUSTOMER_KEY_DELETED,
    Reason.KEY_NOT_FOUND: Reason.CUSTOMER_KEY_PURGED,
    Reason.KEY_VERSION_NOT_FOUND: Reason.CUSTOMER_KEY_PURGED,
    Reason.VAULT_NOT_FOUND: Reason.CUSTOMER_KEY_PURGED,
    Reason.VAULT_DELETED: Reason.CUSTOMER_KEY_VAULT_DELETED,
    Reason.TOKEN_TENANT_MISMATCH: Reason.CUSTOMER_KEY_TENANT_MISMATCH,
    Reason.TOKEN_REVOKED: Reason.CUSTOMER_KEY_IDENTITY_MISSING,
    Reason.PRINCIPAL_NOT_FOUND: Reason.CUSTOMER_KEY_IDENTITY_MISSING,
    Reason.PRINCIPAL_DISABLED: Reason.CUSTOMER_KEY_IDENTITY_MISSING,
    Reason.MANAGED_IDENTITY_NOT_OWNED: Reason.CUSTOMER_KEY_IDENTITY_MISSING,
}
MESSAGES = {
    Reason.CUSTOMER_KEY_ACCESS_REVOKED: "the resource's managed identity no longer has access to the key vault; "
    "grant it get, wrapKey and unwrapKey again to make the data readable",
    Reason.CUSTOMER_KEY_DISABLED: "the customer-managed key version is disabled; enable it to make the data readable",
    Reason.CUSTOMER_KEY_DELETED: "the customer-managed key is deleted; recover it to make the data readable",
    Reason.CUSTOMER_KEY_VAULT_DELETED: "the customer-managed key's vault is deleted; recover the vault to make the "
    "data readable",
    Reason.CUSTOMER_KEY_PURGED: "the customer-managed key was purged: the data encrypted with it is permanently "
    "unrecoverable",
    Reason.CUSTOMER_KEY_IDENTITY_MISSING: "the resource's managed identity is missing or disabled, so the key vault "
    "cannot be reached for the key; assign an identity and grant it access again",
    Reason.CUSTOMER_KEY_TENANT_MISMATCH: "the resource's subscription now belongs to another tenant than its managed "
    "identity and key vault; managed identities are not transferred between tenants",
}


def inaccessible(cause: Reason, resource: SpeechResource, detail: str = "") -> FailedPrecondition:
    return FailedPrecondition(
        cause,
        MESSAGES[cause],
        metadata={
            "resource_id": resource.resource_id,
            "key_id": resource.wrapping_key,
            **({"cause": detail} if detail else {}),
        },
    )


async def unwrap_as_identity(resource: SpeechResource, vault: VaultGateway, identity: IdentityGateway) -> bytes:
    """The vault's unwrap with a token of the resource's managed identity. A token the
    vault refuses for a cause a new token cures (expired on the vault's clock though not
    on ours, or signed by a key the directory withdrew) is dropped and the unwrap asked
    once more with a new one; if the vault refuses that too, the services' clocks or keys
    disagree: speech's dependency failing (ClocksDisagree), not the caller's credentials."""
    principal = resource.identity_principal_id
    for last in (False, True):
        token = await identity.identity_token(resource.identity_tenant_id, principal)
        try:
            return await vault.unwrap(token, resource.wrapping_key, resource.wrapped_data_key)
        except Unauthenticated as refused:
            if refused.reason not in RENEWABLE:
                raise
            identity.forget_token(principal)
            if last:
                raise ClocksDisagree(
                    Reason.DEPENDENCY_UNAVAILABLE,
                    f"the key vault refuses the managed identity's new token too ({refused.reason.value}): "
                    "the services' clocks or signing keys disagree",
                    metadata={"key_id": resource.wrapping_key},
                ) from None
    raise AssertionError("the loop returns or raises")


class DataKeys:
    """A resource's data key, unwrapped by the master key ring (Microsoft-managed) or by the
    customer's key through the vault (customer-managed), and kept in memory.

    A cached key is dropped when an event says so (`drop_*`), when events were missed
    (`drop_all`), and in any case after `max_age`, so a revocation that no event announces
    still takes effect.

    Concurrent misses for one resource share one unwrap. An unwrap that a drop overtook is
    answered to the calls that were waiting for it (they began before the revocation) but not
    kept, and a call that begins after the drop does not join it: it asks the vault again.
    Without this, an unwrap in flight while a policy is removed would put the key back in the
    cache after the event had dropped it, and the revocation would wait for `max_age`.
    """

    def __init__(
        self,
        ring: MasterKeyRing,
        clock: Clock,
        *,
        vault: VaultGateway | None,
        identity: IdentityGateway | None,
        max_age: timedelta = timedelta(minutes=5),
        metrics: Metrics | None = None,
        reload_ring: Callable[[], MasterKeyRing] | None = None,
    ) -> None:
        self._ring = ring
        self._reload_ring = reload_ring
        """Reads the ring file again: a replica that rotated it rewraps data keys to a version
        this process has not loaded yet (the others go on until they restart)."""
        self._clock = clock
        self._vault = vault
        self._identity = identity
        self._max_age = max_age
        self._cache: dict[str, tuple[tuple[bytes, int], DataKey, datetime]] = {}
        self._drops = 0
        """Bumped by every drop; an unwrap is kept only if none happened while it ran."""
        self._in_flight: dict[tuple[str, tuple[bytes, int], int, bool], asyncio.Task[DataKey]] = {}
        self.unwraps = 0
        self._metrics = metrics
        self.cache_allowed: Callable[[], bool] = lambda: True
        """Whether a customer-managed data key may be kept now: only while the event streams
        that would announce its revocation are current (the speech server sets it)."""

    async def data_key(self, resource: SpeechResource) -> DataKey:
        key = resource.uid
        cached = self._cache.get(key)
        now = self._clock.now()
        # Kept for the resource as it was when unwrapped: any change to it since (another
        # replica removed its identity, say) makes the key be unwrapped again.
        as_read = (resource.wrapped_data_key, resource.generation)
        fresh = cached is not None and cached[0] == as_read and now - cached[2] < self._max_age
        if self._metrics is not None:
            self._metrics.hit("data_keys", fresh)
        if cached is not None and fresh:
            return cached[1]
        flight = (key, as_read, self._drops, resource.key_source is KeySource.CUSTOMER)
        task = self._in_flight.get(flight)
        if task is None:
            task = asyncio.create_task(self._unwrap(resource), name=f"unwrap data key {key}")
            self._in_flight[flight] = task
            task.add_done_callback(lambda done: self._landed(flight, done, now))
        # Shielded: a caller that gives up does not cancel the unwrap the others wait for.
        left = time_left()
        if left is None or left <= ANSWER_RESERVE_S:
            return await asyncio.shield(task)
        try:
            return await asyncio.wait_for(asyncio.shield(task), left - ANSWER_RESERVE_S)
        except TimeoutError:
            if task.done():  # (it ended in the same instant: its own answer, whatever it is)
                return task.result()
            raise Unavailable(
                Reason.CUSTOMER_KEY_VAULT_UNREACHABLE,
                "the key vault holding the customer-managed key (or the directory, for its managed identity's "
                "token) did not answer within the call's deadline; retry shortly",
                metadata={"key_id": resource.wrapping_key},
                retry_now=False,
            ) from None

    def _landed(
        self, flight: tuple[str, tuple[bytes, int], int, bool], task: asyncio.Task[DataKey], started: datetime
    ) -> None:
        self._in_flight.pop(flight, None)
        if task.cancelled() or task.exception() is not None:  # (retrieved: never "never retrieved")
            return
        uid, wrapped, drops, customer = flight
        # Not kept if a drop overtook it, nor, for a customer key, while a stream that would
        # tell of its revocation is not current (it could not be dropped in time).
        if drops == self._drops and (not customer or self.cache_allowed()):
            self._cache[uid] = (wrapped, task.result(), started)

    async def _unwrap(self, resource: SpeechResource) -> DataKey:
        if resource.key_source is KeySource.MICROSOFT:
            if resource.wrapping_key not in self._ring.keys and self._reload_ring is not None:
                try:
                    self._ring.adopt(self._reload_ring())
                except (StartupError, OSError):
                    log.warning(
                        "the master key ring file cannot be read again", extra={"resource_id": resource.resource_id}
                    )
            try:
                return self._ring.unwrap(resource.wrapping_key, resource.wrapped_data_key, resource.uid)
            except CannotDecrypt:
                raise FailedPrecondition(
                    Reason.DATA_UNREADABLE, "the resource's data key does not unwrap with the service's master key ring"
                ) from None
        if self._vault is None or self._identity is None:
            raise FailedPrecondition(Reason.KEYVAULT_NOT_CONFIGURED, "this speech service has no key vault configured")
        if not resource.identity_principal_id:
            raise inaccessible(Reason.CUSTOMER_KEY_IDENTITY_MISSING, resource)
        tenant = await self._identity.tenant_of(resource.subscription_id)
        if tenant != resource.identity_tenant_id:
            raise inaccessible(Reason.CUSTOMER_KEY_TENANT_MISMATCH, resource)
        self.unwraps += 1
        try:
            plain = await unwrap_as_identity(resource, self._vault, self._identity)
        except ClocksDisagree:
            raise
        except Unavailable as away:
            raise Unavailable(
                Reason.CUSTOMER_KEY_VAULT_UNREACHABLE,
                "the key vault holding the customer-managed key cannot be reached; retry shortly",
                metadata={"key_id": resource.wrapping_key},
                retry_now=away.reason is not Reason.DEADLINE_EXCEEDED,  # (silent: the wait is spent)
            ) from None
        except (FailedPrecondition, NotFound, PermissionDenied, Unauthenticated) as exc:
            cause = CAUSES.get(exc.reason)
            if cause is None:
                raise
            if exc.reason in (Reason.TOKEN_REVOKED, Reason.TOKEN_TENANT_MISMATCH):
                self._identity.forget_token(resource.identity_principal_id)
            raise inaccessible(cause, resource, exc.reason.value) from None
        except ServiceError as exc:
            if exc.reason is Reason.CANNOT_DECRYPT:
                raise FailedPrecondition(
                    Reason.DATA_UNREADABLE, "the wrapped data key does not unwrap with the customer key"
                ) from None
            raise
        return DataKey(plain)

    # --- what the event streams drop ----------------------------------------------------

    def drop(self, resource: SpeechResource) -> None:
        self._drops += 1
        self._cache.pop(resource.uid, None)

    def drop_all(self) -> None:
        self._drops += 1
        self._cache.clear()

    def cached(self, resource: SpeechResource) -> bool:
        return resource.uid in self._cache
