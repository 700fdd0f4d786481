"""What keeps the speech service's caches safe: it follows the key vault's and identity's
event streams and drops exactly what an event invalidates. Missed events (a gap) or a
stream it cannot reach drop every cached data key at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC
from typing import Any, TypeVar

from cmk_trio.proto.identity.v1 import resources_pb2 as idres
from cmk_trio.proto.keyvault.v1 import resources_pb2 as kvres
from cmk_trio.rpckit.clock import Clock
from cmk_trio.rpckit.events import EventFollower
from cmk_trio.rpckit.observe import Metrics
from cmk_trio.speech.customer_keys import DataKeys, IdentityGateway
from cmk_trio.speech.encryption import Encryption
from cmk_trio.speech.model import SpeechResource
from cmk_trio.speech.storage import SpeechStore

E = TypeVar("E")

log = logging.getLogger(__name__)

KEY_EVENTS = {kvres.KEY_UPDATED, kvres.KEY_DELETED, kvres.KEY_RECOVERED, kvres.KEY_PURGED}
VAULT_EVENTS = {kvres.VAULT_DELETED, kvres.VAULT_RECOVERED, kvres.VAULT_PURGED}


class CacheGuard:
    """Applies key vault and identity events to the data key cache."""

    def __init__(
        self,
        store: SpeechStore,
        keys: DataKeys,
        identity: IdentityGateway,
        encryption: Encryption,
        dns_suffix: str,
        clock: Clock,
        metrics: Metrics | None = None,
    ) -> None:
        self._store = store
        self._keys = keys
        self._identity = identity
        self._encryption = encryption
        self._suffix = dns_suffix
        self.rewraps: list[str] = []
        self._clock = clock
        self._metrics = metrics
        self._current: dict[str, bool] = {}

    def follows(self, stream: str) -> None:
        """Track `stream` (not yet current: nothing cached from it until it has caught up)."""
        self._current[stream] = False

    def caught_up(self, stream: str) -> None:
        """The stream's heartbeat: it has reached the newest event and is alive."""
        self._current[stream] = True

    def broken(self, stream: str) -> None:
        self._current[stream] = False

    def streams_current(self) -> bool:
        """Whether every followed stream is current, so a revocation would reach the cache."""
        return all(self._current.values())

    def _lag(self, stream: str, event: idres.Event | kvres.Event) -> None:
        if self._metrics is not None:
            sent = event.time.ToDatetime(tzinfo=UTC)
            self._metrics.lag(stream, (self._clock.now() - sent).total_seconds())

    def _vault_uri(self, vault: str) -> str:
        return f"https://{vault}.{self._suffix}/"

    async def on_vault_event(self, event: kvres.Event) -> None:
        self._lag("keyvault", event)
        if event.type == kvres.ACCESS_POLICY_CHANGED:
            for resource in await self._store.resources_with_identity(event.object_id):
                self._keys.drop(resource)
        elif event.type in KEY_EVENTS or event.type == kvres.KEY_ROTATED:
            prefix = f"{self._vault_uri(event.vault_name)}keys/{event.key_name}/"
            for resource in await self._store.resources_using(key_prefix=prefix):
                if event.type == kvres.KEY_ROTATED:
                    await self._follow(resource)
                else:
                    self._keys.drop(resource)
        elif event.type in VAULT_EVENTS:
            for resource in await self._store.resources_using(key_prefix=self._vault_uri(event.vault_name)):
                self._keys.drop(resource)

    async def _follow(self, resource: SpeechResource) -> None:
        if not self._store.leadership().held:
            return  # of several replicas, the one holding the lease on background work rewraps
        try:
            if await self._encryption.rewrap_to_latest(resource) is not None:
                self.rewraps.append(resource.resource_id)
        except Exception:
            # The resource keeps its current version, which still works; the next rotation
            # event (or a restart) tries again.
            log.exception("cannot follow a key rotation", extra={"resource_id": resource.resource_id})

    async def on_identity_event(self, event: idres.Event) -> None:
        self._lag("identity", event)
        if event.type in (idres.PRINCIPAL_DISABLED, idres.PRINCIPAL_DELETED):
            self._identity.forget_token(event.principal_id)
            for resource in await self._store.resources_with_identity(event.principal_id):
                self._keys.drop(resource)
        elif event.type == idres.SIGNING_KEY_REVOKED:
            self._identity.forget_token()  # the managed identities' tokens may be the revoked key's
        elif event.type == idres.SUBSCRIPTION_TRANSFERRED:
            # The resources now belong to the new tenant; their identities stayed (and were
            # deleted) in the old one, which is what reads will now report.
            async with self._store.unit_of_work() as uow:
                await uow.set_subscription_tenant(event.subscription_id, event.new_tenant_id)
            for resource in await self._store.resources_in_subscription(event.subscription_id):
                self._keys.drop(resource)

    async def drop_everything(self) -> None:
        self._keys.drop_all()
        self._identity.forget_token()


def dropping_on_failure(
    open_stream: Callable[[int, Callable[[], None]], AsyncIterator[E]], guard: CacheGuard, stream: str
) -> Callable[[int], AsyncIterator[E]]:
    """A stream opener that drops every cached key when the stream breaks or the server ends
    it (while it is down, events may be missed), and keeps the guard told whether the stream
    is current: not from then until its next heartbeat (sent once a replay has caught up)."""
    guard.follows(stream)

    async def opened(after: int) -> AsyncIterator[E]:
        try:
            async for event in open_stream(after, lambda: guard.caught_up(stream)):
                yield event
        except Exception:
            guard.broken(stream)
            await guard.drop_everything()
            raise
        # Ended by the server (it is shutting down): until the stream is back, events may be
        # missed just as after a break, so what was cached goes too.
        guard.broken(stream)
        await guard.drop_everything()

    return opened


class Followers:
    """The two followers of the speech service, started and stopped together."""

    def __init__(self, *followers: EventFollower[Any]) -> None:  # (each of its own stream's event type)
        self.followers = followers
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(f.run(), name="speech-event-follower") for f in self.followers]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
