"""What keeps a service's view of the directory current: the directory's signing keys for a
token validator, the revocation feed that follows the directory's event stream, and the
role checker that remembers CheckAccess answers until an event can take them back."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

from cmk_trio.client.identity import IdentityClient
from cmk_trio.proto.identity.v1 import resources_pb2 as res
from cmk_trio.rpckit.clock import Clock, SystemClock
from cmk_trio.rpckit.errors import FailedPrecondition, NotFound, Unavailable
from cmk_trio.rpckit.events import EventFollower
from cmk_trio.rpckit.observe import Metrics
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.tokens import PublicSigningKey, TokenValidator


class GrpcSigningKeySource:
    """A validator's key source that asks the identity service over gRPC."""

    def __init__(self, client: IdentityClient) -> None:
        self._client = client

    async def fetch_signing_keys(self) -> list[PublicSigningKey]:
        return [PublicSigningKey(k.kid, k.algorithm, k.public_jwk) for k in await self._client.list_signing_keys()]


class RevocationFeed:
    """Keeps a token validator current from the directory's event stream: disabled and
    deleted principals are refused, a rotated signing key is fetched at once, and after
    missed events every cached token is dropped and the revocations are rebuilt."""

    def __init__(
        self,
        client: IdentityClient,
        validator: TokenValidator,
        *,
        metrics: Metrics | None = None,
        roles: RoleChecker | None = None,
    ) -> None:
        self._validator = validator
        self._metrics = metrics
        self._roles = roles
        self.follower: EventFollower[res.Event] = EventFollower(self._open, self._apply, self._reset)
        self._client = client
        self._task: asyncio.Task[None] | None = None

    async def _open(self, after: int) -> AsyncIterator[res.Event]:
        try:
            async for event in self._client.watch_events(after, on_heartbeat=self._validator.revocations.caught_up):
                yield event
        except FailedPrecondition as exc:
            if exc.reason is not Reason.EVENT_CURSOR_AHEAD:
                raise
            # The directory is younger than our cursor: start over as after a gap.
            yield res.Event(sequence=-1)

    async def _apply(self, event: res.Event) -> None:
        self._validator.revocations.heard()
        if self._roles is not None:
            await self._roles.on_event(event)
        if self._metrics is not None:
            self._metrics.lag("identity", time.time() - event.time.ToDatetime(tzinfo=UTC).timestamp())
        revocations = self._validator.revocations
        if event.type == res.PRINCIPAL_DISABLED:
            revocations.revoke(event.principal_id, "disabled")
        elif event.type == res.PRINCIPAL_DELETED:
            revocations.revoke(event.principal_id, "deleted")
        elif event.type == res.PRINCIPAL_ENABLED:
            revocations.restore(event.principal_id)
        elif event.type == res.SIGNING_KEY_ROTATED:
            await self._validator.refresh_keys(force=True)
        elif event.type == res.SIGNING_KEY_REVOKED:
            self._client.forget_tokens()  # this service's own tokens may be the revoked key's
            await self._validator.key_withdrawn(event.kid)

    async def _reset(self) -> None:
        """Events were missed (a revoked signing key among them, perhaps): forget everything
        they could have taken back, and fetch the signing keys anew."""
        if self._roles is not None:
            await self._roles.forget_all()
        self._validator.forget_verified()
        self._validator.revocations.clear()
        self._client.forget_tokens()
        with contextlib.suppress(Unavailable):  # the directory away: the next call fetches them
            await self._validator.refresh_keys(force=True)

    def start(self) -> None:
        self._task = asyncio.create_task(self.follower.run(), name="identity-revocation-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class RoleChecker:
    """Answers "may this principal do this on this scope?" through the identity service's
    CheckAccess, as a platform service (the key vault's and speech's control planes and the
    speech data plane).

    Yes-answers are remembered, so a busy caller costs one CheckAccess, not one per call
    (no-answers are not: a role just granted works at once). They are all forgotten on any
    directory event that can take one back (a role assignment made or removed, a principal
    disabled or deleted, a subscription transferred) and after missed events, and none is
    kept longer than `max_age`. A yes that was asked before such an event and answered after
    it is used for the call that asked, but not remembered.
    """

    INVALIDATING = frozenset(
        {res.ROLE_ASSIGNMENTS_CHANGED, res.PRINCIPAL_DISABLED, res.PRINCIPAL_DELETED, res.SUBSCRIPTION_TRANSFERRED}
    )

    def __init__(
        self,
        client: IdentityClient,
        clock: Clock | None = None,
        *,
        max_age: timedelta = timedelta(seconds=60),
        metrics: Metrics | None = None,
    ) -> None:
        self._client = client
        self._clock = clock or SystemClock()
        self._max_age = max_age
        self._metrics = metrics
        self._allowed: dict[tuple[str, str, int], datetime] = {}
        self._forgets = 0

    async def allowed(self, principal_id: str, scope: str, access: int) -> bool:
        key = (principal_id, scope.lower(), access)
        now = self._clock.now()
        since = self._allowed.get(key)
        fresh = since is not None and now - since < self._max_age
        if self._metrics is not None:
            self._metrics.hit("role_decisions", fresh)
        if fresh:
            return True
        forgets = self._forgets
        try:
            answer = (await self._client.check_access(scope, access, principal_id)).allowed
        except NotFound:
            answer = False  # a principal that no longer exists may do nothing
        if answer and forgets == self._forgets:
            self._allowed[key] = now
        else:
            self._allowed.pop(key, None)
        return answer

    async def on_event(self, event: res.Event) -> None:
        if event.type in self.INVALIDATING:
            await self.forget_all()

    async def forget_all(self) -> None:
        self._forgets += 1
        self._allowed.clear()
