"""The only module of the identity service that touches raw cryptography.

Small verbs: seal/open a signing key's private half under the master key, make a signing
key, sign a token, make a client secret, hash and check one. Randomness comes in through a
parameter so that tests can pin it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import jwt
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cmk_trio.rpckit.json_input import JsonObject
from cmk_trio.rpckit.keyfiles import read_or_create_key

RandomBytes = Callable[[int], bytes]

MASTER_KEY_BYTES = 32
SIGNING_KEY_BITS = 2048
SECRET_PREFIX = "cmk~"  # noqa: S105 (a prefix, not a secret)  # makes a leaked secret easy to spot (and to redact from logs)


class CannotDecrypt(Exception):
    """Sealed data did not open: wrong key, wrong context, or tampered. Says no more."""


# --- the master key ---------------------------------------------------------------------


@dataclass(frozen=True)
class MasterKey:
    """The AES-256 key that seals the signing keys' private halves. It lives in a key file,
    never in the database."""

    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.key) != MASTER_KEY_BYTES:
            raise ValueError("the master key must be 32 bytes")

    def seal(self, plaintext: bytes, context: bytes, random: RandomBytes = os.urandom) -> bytes:
        """nonce || AES-256-GCM(plaintext), bound to `context` as associated data.

        The nonce is random (96 bits): few seals happen under one key, far below the 2^32
        at which random nonces would need counting.
        """
        nonce = random(12)
        return nonce + AESGCM(self.key).encrypt(nonce, plaintext, context)

    def open(self, sealed: bytes, context: bytes) -> bytes:
        if len(sealed) < 12 + 16:
            raise CannotDecrypt("cannot decrypt")
        try:
            return AESGCM(self.key).decrypt(sealed[:12], sealed[12:], context)
        except InvalidTag:
            raise CannotDecrypt("cannot decrypt") from None


def load_or_create_master_key(path: Path, *, create: bool, random: RandomBytes = os.urandom) -> MasterKey:
    """Read the master key file (base64 of 32 bytes), or create it (mode 0600) if allowed."""
    return MasterKey(read_or_create_key(path, create=create, size=MASTER_KEY_BYTES, random=random))


# --- signing keys -----------------------------------------------------------------------


@dataclass(frozen=True)
class NewSigningKey:
    kid: str
    public_jwk: str
    private_pem: bytes = field(repr=False)


def new_signing_key(random: RandomBytes = os.urandom) -> NewSigningKey:
    """A fresh RSA-2048 key pair with a random kid and its public JWK."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=SIGNING_KEY_BITS)
    kid = base64.urlsafe_b64encode(random(18)).decode().rstrip("=")
    jwk: JsonObject = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    jwk.update({"kid": kid, "use": "sig", "alg": "RS256"})
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return NewSigningKey(kid=kid, public_jwk=json.dumps(jwk, sort_keys=True), private_pem=pem)


class TokenSigner:
    """Signs claims with one parsed private key (parsing costs milliseconds: done once)."""

    def __init__(self, kid: str, private_pem: bytes) -> None:
        self.kid = kid
        self._key = serialization.load_pem_private_key(private_pem, password=None)

    def sign(self, claims: Mapping[str, object]) -> str:
        return jwt.encode(dict(claims), self._key, algorithm="RS256", headers={"kid": self.kid, "typ": "JWT"})  # type: ignore[arg-type]


# --- client secrets ---------------------------------------------------------------------


def new_client_secret(secret_id: str, random: RandomBytes = os.urandom) -> str:
    """A client secret that names its own id: `cmk~<secret id>~<240 random bits, URL-safe>`.

    The id is no secret (it is listed with the principal's secrets, as Entra's keyId is); it
    lets a sign-in find the one stored hash to check, so that a sign-in costs one slow hash
    however many secrets the principal holds.
    """
    return f"{SECRET_PREFIX}{secret_id}~{base64.urlsafe_b64encode(random(30)).decode()}"


_NAMED_SECRET = re.compile(
    re.escape(SECRET_PREFIX) + r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})~[A-Za-z0-9_=-]+"
)


def secret_id_of(secret: str) -> str | None:
    """The secret id a client secret names, or None for one that names none (made before
    secrets named their id, or an operator secret set in configuration)."""
    named = _NAMED_SECRET.fullmatch(secret)
    return named.group(1) if named else None


@dataclass(frozen=True)
class SecretHasher:
    """scrypt with a per-secret salt; the parameters travel with each hash, so the cost can
    be raised later without breaking old hashes. `cost` is log2 of scrypt's N."""

    cost: int = 15

    def hash(self, secret: str, random: RandomBytes = os.urandom) -> str:
        salt = random(16)
        n, r, p = 1 << self.cost, 8, 1
        digest = _scrypt(secret, salt, n, r, p)
        return "$".join(("scrypt", str(n), str(r), str(p), _b64(salt), _b64(digest)))

    def unmatchable(self, random: RandomBytes = os.urandom) -> str:
        """A stored form that no secret matches (its digest is random), checked at the same
        cost as a real one: what a sign-in with nothing to check against is checked with."""
        n, r, p = 1 << self.cost, 8, 1
        return "$".join(("scrypt", str(n), str(r), str(p), _b64(random(16)), _b64(random(32))))

    @staticmethod
    def verify(secret: str, encoded: str) -> bool:
        try:
            scheme, n, r, p, salt, digest = encoded.split("$")
            if scheme != "scrypt":
                return False
            expected = _unb64(digest)
            actual = _scrypt(secret, _unb64(salt), int(n), int(r), int(p))
        except ValueError:
            return False
        return hmac.compare_digest(actual, expected)


class VerifiedSecretMemo:
    """Remembers, per secret id, a keyed digest of a secret that passed the slow hash, so a
    client that asks for tokens often costs one scrypt, not one per token.

    The digest's key is random per process and never stored: the memo is no easier to
    attack than the process memory it lives in. Deleted secrets are never consulted because
    the memo is only asked about secrets found in the database.
    """

    def __init__(self, random: RandomBytes = os.urandom, limit: int = 100_000) -> None:
        self._key = random(32)
        self._digests: dict[str, bytes] = {}
        self._limit = limit

    def _digest(self, secret_id: str, secret: str) -> bytes:
        return hmac.new(self._key, f"{secret_id}\x00{secret}".encode(), hashlib.sha256).digest()

    def known(self, secret_id: str, secret: str) -> bool:
        remembered = self._digests.get(secret_id)
        return remembered is not None and hmac.compare_digest(remembered, self._digest(secret_id, secret))

    def remember(self, secret_id: str, secret: str) -> None:
        if len(self._digests) >= self._limit:
            self._digests.clear()
        self._digests[secret_id] = self._digest(secret_id, secret)

    def forget(self, secret_id: str) -> None:
        self._digests.pop(secret_id, None)


def random_token_id(random: RandomBytes = os.urandom) -> str:
    """A jti: 128 random bits, URL-safe."""
    return base64.urlsafe_b64encode(random(16)).decode().rstrip("=")


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=32)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)
