"""Token issuance and the signing keys behind it.

Tokens are RS256 JWTs with Entra's claims (iss, aud, sub, oid, tid, appid, iat, nbf, exp,
jti, and xms_mirid for a managed identity). One signing key is active; after a rotation the
previous key is still published until the last token it signed has expired, so validators
never refuse a live token because of a rotation.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cmk_trio.identity import errors
from cmk_trio.identity.crypto import (
    MasterKey,
    RandomBytes,
    TokenSigner,
    VerifiedSecretMemo,
    new_signing_key,
    random_token_id,
    secret_id_of,
)
from cmk_trio.identity.directory import Directory
from cmk_trio.identity.model import ClientSecret, EventType, IssuedToken, Principal, PrincipalKind, SigningKey
from cmk_trio.identity.sign_ins import SecretChecks
from cmk_trio.identity.storage import IdentityStore
from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.clock import Clock, to_epoch
from cmk_trio.rpckit.errors import invalid_field
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.tokens import OPERATOR_ROLE, PLATFORM_ROLE, PublicSigningKey, issuer_for
from cmk_trio.rpckit.validation import require_uuid

MAX_SECRET_LENGTH = 256

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TokenPolicy:
    """What tokens look like: issuer base, the audiences served, lifetime and clock skew."""

    issuer_base: str
    audiences: frozenset[str]
    lifetime: timedelta
    skew: timedelta


FOLLOW_INTERVAL = 5.0
"""Seconds between looks at the signing keys when no change is announced (the backstop)."""


class SigningKeyRing:
    """The signing keys: the active one parsed once and kept in memory, the rest published."""

    def __init__(
        self,
        store: IdentityStore,
        clock: Clock,
        master_key: MasterKey,
        policy: TokenPolicy,
        *,
        notify: Directory,
        random: RandomBytes = os.urandom,
    ) -> None:
        self._store = store
        self._clock = clock
        self._master = master_key
        self._policy = policy
        self._directory = notify
        self._random = random
        self._signer: TokenSigner | None = None
        self._lock = asyncio.Lock()
        self.on_revoked: list[Callable[[str], Awaitable[None]]] = []
        """Told when a key is withdrawn (the service's own validator drops it at once)."""
        self.on_rotated: list[Callable[[], Awaitable[None]]] = []
        """Told when a new key signs (the service's own validator fetches it at once, instead
        of refusing the new key's tokens until its next fetch)."""

    async def ensure_active_key(self) -> None:
        """Make the first key if there is none (first start)."""
        if await self._store.count_signing_keys() == 0:
            await self.rotate(announce=False)

    async def signer(self) -> TokenSigner:
        if self._signer is None:
            async with self._lock:
                if self._signer is None:
                    keys = await self._store.signing_keys(now=self._clock.now())
                    active = next((k for k in keys if k.active), None)
                    if active is None:
                        raise RuntimeError("no active signing key; the service did not bootstrap")
                    pem = self._master.open(active.sealed_private_key, active.kid.encode())
                    self._signer = TokenSigner(active.kid, pem)
        return self._signer

    async def rotate(self, *, announce: bool = True) -> SigningKey:
        """Make a new key active; the old one is published until its tokens have expired."""
        fresh = await asyncio.to_thread(new_signing_key, self._random)
        now = self._clock.now()
        key = SigningKey(
            kid=fresh.kid,
            public_jwk=fresh.public_jwk,
            active=True,
            create_time=now,
            retire_time=None,
            sealed_private_key=self._master.seal(fresh.private_pem, fresh.kid.encode(), self._random),
        )
        async with self._lock:
            async with self._store.unit_of_work() as uow:
                await uow.delete_retired_keys(now)
                await uow.retire_active_keys(now + self._policy.lifetime + self._policy.skew)
                await uow.insert_signing_key(key)
                if announce:
                    await uow.append_event(EventType.SIGNING_KEY_ROTATED, now, kid=key.kid)
            self._signer = TokenSigner(key.kid, fresh.private_pem)
        if announce:
            await self._directory.notifier.notify()
        for listener in self.on_rotated:
            await listener()
        return key

    async def revoke(self, kid: str) -> SigningKey:
        """Withdraw a key at once (a suspected leak): unpublished, announced, and if it was
        the active key, a new one signs from now on. Returns the active key."""
        keys = await self.published()
        revoked = next((k for k in keys if k.kid == kid), None)
        if revoked is None:
            raise errors.not_found(Reason.SIGNING_KEY_NOT_FOUND, "signing key", kid)
        active = await self.rotate() if revoked.active else next(k for k in keys if k.active)
        now = self._clock.now()
        async with self._lock:
            async with self._store.unit_of_work() as uow:
                await uow.delete_signing_key(kid)
                await uow.append_event(EventType.SIGNING_KEY_REVOKED, now, kid=kid)
        await self._directory.notifier.notify()
        for listener in self.on_revoked:
            await listener(kid)
        return active

    async def published(self) -> list[SigningKey]:
        return await self._store.signing_keys(now=self._clock.now())

    async def follow(self) -> None:
        """Keep up with what the other replicas do to the keys, until cancelled: after each
        change to the directory, a key another replica made active signs here too, and one
        it revoked is refused here at once (the listeners are told as for our own)."""
        known: set[str] | None = None  # (the keys published when this began: read first)
        seen = self._store.changes.version
        failing = False
        while True:
            try:
                known = await self._sync(known)
                failing = False
            except Exception:
                if not failing:  # once per outage, not at every look while it lasts
                    log.exception("reading the signing keys failed; trying again at the next change")
                failing = True
            seen = await self._store.changes.wait(seen, FOLLOW_INTERVAL)

    async def _sync(self, known: set[str] | None) -> set[str]:
        keys = await self.published()
        if known is None:
            return {k.kid for k in keys}
        active = next((k for k in keys if k.active), None)
        async with self._lock:
            rotated = active is not None and self._signer is not None and self._signer.kid != active.kid
            if rotated:
                self._signer = None  # the new key is parsed at its first token
        kids = {k.kid for k in keys}
        for kid in sorted(known - kids):
            for withdrawn in self.on_revoked:
                await withdrawn(kid)
        if rotated:
            for signs_now in self.on_rotated:
                await signs_now()
        return kids

    async def public_keys(self) -> list[PublicSigningKey]:
        """The published keys in the form validators take (for the service's own validator)."""
        return [PublicSigningKey(k.kid, "RS256", k.public_jwk) for k in await self.published()]

    async def fetch_signing_keys(self) -> list[PublicSigningKey]:
        """`SigningKeySource` for the identity service's own validator: no network hop."""
        return await self.public_keys()


class TokenIssuer:
    """Issues tokens for the client-credentials grant and for managed identities."""

    def __init__(
        self,
        store: IdentityStore,
        directory: Directory,
        keys: SigningKeyRing,
        clock: Clock,
        policy: TokenPolicy,
        *,
        checks: SecretChecks,
        memo: VerifiedSecretMemo,
        random: RandomBytes = os.urandom,
    ) -> None:
        self._store = store
        self._directory = directory
        self._keys = keys
        self._clock = clock
        self._policy = policy
        self._checks = checks
        self._memo = memo
        self._random = random
        self._warned: set[str] = set()

    def _audience(self, audience: str) -> str:
        if not audience:
            raise invalid_field("audience", Reason.FIELD_REQUIRED, "is required")
        audience = audiences.canonical(audience)
        if audience not in self._policy.audiences:
            raise errors.InvalidArgument(
                Reason.AUDIENCE_UNKNOWN,
                f"no service accepts tokens for this audience; use one of: {', '.join(sorted(self._policy.audiences))}",
                metadata={"known_audiences": ",".join(sorted(self._policy.audiences))},
            )
        return audience

    async def client_credentials(self, tenant_id: str, client_id: str, secret: str, audience: str) -> IssuedToken:
        """The OAuth 2.0 client-credentials grant for a user or service principal."""
        tenant_id = require_uuid("tenant_id", tenant_id)
        client_id = require_uuid("client_id", client_id)
        if not secret:
            raise invalid_field("client_secret", Reason.FIELD_REQUIRED, "is required")
        if len(secret) > MAX_SECRET_LENGTH:
            raise invalid_field(
                "client_secret", Reason.FIELD_TOO_LONG, f"must be at most {MAX_SECRET_LENGTH} characters"
            )
        audience = self._audience(audience)
        if await self._store.get_tenant(tenant_id) is None:
            raise errors.not_found(Reason.TENANT_NOT_FOUND, "tenant", tenant_id)
        principal = await self._store.principal_by_client_id(tenant_id, client_id)
        client = (tenant_id, client_id)
        if principal is None or principal.kind is PrincipalKind.MANAGED_IDENTITY:
            # Checked (a dummy hash), counted and paused like a real client's failures: neither
            # the time taken nor the pause may tell which client ids exist.
            await self._checks.check(client, secret, None)
            raise errors.invalid_client()
        record = await self._secret_named_by(principal, secret)
        if record is None or not self._memo.known(record.secret_id, secret):
            matched = await self._checks.check(client, secret, record.hash if record else None)
            if record is None or not matched:
                raise errors.invalid_client()
            self._memo.remember(record.secret_id, secret)
        if self._clock.now() >= record.expire_time:
            # Told only after the secret matched, so that a stranger learns nothing.
            raise errors.Unauthenticated(
                Reason.CLIENT_SECRET_EXPIRED, "this client secret has expired; add a new one and use it"
            )
        if not principal.enabled:
            raise errors.PermissionDenied(
                Reason.PRINCIPAL_DISABLED,
                "this principal is disabled and gets no tokens; ask a tenant administrator to enable it",
            )
        return await self._mint(principal, audience)

    async def _secret_named_by(self, principal: Principal, secret: str) -> ClientSecret | None:
        """The one stored secret that `secret` can be, so that a sign-in checks one hash at most:
        the one whose id it names; for a secret that names none (made before secrets named
        their id, or an operator secret set in configuration), the principal's only secret
        of that kind (if it holds several, none: each is told to add a new secret)."""
        secret_id = secret_id_of(secret)
        if secret_id is not None:
            return await self._store.secret_of(principal.object_id, secret_id)
        unnamed = await self._store.unnamed_secrets_of(principal.object_id, limit=2)
        if len(unnamed) > 1 and principal.object_id not in self._warned:
            if len(self._warned) >= 10_000:  # (a bounded memory of whom we told)
                self._warned.clear()
            self._warned.add(principal.object_id)  # once per principal: a guesser cannot flood the log
            log.warning(
                "a secret that names no id was presented for principal %s, which holds several such secrets: "
                "none of them can be checked; add a new client secret and delete the old ones",
                principal.object_id,
            )
        return unnamed[0] if len(unnamed) == 1 else None

    async def managed_identity_token(
        self, actor: Principal, tenant_id: str, object_id: str, audience: str
    ) -> IssuedToken:
        """A managed identity's token, for the platform principal that owns it, only."""
        audience = self._audience(audience)
        identity = await self._directory.principals.owned_managed_identity(actor, tenant_id, object_id)
        if not identity.enabled:
            raise errors.PermissionDenied(
                Reason.PRINCIPAL_DISABLED, "this managed identity is disabled and gets no tokens"
            )
        return await self._mint(identity, audience)

    async def _mint(self, principal: Principal, audience: str) -> IssuedToken:
        signer = await self._keys.signer()
        now = self._clock.now()
        expires = now + self._policy.lifetime
        claims: dict[str, object] = {
            "aud": audience,
            "iss": issuer_for(self._policy.issuer_base, principal.tenant_id),
            "iat": to_epoch(now),
            "nbf": to_epoch(now),
            "exp": to_epoch(expires),
            "sub": principal.object_id,
            "oid": principal.object_id,
            "tid": principal.tenant_id,
            "appid": principal.client_id,
            "idtyp": "user" if principal.kind is PrincipalKind.USER else "app",
            "ver": "2.0",
            "jti": random_token_id(self._random),
        }
        if principal.resource_id:
            claims["xms_mirid"] = principal.resource_id
        roles = [
            name
            for name, held in ((OPERATOR_ROLE, principal.operator), (PLATFORM_ROLE, bool(principal.platform_service)))
            if held
        ]
        if roles:
            # App roles, as Entra carries them: other services trust these without a lookup.
            claims["roles"] = roles
        token = signer.sign(claims)
        return IssuedToken(token, _whole_seconds(expires), int(self._policy.lifetime.total_seconds()))


def _whole_seconds(when: datetime) -> datetime:
    return when.replace(microsecond=0)
