"""Access-token validation, the library the key vault and speech services (and identity
itself) call on every authenticated request.

The order of checks is the point: everything decidable from the token alone (shape,
algorithm, key references in the header, kid syntax) is decided before any key is looked
up, so no header can make the validator fetch anything. Then the key is found by kid in a
cached key set (refreshed on an unknown kid, at most once per `min_refresh_interval`), the
algorithm is pinned to that key, the signature is verified, and the claims are checked
against an injectable clock with a small skew. A token that passed is remembered until it
expires, so a busy caller's signature is verified once; revocation is still checked on
every call, from a set fed by the directory's event stream.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from cmk_trio.rpckit import json_input
from cmk_trio.rpckit.clock import Clock, from_epoch
from cmk_trio.rpckit.errors import Unauthenticated, Unavailable
from cmk_trio.rpckit.json_input import Json, JsonObject
from cmk_trio.rpckit.observe import Metrics
from cmk_trio.rpckit.reasons import Reason

log = logging.getLogger(__name__)

ALGORITHM = "RS256"
"""The only signature algorithm: the directory signs with RS256, as Entra ID does."""

# Header parameters that embed or point to a key. A validator that honoured them would let
# the token choose its own verification key, so their mere presence refuses the token.
KEY_REFERENCE_HEADERS = frozenset({"jwk", "jku", "x5u", "x5c"})
KID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,128}")
REQUIRED_CLAIMS = ("iss", "aud", "sub", "oid", "tid", "iat", "nbf", "exp", "jti")
OPERATOR_ROLE = "Platform.Operator"
"""The app role in the platform operator's tokens."""
PLATFORM_ROLE = "Platform.Service"
"""The app role in the tokens of the platform services' own principals."""


def issuer_for(issuer_base: str, tenant_id: str) -> str:
    """The issuer of a tenant's tokens, in Entra's v2.0 form."""
    return f"{issuer_base.rstrip('/')}/{tenant_id}/v2.0"


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """The facts of a token whose signature and claims were checked."""

    object_id: str
    tenant_id: str
    client_id: str
    audience: str
    issuer: str
    issued_at: datetime
    not_before: datetime
    expires_at: datetime
    token_id: str
    resource_id: str
    roles: frozenset[str]
    claims: Mapping[str, Json] = field(repr=False)
    raw: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class PublicSigningKey:
    """A public key as the directory publishes it: a key id, the algorithm it is pinned to,
    and its JWK."""

    kid: str
    algorithm: str
    jwk: str


class SigningKeySource(Protocol):
    """Where a validator gets the directory's public signing keys."""

    async def fetch_signing_keys(self) -> list[PublicSigningKey]: ...


class RevocationSet:
    """Principals whose tokens are refused, fed by the directory's event stream.

    With `max_staleness`, the set fails closed: until its feed has replayed the stream to the
    directory's head once (`caught_up`, at the stream's first heartbeat), and again after
    every rebuild (`clear`), it knows nothing, and every token is refused
    (`REVOCATIONS_UNKNOWN`, retryable); so it is when the feed has heard nothing (no event,
    no heartbeat) for `max_staleness`, as it may be missing revocations. The time is real
    elapsed time (`monotonic`), not the service clock: it is about the connection, and a
    test moving the service clock by days must not trip it.
    """

    def __init__(self, max_staleness: timedelta | None = None, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._revoked: dict[str, str] = {}
        self.max_staleness = max_staleness
        self._monotonic = monotonic
        self._heard: float | None = None  # never caught up: nothing is known yet
        self.known = asyncio.Event()
        """Set while the set is complete (caught up since the last rebuild)."""

    def heard(self) -> None:
        """The stream said something (an event): alive, if it had caught up."""
        if self._heard is not None:
            self._heard = self._monotonic()

    def caught_up(self) -> None:
        """The stream reached the directory's head (its heartbeat): the set is complete."""
        self._heard = self._monotonic()
        self.known.set()

    @property
    def current(self) -> bool:
        """Whether the set may be trusted now (what readiness reports)."""
        if self.max_staleness is None:
            return True
        return self._heard is not None and self._monotonic() - self._heard <= self.max_staleness.total_seconds()

    def check_current(self) -> None:
        if self.max_staleness is None:
            return
        if self._heard is None:
            raise Unavailable(
                Reason.REVOCATIONS_UNKNOWN,
                "this service has not yet caught up with the directory's event stream, so it cannot tell revoked "
                "tokens apart; retry shortly",
            )
        silent = self._monotonic() - self._heard
        if silent > self.max_staleness.total_seconds():
            raise Unavailable(
                Reason.REVOCATIONS_UNKNOWN,
                f"nothing heard from the directory's event stream for {silent:.0f} s: revocations may be missed, so "
                "tokens are refused until it is heard again; retry shortly",
            )

    def revoke(self, object_id: str, why: str) -> None:
        self._revoked[object_id] = why

    def restore(self, object_id: str) -> None:
        self._revoked.pop(object_id, None)

    def why_revoked(self, object_id: str) -> str | None:
        return self._revoked.get(object_id)

    def clear(self) -> None:
        """Forget every revocation, to rebuild the set from the start of the stream (after a
        gap): until the stream has caught up again, nothing is known."""
        self._revoked.clear()
        self._heard = None
        self.known.clear()

    def __len__(self) -> int:
        return len(self._revoked)


class TokenValidator:
    """Validates bearer tokens; see the module docstring for the order of checks."""

    def __init__(
        self,
        *,
        key_source: SigningKeySource,
        clock: Clock,
        issuer_base: str,
        revocations: RevocationSet | None = None,
        skew: timedelta = timedelta(seconds=30),
        min_refresh_interval: timedelta = timedelta(seconds=5),
        max_key_age: timedelta = timedelta(minutes=1),
        cache_size: int = 10_000,
        metrics: Metrics | None = None,
    ) -> None:
        self._source = key_source
        self._clock = clock
        self._issuer_base = issuer_base.rstrip("/")
        self.revocations = revocations if revocations is not None else RevocationSet()
        self._skew = skew
        self._min_refresh = min_refresh_interval
        self._cache_size = cache_size
        self._keys: dict[str, tuple[str, rsa.RSAPublicKey]] = {}
        self._withdrawn: set[str] = set()
        self._max_key_age = max_key_age
        self._last_refresh: datetime | None = None
        self._refresh_lock = asyncio.Lock()
        self._verified: OrderedDict[str, VerifiedToken] = OrderedDict()
        self.key_fetches = 0
        self._metrics = metrics

    # --- keys -------------------------------------------------------------------------

    async def refresh_keys(self, *, force: bool = False) -> None:
        """Fetch the public keys, at most once per `min_refresh_interval` unless forced
        (a rotation event forces it). Concurrent callers share one fetch."""
        async with self._refresh_lock:
            now = self._clock.now()
            if not force and self._last_refresh is not None and now - self._last_refresh < self._min_refresh:
                return
            self.key_fetches += 1
            self._last_refresh = now
            try:
                published = await self._source.fetch_signing_keys()
            except Exception as exc:
                raise Unavailable(
                    Reason.DEPENDENCY_UNAVAILABLE,
                    "cannot fetch the directory's signing keys; retry shortly",
                ) from exc
            before = set(self._keys)
            self._keys = dict(self._parse_keys(published))
            if before - set(self._keys):
                # A key the directory no longer publishes: no token it signed is accepted,
                # not even one verified before.
                self._verified.clear()

    async def key_withdrawn(self, kid: str) -> None:
        """A signing key was revoked (the directory's SIGNING_KEY_REVOKED): refuse it and
        every token it signed at once, whatever a fetch in flight still lists."""
        self._withdrawn.add(kid)
        self._keys.pop(kid, None)
        self._verified.clear()
        await self.refresh_keys(force=True)

    async def _refresh_when_old(self) -> None:
        """Fetch the keys again once they are `max_key_age` old, so that a key the directory
        stopped publishing (retired) is dropped even if no event said so. A failed fetch
        keeps the keys held (the revocation feed's staleness bound covers an outage)."""
        last = self._last_refresh
        if last is None or self._clock.now() - last < self._max_key_age:
            return  # (the first fetch is the one an unknown kid makes, and it fails loudly)
        try:
            await self.refresh_keys()
        except Unavailable:
            log.warning("cannot refresh the signing keys; keeping those held")

    def _parse_keys(self, published: Iterable[PublicSigningKey]) -> Iterable[tuple[str, tuple[str, rsa.RSAPublicKey]]]:
        for key in published:
            if key.kid in self._withdrawn:
                continue
            if key.algorithm != ALGORITHM or not KID_PATTERN.fullmatch(key.kid):
                log.warning("ignoring a signing key with an unexpected algorithm or kid")
                continue
            try:
                jwk = jwt.PyJWK(json.loads(key.jwk), algorithm=ALGORITHM)
            except (jwt.PyJWKError, ValueError, TypeError):
                log.warning("ignoring a signing key whose JWK does not parse")
                continue
            if not isinstance(jwk.key, rsa.RSAPublicKey):
                log.warning("ignoring a signing key that is not an RSA public key")
                continue
            yield key.kid, (ALGORITHM, jwk.key)

    def forget_verified(self) -> None:
        """Drop every remembered token (after missed events)."""
        self._verified.clear()

    # --- validation -------------------------------------------------------------------

    async def validate(
        self, token: str, *, audience: str | frozenset[str], tenant_id: str | None = None
    ) -> VerifiedToken:
        """The verified token, or `Unauthenticated` with the reason of the first failed check.

        `audience` is the audience the token must be for, or a set of which it must be for one.

        `tenant_id`, when given, is the tenant of the thing being touched: a token of any
        other tenant is refused.
        """
        await self._refresh_when_old()
        verified = self._verified.get(token)
        if self._metrics is not None:
            self._metrics.hit("verified_tokens", verified is not None)
        if verified is None:
            verified = await self._verify(token)
            self._remember(token, verified)
        self._check_time(verified)
        self._check_audience(verified, audience)
        if tenant_id is not None and verified.tenant_id != tenant_id:
            raise Unauthenticated(
                Reason.TOKEN_TENANT_MISMATCH,
                "the token was issued by another tenant than the one that owns this resource; "
                "get a token from the resource's tenant",
                metadata={"token_tenant_id": verified.tenant_id, "expected_tenant_id": tenant_id},
            )
        self.revocations.check_current()
        why = self.revocations.why_revoked(verified.object_id)
        if why is not None:
            raise Unauthenticated(
                Reason.TOKEN_REVOKED,
                f"the token's principal was {why}; its tokens are no longer accepted",
                metadata={"object_id": verified.object_id},
            )
        return verified

    async def _verify(self, token: str) -> VerifiedToken:
        parts = token.split(".")
        if len(parts) != 3 or not parts[0] or not parts[1]:
            raise _refuse(Reason.TOKEN_MALFORMED, "the token is not a compact JWS (header.claims.signature)")
        header = _decode_header(parts[0])
        alg = header.get("alg")
        if not isinstance(alg, str) or alg.lower() == "none":
            raise _refuse(Reason.TOKEN_UNSIGNED, "unsigned tokens (alg none) are never accepted")
        if KEY_REFERENCE_HEADERS & header.keys():
            raise _refuse(
                Reason.TOKEN_HEADER_KEY_REFERENCE,
                "the token header embeds or points to a key (jwk, jku, x5u, x5c); keys come only from the directory",
            )
        if alg != ALGORITHM:
            raise _refuse(Reason.TOKEN_ALGORITHM_NOT_ALLOWED, f"tokens must be signed with {ALGORITHM}")
        if not parts[2]:
            raise _refuse(Reason.TOKEN_SIGNATURE_MISSING, "the token has no signature")
        kid = header.get("kid")
        if not isinstance(kid, str) or not KID_PATTERN.fullmatch(kid):
            raise _refuse(Reason.TOKEN_KID_INVALID, "the token header has no valid key id (kid)")
        key = self._keys.get(kid)
        if key is None:
            await self.refresh_keys()
            key = self._keys.get(kid)
        if key is None:
            raise _refuse(Reason.TOKEN_KEY_UNKNOWN, "the token was signed with a key the directory does not publish")
        key_alg, public_key = key
        if alg != key_alg:
            raise _refuse(Reason.TOKEN_ALGORITHM_NOT_ALLOWED, f"this key verifies only {key_alg}")
        try:
            claims = jwt.decode(
                token,
                key=public_key,
                algorithms=[key_alg],
                options={
                    "verify_signature": True,
                    "verify_exp": False,  # time and audience are checked below, with our clock,
                    "verify_nbf": False,  # so that each failure gets its own reason
                    "verify_iat": False,
                    "verify_aud": False,
                    "verify_iss": False,
                    "verify_sub": False,
                    "verify_jti": False,
                },
            )
        except jwt.InvalidSignatureError:
            raise _refuse(Reason.TOKEN_SIGNATURE_INVALID, "the token signature does not verify") from None
        except jwt.PyJWTError:
            raise _refuse(Reason.TOKEN_MALFORMED, "the token claims are not valid JSON") from None
        return self._claims_to_token(claims, token)

    def _claims_to_token(self, claims: JsonObject, token: str) -> VerifiedToken:
        missing = [c for c in REQUIRED_CLAIMS if c not in claims]
        if missing:
            raise _refuse(Reason.TOKEN_CLAIMS_INVALID, f"the token lacks required claims: {', '.join(missing)}")
        for name in ("iss", "sub", "oid", "tid", "jti"):
            if not isinstance(claims[name], str):
                raise _refuse(Reason.TOKEN_CLAIMS_INVALID, f"the token claim {name} is not a string")
        for name in ("iat", "nbf", "exp"):
            if not isinstance(claims[name], int) or isinstance(claims[name], bool):
                raise _refuse(Reason.TOKEN_CLAIMS_INVALID, f"the token claim {name} is not a number")
        aud = claims["aud"]
        if isinstance(aud, list):
            if len(aud) != 1:
                raise _refuse(Reason.TOKEN_AUDIENCE_AMBIGUOUS, "the token names several audiences; one is required")
            aud = aud[0]
        if not isinstance(aud, str):
            raise _refuse(Reason.TOKEN_CLAIMS_INVALID, "the token claim aud is not a string")
        tid = claims["tid"]
        if not _is_uuid(tid) or not _is_uuid(claims["oid"]):
            raise _refuse(Reason.TOKEN_CLAIMS_INVALID, "the token's tid and oid must be UUIDs")
        if claims["iss"] != issuer_for(self._issuer_base, tid):
            raise _refuse(Reason.TOKEN_ISSUER_INVALID, "the token's issuer is not the issuer of its tenant")
        return VerifiedToken(
            object_id=claims["oid"],
            tenant_id=tid,
            client_id=str(claims.get("appid", "")),
            audience=aud,
            issuer=claims["iss"],
            issued_at=from_epoch(claims["iat"]),
            not_before=from_epoch(claims["nbf"]),
            expires_at=from_epoch(claims["exp"]),
            token_id=claims["jti"],
            resource_id=str(claims.get("xms_mirid", "")),
            roles=frozenset(r for r in claims.get("roles", ()) if isinstance(r, str))
            if isinstance(claims.get("roles"), list)
            else frozenset(),
            claims=claims,
            raw=token,
        )

    def _check_time(self, verified: VerifiedToken) -> None:
        now = self._clock.now()
        if now > verified.expires_at + self._skew:
            raise _refuse(Reason.TOKEN_EXPIRED, "the token has expired; get a new one")
        if now + self._skew < verified.not_before or now + self._skew < verified.issued_at:
            raise _refuse(Reason.TOKEN_NOT_YET_VALID, "the token is not valid yet")

    @staticmethod
    def _check_audience(verified: VerifiedToken, audience: str | frozenset[str]) -> None:
        accepted = (audience,) if isinstance(audience, str) else sorted(audience)
        if verified.audience not in accepted:
            raise Unauthenticated(
                Reason.TOKEN_AUDIENCE_INVALID,
                f"the token is for another audience; this service needs a token for {' or '.join(accepted)}",
                metadata={"expected_audience": ",".join(accepted)},
            )

    def _remember(self, token: str, verified: VerifiedToken) -> None:
        self._verified[token] = verified
        while len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)


def _decode_header(segment: str) -> JsonObject:
    # Parsed here rather than by PyJWT, so that odd values (a numeric kid) get their own
    # reason below instead of a generic parse error.
    try:
        header = json_input.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, UnicodeDecodeError):
        raise _refuse(Reason.TOKEN_MALFORMED, "the token header is not valid base64url JSON") from None
    if not isinstance(header, dict):
        raise _refuse(Reason.TOKEN_MALFORMED, "the token header is not a JSON object")
    return header


def _refuse(reason: Reason, message: str) -> Unauthenticated:
    return Unauthenticated(reason, message)


def _is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower()
    except (ValueError, AttributeError, TypeError):
        return False
