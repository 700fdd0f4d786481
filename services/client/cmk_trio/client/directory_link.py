"""What a service that trusts the directory needs of it, wired once: the key vault and speech
both sign in to identity, validate callers' tokens against its signing keys, ask it for role
decisions, and follow its event stream for revocations."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import grpc

from cmk_trio.client.channel import open_channel
from cmk_trio.client.identity import (
    ClientCredentials,
    GrpcSigningKeySource,
    IdentityClient,
    RevocationFeed,
    RoleChecker,
)
from cmk_trio.rpckit.channels import ChannelTls
from cmk_trio.rpckit.clock import Clock
from cmk_trio.rpckit.observe import Metrics
from cmk_trio.rpckit.tokens import RevocationSet, TokenValidator


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

    async def stop(self) -> None:
        await self.feed.stop()
        await self.channel.close()


def link_to_directory(
    endpoint: str,
    tls: ChannelTls | None,
    credentials: ClientCredentials,
    *,
    clock: Clock,
    metrics: Metrics,
    issuer_base: str,
    skew: timedelta,
    revocation_max_staleness: timedelta,
) -> DirectoryLink:
    """Connect to the directory at `endpoint` and build the validator, role checker and
    revocation feed on it. Nothing is called until the service uses it or starts the feed."""
    channel = open_channel(endpoint, tls)
    identity = IdentityClient(channel, credentials, clock=clock)
    validator = TokenValidator(
        key_source=GrpcSigningKeySource(identity),
        clock=clock,
        issuer_base=issuer_base,
        skew=skew,
        revocations=RevocationSet(revocation_max_staleness),
        metrics=metrics,
    )
    roles = RoleChecker(identity, clock, metrics=metrics)
    feed = RevocationFeed(identity, validator, metrics=metrics, roles=roles)
    return DirectoryLink(channel, identity, validator, roles, feed)
