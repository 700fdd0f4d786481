"""The only module of the key vault that touches raw cryptography.

Small verbs: make or import an RSA key, seal and open its private half under the vault
master key, export its public JWK, wrap/unwrap and encrypt/decrypt with it, MAC an audit
record, sign and verify an audit checkpoint. Failures to decrypt say "cannot decrypt" and
nothing more, so that no error becomes an oracle.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cmk_trio.rpckit.json_input import Json, JsonObject
from cmk_trio.rpckit.keyfiles import read_or_create_key

RandomBytes = Callable[[int], bytes]
MASTER_KEY_BYTES = 32
RSA_SIZES = (2048, 3072, 4096)


class CannotDecrypt(Exception):
    """A wrapped key, ciphertext or sealed blob did not open. Deliberately says no more."""


class BadKeyMaterial(ValueError):
    """Imported key material is not a usable RSA private key."""


class Padding(StrEnum):
    """The RSA paddings the vault accepts, by their real algorithm names."""

    RSA_OAEP_256 = "RSA-OAEP-256"
    RSA_OAEP = "RSA-OAEP"
    RSA1_5 = "RSA1_5"

    @property
    def recommended(self) -> bool:
        """RSA-OAEP (SHA-1) and RSA1_5 are accepted for compatibility, not recommended."""
        return self is Padding.RSA_OAEP_256


def _padding(algorithm: Padding) -> padding.AsymmetricPadding:
    if algorithm is Padding.RSA_OAEP_256:
        return padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    if algorithm is Padding.RSA_OAEP:
        return padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)  # noqa: S303 (RSA-OAEP is defined with SHA-1)
    return padding.PKCS1v15()


# --- the master key ---------------------------------------------------------------------


@dataclass(frozen=True)
class VaultMasterKey:
    """The key vault service's own master key, read from a key file (never the database).

    Two keys are derived from it with HKDF, one per purpose: one seals private key material,
    one keys the audit log's MAC chain.
    """

    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.key) != MASTER_KEY_BYTES:
            raise ValueError("the master key must be 32 bytes")

    def _derive(self, purpose: bytes) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"cmk-keyvault/" + purpose).derive(self.key)

    @property
    def sealing_key(self) -> bytes:
        return self._derive(b"seal-private-keys")

    @property
    def audit_mac_key(self) -> bytes:
        return self._derive(b"audit-mac-chain")


class Sealer:
    """Seals private key material: nonce || AES-256-GCM(data), bound to a context (the key
    version's identifier) so that a sealed blob moved to another row does not open."""

    def __init__(self, master: VaultMasterKey, random: RandomBytes = os.urandom) -> None:
        self._aead = AESGCM(master.sealing_key)
        self._random = random

    def seal(self, data: bytes, context: str) -> bytes:
        # A random 96-bit nonce per seal: key creation is rare, far below the birthday bound.
        nonce = self._random(12)
        return nonce + self._aead.encrypt(nonce, data, context.encode())

    def open(self, sealed: bytes, context: str) -> bytes:
        if len(sealed) < 28:
            raise CannotDecrypt("cannot decrypt")
        try:
            return self._aead.decrypt(sealed[:12], sealed[12:], context.encode())
        except InvalidTag:
            raise CannotDecrypt("cannot decrypt") from None


def load_or_create_master_key(path: Path, *, create: bool, random: RandomBytes = os.urandom) -> VaultMasterKey:
    """Read the master key file (base64 of 32 bytes), or create it with mode 0600 if allowed."""
    return VaultMasterKey(read_or_create_key(path, create=create, size=MASTER_KEY_BYTES, random=random))


# --- RSA keys -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RsaKeyMaterial:
    """A parsed RSA private key. Parsing costs milliseconds, so the service keeps these in
    memory once opened, never re-parsing per request."""

    private: rsa.RSAPrivateKey = field(repr=False)

    @property
    def size(self) -> int:
        return self.private.key_size

    def private_der(self) -> bytes:
        return self.private.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def public_jwk(self, kid: str, key_ops: list[str]) -> dict[str, object]:
        """The public half as the real service returns it: kty, kid, key_ops, n, e."""
        numbers = self.private.public_key().public_numbers()
        return {
            "kid": kid,
            "kty": "RSA",
            "key_ops": key_ops,
            "n": _b64u(_int_bytes(numbers.n)),
            "e": _b64u(_int_bytes(numbers.e)),
        }

    def unwrap(self, algorithm: Padding, wrapped: bytes) -> bytes:
        try:
            return self.private.decrypt(wrapped, _padding(algorithm))
        except ValueError:
            raise CannotDecrypt("cannot decrypt") from None

    decrypt = unwrap

    def wrap(self, algorithm: Padding, plaintext: bytes) -> bytes:
        return wrap_with_public(self.private.public_key(), algorithm, plaintext)

    encrypt = wrap


def generate_rsa(size: int) -> RsaKeyMaterial:
    if size not in RSA_SIZES:
        raise ValueError(f"RSA key size must be one of {RSA_SIZES}")
    return RsaKeyMaterial(rsa.generate_private_key(public_exponent=65537, key_size=size))


def load_private_der(der: bytes, *, validated: bool = False) -> RsaKeyMaterial:
    """A private key from DER. `validated`: the key was checked when it was made or imported
    and has been sealed since (the seal is authenticated), so the checks of its numbers,
    about 50 ms of CPU for RSA-2048, are not repeated at every load."""
    key = serialization.load_der_private_key(der, password=None, unsafe_skip_rsa_key_validation=validated)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CannotDecrypt("cannot decrypt")
    return RsaKeyMaterial(key)


def import_rsa_jwk(jwk: JsonObject) -> RsaKeyMaterial:
    """An RSA private key from a JWK (kty RSA with n, e, d, p, q, dp, dq, qi)."""
    if not isinstance(jwk, dict) or jwk.get("kty") not in ("RSA", "RSA-HSM"):
        raise BadKeyMaterial("only RSA keys (kty RSA) can be imported")
    try:
        n, e, d, p, q, dp, dq, qi = (_int(jwk[name]) for name in ("n", "e", "d", "p", "q", "dp", "dq", "qi"))
    except KeyError as missing:
        raise BadKeyMaterial(f"the JWK lacks the private parameter {missing.args[0]!r}") from None
    except (ValueError, TypeError):
        raise BadKeyMaterial("the JWK's parameters are not base64url integers") from None
    try:
        numbers = rsa.RSAPrivateNumbers(p, q, d, dp, dq, qi, rsa.RSAPublicNumbers(e, n))
        key = numbers.private_key()
    except ValueError:
        raise BadKeyMaterial("the JWK's parameters do not form a valid RSA key") from None
    if key.key_size not in RSA_SIZES:
        raise BadKeyMaterial(f"RSA key size must be one of {RSA_SIZES}, not {key.key_size}")
    return RsaKeyMaterial(key)


def public_key_from_jwk(jwk: JsonObject) -> rsa.RSAPublicKey:
    """The RSA public key of a public JWK (for clients that wrap locally)."""
    return rsa.RSAPublicNumbers(_int(jwk["e"]), _int(jwk["n"])).public_key()


def wrap_with_public(public: rsa.RSAPublicKey, algorithm: Padding, plaintext: bytes) -> bytes:
    return public.encrypt(plaintext, _padding(algorithm))


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")


def _int(text: Json) -> int:
    if not isinstance(text, str) or not text:
        raise ValueError("not a base64url string")
    return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")


# --- the audit log ------------------------------------------------------------------------


def audit_mac(key: bytes, previous_mac: bytes, record: Mapping[str, object]) -> bytes:
    """HMAC-SHA256 over the previous record's MAC and this record's canonical JSON: editing,
    removing or reordering a record breaks every MAC after it, and nobody without the key
    can recompute the chain."""
    canonical = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    return hmac.new(key, previous_mac + canonical, hashlib.sha256).digest()


def macs_equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


class CheckpointSigner:
    """Signs audit checkpoints (record count and chain head) with Ed25519; the public half is
    published so that anyone can check a saved checkpoint."""

    def __init__(self, private: ed25519.Ed25519PrivateKey) -> None:
        self._private = private

    @classmethod
    def generate(cls) -> CheckpointSigner:
        return cls(ed25519.Ed25519PrivateKey.generate())

    @classmethod
    def from_raw(cls, raw: bytes) -> CheckpointSigner:
        return cls(ed25519.Ed25519PrivateKey.from_private_bytes(raw))

    def raw(self) -> bytes:
        return self._private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )

    def public_raw(self) -> bytes:
        return self._private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)


def verify_checkpoint_signature(public_raw: bytes, message: bytes, signature: bytes) -> bool:
    try:
        ed25519.Ed25519PublicKey.from_public_bytes(public_raw).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True
