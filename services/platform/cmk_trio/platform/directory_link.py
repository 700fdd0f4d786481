"""What a service that trusts the directory needs of it, wired once: the key vault and speech
both sign in to identity, validate callers' tokens against its signing keys, ask it for role
decisions, and follow its event stream for revocations."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

import grpc

from cmk_trio.client.channel import open_channel
from cmk_trio.client.identity import ClientCredentials, IdentityClient
from cmk_trio.platform.directory_feeds import GrpcSigningKeySource, RevocationFeed, RoleChecker
from cmk_trio.rpckit.clock import Clock
from cmk_trio.rpckit.config import TlsConfig
from cmk_trio.rpckit.observe import Metrics
from cmk_trio.rpckit.server import RunningServer
from cmk_trio.rpckit.tokens import RevocationSet, TokenValidator

log = logging.getLogger(__name__)

CATCH_UP_WAIT = 10.0
"""How long a starting service waits for its revocation feed to catch up with the directory."""


class DirectorySettings(Protocol):
    """What a service's configuration says about the directory (the key vault's and
    speech's configs both do)."""

    @property
    def identity_endpoint(self) -> str: ...

    @property
    def tls(self) -> TlsConfig: ...

    @property
    def credentials(self) -> ClientCredentials:
        """The service's own platform principal."""
        ...

    @property
    def issuer_base(self) -> str: ...

    @property
    def clock_skew(self) -> timedelta: ...

    @property
    def revocation_max_staleness(self) -> timedelta: ...


@dataclass
class DirectoryLink:
    """A service's connection to the directory and what it builds on it."""

    channel: grpc.aio.Channel
    identity: IdentityClient
    """Signed in as the service's own platform principal."""
    validator: TokenValidator
    """Validates callers' tokens with the directory's signing keys and revocations."""
    roles: RoleChecker
    """Role decisions (CheckAccess), remembered until a directory event can take them back."""
    feed: RevocationFeed
    """Keeps `validator` and `roles` current from the directory's event stream."""

    def start(self) -> None:
        """Start following the directory's events (once the service is serving)."""
        self.feed.start()

    async def serve_when_current(self, running: RunningServer, seconds: float = CATCH_UP_WAIT) -> None:
        """Start following the directory, report `running` ready only while its revocations
        are current, and wait up to `seconds` for the first catch-up (a directory that is
        away does not keep the service from starting: it serves, not ready, refusing tokens)."""
        self.start()
        running.track_readiness(self.current)
        if not await self.wait_current(seconds):
            log.warning("serving before catching up with the directory; tokens are refused until it is heard")
        await running.report_readiness()

    def current(self) -> bool:
        """Whether the revocations are known now: the feed has caught up with the directory
        and heard from it lately (the service's readiness)."""
        return self.validator.revocations.current

    async def wait_current(self, seconds: float) -> bool:
        """Wait up to `seconds` for the feed to catch up; whether it did. A service that
        starts while the directory is away serves anyway, refusing tokens (and not ready)
        until it catches up."""
        try:
            async with asyncio.timeout(seconds):
                await self.validator.revocations.known.wait()
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        await self.feed.stop()
        await self.channel.close()


def link_to_directory(
    settings: DirectorySettings,
    *,
    clock: Clock,
    metrics: Metrics,
    interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
) -> DirectoryLink:
    """Connect to the directory and build the validator, role checker and revocation feed on
    it (over mutual TLS when the service has it). Nothing is called until the service uses
    it or starts the feed."""
    channel = open_channel(
        settings.identity_endpoint, settings.tls.for_peers(), interceptors, retries=False, peer="identity"
    )
    identity = IdentityClient(channel, settings.credentials, clock=clock)
    validator = TokenValidator(
        key_source=GrpcSigningKeySource(identity),
        clock=clock,
        issuer_base=settings.issuer_base,
        skew=settings.clock_skew,
        revocations=RevocationSet(settings.revocation_max_staleness),
        metrics=metrics,
    )
    roles = RoleChecker(identity, clock, metrics=metrics)
    feed = RevocationFeed(identity, validator, metrics=metrics, roles=roles)
    return DirectoryLink(channel, identity, validator, roles, feed)
