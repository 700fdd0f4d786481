"""The token validator, in process, against keys the test controls. Every refusal has its
own reason, and no header makes the validator fetch anything."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from cmk_trio.rpckit.clock import FakeClock, to_epoch
from cmk_trio.rpckit.errors import Unauthenticated, Unavailable
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.tokens import PublicSigningKey, TokenValidator, issuer_for

ISSUER_BASE = "https://login.example.test"
AUDIENCE = "https://vault.azure.net"
TENANT_A = str(uuid.uuid4())
TENANT_B = str(uuid.uuid4())


def _jwk(private: rsa.RSAPrivateKey, kid: str) -> str:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    jwk.update({"kid": kid, "alg": "RS256", "use": "sig"})
    return json.dumps(jwk)


class KeyServer:
    """A signing-key source that counts how often it is asked."""

    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.fetches = 0
        self.down = False

    def add(self, kid: str) -> rsa.RSAPrivateKey:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return self.keys[kid]

    async def fetch_signing_keys(self) -> list[PublicSigningKey]:
        self.fetches += 1
        if self.down:
            raise ConnectionError("down")
        return [PublicSigningKey(kid, "RS256", _jwk(k, kid)) for kid, k in self.keys.items()]


@pytest.fixture
def keys() -> KeyServer:
    server = KeyServer()
    server.add("key-1")
    return server


@pytest.fixture
def validator(keys: KeyServer, clock: FakeClock) -> TokenValidator:
    return TokenValidator(key_source=keys, clock=clock, issuer_base=ISSUER_BASE, skew=timedelta(seconds=30))


def claims(clock: FakeClock, tenant: str = TENANT_A, **overrides: Any) -> dict[str, Any]:
    now = to_epoch(clock.now())
    oid = str(uuid.uuid4())
    values: dict[str, Any] = {
        "iss": issuer_for(ISSUER_BASE, tenant),
        "aud": AUDIENCE,
        "sub": oid,
        "oid": oid,
        "tid": tenant,
        "appid": str(uuid.uuid4()),
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def sign(keys: KeyServer, body: dict[str, Any], kid: str = "key-1", **headers: Any) -> str:
    return jwt.encode(body, keys.keys[kid], algorithm="RS256", headers={"kid": kid, **headers})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def raw_token(header: dict[str, Any], body: dict[str, Any], signature: bytes = b"") -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(body).encode())}.{b64(signature)}"


async def refused(validator: TokenValidator, token: str, reason: Reason, **kwargs: Any) -> None:
    with pytest.raises(Unauthenticated) as caught:
        await validator.validate(token, audience=kwargs.pop("audience", AUDIENCE), **kwargs)
    assert caught.value.reason is reason, caught.value.message


async def test_a_good_token_is_accepted_and_its_facts_returned(validator, keys, clock):
    body = claims(clock)
    verified = await validator.validate(sign(keys, body), audience=AUDIENCE, tenant_id=TENANT_A)
    assert (verified.object_id, verified.tenant_id, verified.audience) == (body["oid"], TENANT_A, AUDIENCE)


async def test_a_token_of_tenant_a_is_refused_where_tenant_b_is_required(validator, keys, clock):
    await refused(validator, sign(keys, claims(clock, TENANT_A)), Reason.TOKEN_TENANT_MISMATCH, tenant_id=TENANT_B)


async def test_a_tampered_signature_is_refused(validator, keys, clock):
    token = sign(keys, claims(clock))
    head, body, sig = token.split(".")
    flipped = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    flipped[10] ^= 0x01
    await refused(validator, f"{head}.{body}.{b64(bytes(flipped))}", Reason.TOKEN_SIGNATURE_INVALID)


async def test_tampered_claims_are_refused(validator, keys, clock):
    token = sign(keys, claims(clock))
    head, _, sig = token.split(".")
    forged = b64(json.dumps(claims(clock, TENANT_B)).encode())
    await refused(validator, f"{head}.{forged}.{sig}", Reason.TOKEN_SIGNATURE_INVALID)


async def test_an_empty_signature_is_refused(validator, keys, clock):
    head, body, _ = sign(keys, claims(clock)).split(".")
    await refused(validator, f"{head}.{body}.", Reason.TOKEN_SIGNATURE_MISSING)


async def test_a_wrong_audience_is_refused(validator, keys, clock):
    token = sign(keys, claims(clock, aud="https://management.azure.com"))
    await refused(validator, token, Reason.TOKEN_AUDIENCE_INVALID)


async def test_several_audiences_are_refused_even_if_one_matches(validator, keys, clock):
    token = sign(keys, claims(clock, aud=[AUDIENCE, "https://management.azure.com"]))
    await refused(validator, token, Reason.TOKEN_AUDIENCE_AMBIGUOUS)


async def test_an_expired_token_is_refused_after_the_skew(validator, keys, clock):
    token = sign(keys, claims(clock))
    clock.advance(timedelta(seconds=600 + 29))
    await validator.validate(token, audience=AUDIENCE)  # within the skew
    clock.advance(timedelta(seconds=2))
    await refused(validator, token, Reason.TOKEN_EXPIRED)


async def test_a_token_not_yet_valid_is_refused(validator, keys, clock):
    later = to_epoch(clock.now()) + 120
    await refused(validator, sign(keys, claims(clock, nbf=later, iat=later)), Reason.TOKEN_NOT_YET_VALID)


async def test_alg_none_is_refused(validator, keys, clock):
    await refused(validator, raw_token({"alg": "none", "kid": "key-1"}, claims(clock)), Reason.TOKEN_UNSIGNED)


async def test_hs256_signed_with_the_public_key_is_refused_without_a_fetch(validator, keys, clock):
    public_pem = (
        keys.keys["key-1"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = {"alg": "HS256", "kid": "key-1", "typ": "JWT"}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims(clock)).encode())}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    await refused(validator, f"{signing_input}.{b64(mac)}", Reason.TOKEN_ALGORITHM_NOT_ALLOWED)
    assert keys.fetches == 0


@pytest.mark.parametrize("header", ["jwk", "jku", "x5u", "x5c"])
async def test_a_key_in_or_pointed_to_by_the_header_is_refused_without_a_fetch(validator, keys, clock, header):
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    value: Any = {
        "jwk": json.loads(_jwk(attacker, "evil")),
        "jku": "https://attacker.example/keys",
        "x5u": "https://attacker.example/cert.pem",
        "x5c": ["MIIB"],
    }[header]
    token = jwt.encode(claims(clock), attacker, algorithm="RS256", headers={"kid": "evil", header: value})
    await refused(validator, token, Reason.TOKEN_HEADER_KEY_REFERENCE)
    assert keys.fetches == 0


async def test_an_unknown_kid_is_refused_after_one_refresh(validator, keys, clock):
    stranger = KeyServer()
    stranger.add("key-9")
    await refused(validator, sign(stranger, claims(clock), kid="key-9"), Reason.TOKEN_KEY_UNKNOWN)
    assert keys.fetches == 1


@pytest.mark.parametrize(
    "kid", ["../../etc/passwd", "key-1' OR '1'='1", "key-1; DROP TABLE signing_keys", "", "k" * 200, 7]
)
async def test_a_kid_that_tries_injection_is_refused_without_a_fetch(validator, keys, clock, kid):
    token = raw_token({"alg": "RS256", "kid": kid}, claims(clock), b"\x01" * 256)
    await refused(validator, token, Reason.TOKEN_KID_INVALID)
    assert keys.fetches == 0


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c.d", "!!!.???.sig", "eyJhbGciOiJSUzI1NiJ9..sig"])
async def test_malformed_tokens_are_refused(validator, token):
    await refused(validator, token, Reason.TOKEN_MALFORMED)


async def test_an_issuer_not_matching_the_tenant_is_refused(validator, keys, clock):
    token = sign(keys, claims(clock, TENANT_A, iss=issuer_for(ISSUER_BASE, TENANT_B)))
    await refused(validator, token, Reason.TOKEN_ISSUER_INVALID)


async def test_missing_claims_are_refused(validator, keys, clock):
    await refused(validator, sign(keys, claims(clock, oid=None)), Reason.TOKEN_CLAIMS_INVALID)


async def test_refresh_on_unknown_kid_is_rate_limited(validator, keys, clock):
    stranger = KeyServer()
    stranger.add("key-9")
    forged = sign(stranger, claims(clock), kid="key-9")
    for _ in range(5):
        await refused(validator, forged, Reason.TOKEN_KEY_UNKNOWN)
    assert keys.fetches == 1
    clock.advance(timedelta(seconds=6))
    await refused(validator, forged, Reason.TOKEN_KEY_UNKNOWN)
    assert keys.fetches == 2


async def test_a_new_key_is_picked_up_without_a_restart(validator, keys, clock):
    await validator.validate(sign(keys, claims(clock)), audience=AUDIENCE)
    keys.add("key-2")
    clock.advance(timedelta(seconds=6))
    await validator.validate(sign(keys, claims(clock), kid="key-2"), audience=AUDIENCE)
    assert keys.fetches == 2


async def test_an_unreachable_key_source_fails_closed_as_unavailable(validator, keys, clock):
    keys.down = True
    with pytest.raises(Unavailable):
        await validator.validate(sign(keys, claims(clock)), audience=AUDIENCE)


async def test_a_verified_token_is_remembered_but_revocation_still_applies(validator, keys, clock):
    body = claims(clock)
    token = sign(keys, body)
    await validator.validate(token, audience=AUDIENCE)
    keys.down = True  # a second validation needs no key
    await validator.validate(token, audience=AUDIENCE)
    validator.revocations.revoke(body["oid"], "disabled")
    await refused(validator, token, Reason.TOKEN_REVOKED)
    validator.revocations.restore(body["oid"])
    await validator.validate(token, audience=AUDIENCE)


async def test_a_remembered_token_still_expires(validator, keys, clock):
    token = sign(keys, claims(clock))
    await validator.validate(token, audience=AUDIENCE)
    clock.advance(timedelta(hours=1))
    await refused(validator, token, Reason.TOKEN_EXPIRED)


async def test_a_key_the_directory_stops_publishing_is_dropped_within_the_key_age(validator, keys, clock):
    """Issue 12, finding 3: a validator replaced its keys only on an unknown kid or a rotation
    event, so a key the directory retired stayed trusted, and a leaked one could sign fresh
    tokens. Now the keys are fetched again once a minute old, and a token verified with a
    key no longer published is not accepted from memory either."""
    earlier = sign(keys, claims(clock))
    await validator.validate(earlier, audience=AUDIENCE)
    leaked = keys.keys["key-1"]
    keys.add("key-2")
    del keys.keys["key-1"]  # retired: no longer published
    clock.advance(timedelta(seconds=61))
    await refused(validator, earlier, Reason.TOKEN_KEY_UNKNOWN)
    fresh = jwt.encode(claims(clock), leaked, algorithm="RS256", headers={"kid": "key-1"})
    await refused(validator, fresh, Reason.TOKEN_KEY_UNKNOWN)
    await validator.validate(sign(keys, claims(clock), kid="key-2"), audience=AUDIENCE)


async def test_a_withdrawn_key_is_refused_at_once_whatever_a_fetch_still_lists(validator, keys, clock):
    token = sign(keys, claims(clock))
    await validator.validate(token, audience=AUDIENCE)
    keys.add("key-2")
    await validator.key_withdrawn("key-1")  # the directory's SIGNING_KEY_REVOKED; it still lists key-1
    await refused(validator, token, Reason.TOKEN_KEY_UNKNOWN)
    await validator.validate(sign(keys, claims(clock), kid="key-2"), audience=AUDIENCE)


async def test_a_failed_periodic_fetch_keeps_the_keys_held(validator, keys, clock):
    token = sign(keys, claims(clock))
    await validator.validate(token, audience=AUDIENCE)
    keys.down = True
    clock.advance(timedelta(seconds=61))
    await validator.validate(token, audience=AUDIENCE)  # the revocation feed's staleness bound rules an outage
