"""The only module of the key vault that touches raw cryptography.

Small verbs: make or import an RSA or EC key, seal and open its private half under the vault
master key, export its public JWK, wrap/unwrap and encrypt/decrypt (RSA), sign a digest (both)
and verify a signature with the public half, MAC an audit record, sign and verify an audit
checkpoint. Failures to decrypt say "cannot decrypt" and nothing more: no error is an oracle.
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
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    Prehashed,
    decode_dss_signature,
    encode_dss_signature,
)
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
    """Imported key material is not a usable RSA or EC private key."""


class NotForThisKey(ValueError):
    """The algorithm is not one this key's type can do (wrapping with an EC key, ES256 with
    RSA, ES384 with a P-256 key): Key Vault's "key and algorithm are not compatible"."""


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


class Curve(StrEnum):
    """The elliptic curves of EC keys, by their JWK names, with the hash that goes with each."""

    P_256 = "P-256"
    P_384 = "P-384"
    P_521 = "P-521"

    @property
    def bits(self) -> int:
        return {Curve.P_256: 256, Curve.P_384: 384, Curve.P_521: 521}[self]

    def ec_curve(self) -> ec.EllipticCurve:
        if self is Curve.P_256:
            return ec.SECP256R1()
        return ec.SECP384R1() if self is Curve.P_384 else ec.SECP521R1()

    @classmethod
    def of(cls, curve: ec.EllipticCurve) -> Curve:
        by_name = {"secp256r1": Curve.P_256, "secp384r1": Curve.P_384, "secp521r1": Curve.P_521}
        found = by_name.get(curve.name)
        if found is None:
            raise BadKeyMaterial(f"EC keys are on {', '.join(c.value for c in Curve)}, not {curve.name}")
        return found


class Signature(StrEnum):
    """The signature algorithms (JWA names): RSASSA-PKCS1-v1_5 (RS), RSASSA-PSS (PS) and
    ECDSA (ES), each over a digest of its hash's length that the caller computed."""

    RS256 = "RS256"
    RS384 = "RS384"
    RS512 = "RS512"
    PS256 = "PS256"
    PS384 = "PS384"
    PS512 = "PS512"
    ES256 = "ES256"
    ES384 = "ES384"
    ES512 = "ES512"

    @property
    def hash(self) -> hashes.HashAlgorithm:
        bits = int(self.value[2:])
        return {256: hashes.SHA256(), 384: hashes.SHA384(), 512: hashes.SHA512()}[bits]

    @property
    def key_type(self) -> str:
        return "EC" if self.value.startswith("ES") else "RSA"

    @property
    def curve(self) -> Curve | None:
        """The one curve an ECDSA algorithm goes with (ES512 is P-521's)."""
        return {"ES256": Curve.P_256, "ES384": Curve.P_384, "ES512": Curve.P_521}.get(self.value)

    @property
    def recommended(self) -> bool:
        """Every signature algorithm the vault offers is recommended (unlike RSA-OAEP's SHA-1)."""
        return True

    def check_digest(self, digest: bytes) -> None:
        if len(digest) != self.hash.digest_size:
            raise ValueError(f"{self.value} signs a {self.hash.digest_size}-byte digest, not {len(digest)} bytes")

    def rsa_padding(self) -> padding.AsymmetricPadding:
        if self.value.startswith("PS"):
            # Salt as long as the digest, as Key Vault and RFC 7518 (section 3.5) do.
            return padding.PSS(mgf=padding.MGF1(self.hash), salt_length=self.hash.digest_size)
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

    @property
    def backup_key(self) -> bytes:
        return self._derive(b"seal-backups")

    @property
    def secret_key(self) -> bytes:
        return self._derive(b"seal-secrets")


class Sealer:
    """Seals private key material: nonce || AES-256-GCM(data), bound to a context (the key
    version's identifier) so that a sealed blob moved to another row does not open."""

    def __init__(self, master: VaultMasterKey, random: RandomBytes = os.urandom, *, purpose: str = "keys") -> None:
        self._master = master
        keys = {"keys": master.sealing_key, "backups": master.backup_key, "secrets": master.secret_key}
        self._aead = AESGCM(keys[purpose])
        self._random = random

    def for_backups(self) -> Sealer:
        """A sealer under a key of its own for backups, which only this service (any replica of
        it, holding the same master key) can open: never the private keys' sealing key."""
        return Sealer(self._master, self._random, purpose="backups")

    def for_secrets(self) -> Sealer:
        """A sealer under a key of its own for secrets' values."""
        return Sealer(self._master, self._random, purpose="secrets")

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
    key_type = "RSA"
    curve = None

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

    def sign(self, algorithm: Signature, digest: bytes) -> bytes:
        if algorithm.key_type != "RSA":
            raise NotForThisKey(f"{algorithm.value} is not an algorithm of RSA keys")
        algorithm.check_digest(digest)
        return self.private.sign(digest, algorithm.rsa_padding(), Prehashed(algorithm.hash))


@dataclass(frozen=True)
class EcKeyMaterial:
    """A parsed EC private key: it signs; it neither wraps nor encrypts (no ECDH here, as in
    Key Vault, where EC keys are for signatures)."""

    private: ec.EllipticCurvePrivateKey = field(repr=False)
    key_type = "EC"

    @property
    def curve(self) -> Curve:
        return Curve.of(self.private.curve)

    @property
    def size(self) -> int:
        return self.curve.bits

    def private_der(self) -> bytes:
        return self.private.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def public_jwk(self, kid: str, key_ops: list[str]) -> dict[str, object]:
        """The public half as the real service returns it: kty, kid, key_ops, crv, x, y."""
        numbers = self.private.public_key().public_numbers()
        width = (self.size + 7) // 8
        return {
            "kid": kid,
            "kty": "EC",
            "key_ops": key_ops,
            "crv": self.curve.value,
            "x": _b64u(numbers.x.to_bytes(width, "big")),
            "y": _b64u(numbers.y.to_bytes(width, "big")),
        }

    def _refuse(self, algorithm: Padding, data: bytes) -> bytes:
        raise NotForThisKey(f"{algorithm.value} needs an RSA key; EC keys sign and verify")

    wrap = unwrap = encrypt = decrypt = _refuse

    def sign(self, algorithm: Signature, digest: bytes) -> bytes:
        if algorithm.curve is not self.curve:
            raise NotForThisKey(f"{algorithm.value} is not an algorithm of {self.curve.value} keys")
        algorithm.check_digest(digest)
        r, s = decode_dss_signature(self.private.sign(digest, ec.ECDSA(Prehashed(algorithm.hash))))
        width = (self.size + 7) // 8
        return r.to_bytes(width, "big") + s.to_bytes(width, "big")  # (JWS's form: R || S, RFC 7518 3.4)


KeyMaterial = RsaKeyMaterial | EcKeyMaterial


def generate_ec(curve: Curve) -> EcKeyMaterial:
    return EcKeyMaterial(ec.generate_private_key(curve.ec_curve()))


def generate_like(key_type: str, size: int) -> KeyMaterial:
    """A new key of the same type and size (or curve, for EC) as a version: for rotation."""
    if key_type == "EC":
        return generate_ec(next(c for c in Curve if c.bits == size))
    return generate_rsa(size)


def generate_rsa(size: int) -> RsaKeyMaterial:
    if size not in RSA_SIZES:
        raise ValueError(f"RSA key size must be one of {RSA_SIZES}")
    return RsaKeyMaterial(rsa.generate_private_key(public_exponent=65537, key_size=size))


def load_private_der(der: bytes, *, validated: bool = False) -> KeyMaterial:
    """A private key from DER. `validated`: the key was checked when it was made or imported
    and has been sealed since (the seal is authenticated), so the checks of its numbers,
    about 50 ms of CPU for RSA-2048, are not repeated at every load."""
    key = serialization.load_der_private_key(der, password=None, unsafe_skip_rsa_key_validation=validated)
    if isinstance(key, rsa.RSAPrivateKey):
        return RsaKeyMaterial(key)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return EcKeyMaterial(key)
    raise CannotDecrypt("cannot decrypt")


def import_jwk(jwk: JsonObject) -> KeyMaterial:
    """A private key from a JWK: kty RSA (n, e, d, p, q, dp, dq, qi) or EC (crv, x, y, d)."""
    kty = jwk.get("kty") if isinstance(jwk, dict) else None
    if kty in ("EC", "EC-HSM"):
        return import_ec_jwk(jwk)
    if kty in ("RSA", "RSA-HSM"):
        return import_rsa_jwk(jwk)
    raise BadKeyMaterial("only RSA and EC keys (kty RSA or EC) can be imported")


def import_ec_jwk(jwk: JsonObject) -> EcKeyMaterial:
    crv = jwk.get("crv")
    curve = next((c for c in Curve if c.value == crv), None)
    if curve is None:
        raise BadKeyMaterial(f"an EC key's crv is one of {', '.join(c.value for c in Curve)}")
    try:
        x, y, d = (_int(jwk[name]) for name in ("x", "y", "d"))
    except KeyError as missing:
        raise BadKeyMaterial(f"the JWK lacks the parameter {missing.args[0]!r}") from None
    except (ValueError, TypeError):
        raise BadKeyMaterial("the JWK's parameters are not base64url integers") from None
    try:
        key = ec.EllipticCurvePrivateNumbers(d, ec.EllipticCurvePublicNumbers(x, y, curve.ec_curve())).private_key()
    except ValueError:
        raise BadKeyMaterial("the JWK's parameters do not form a valid EC key on its curve") from None
    return EcKeyMaterial(key)


def import_rsa_jwk(jwk: JsonObject) -> RsaKeyMaterial:
    """An RSA private key from a JWK (kty RSA with n, e, d, p, q, dp, dq, qi)."""
    if not isinstance(jwk, dict) or jwk.get("kty") not in ("RSA", "RSA-HSM"):
        raise BadKeyMaterial("only RSA keys (kty RSA) can be imported as RSA keys")
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


def verify_with_public(public_jwk: str, algorithm: Signature, digest: bytes, signature: bytes) -> bool:
    """Whether `signature` is the signature of `digest` by the key of a public JWK this vault
    wrote: a verdict, never an error, for a signature of any length or content. NotForThisKey
    when the algorithm is not the key's; ValueError when the digest is not the algorithm's
    length."""
    algorithm.check_digest(digest)
    jwk = json.loads(public_jwk)
    try:
        if jwk.get("kty") == "EC":
            curve = Curve(jwk["crv"])
            if algorithm.curve is not curve:
                raise NotForThisKey(f"{algorithm.value} is not an algorithm of {curve.value} keys")
            width = (curve.bits + 7) // 8
            if len(signature) != 2 * width:
                return False
            public = ec.EllipticCurvePublicNumbers(_int(jwk["x"]), _int(jwk["y"]), curve.ec_curve()).public_key()
            der = encode_dss_signature(
                int.from_bytes(signature[:width], "big"), int.from_bytes(signature[width:], "big")
            )
            public.verify(der, digest, ec.ECDSA(Prehashed(algorithm.hash)))
        else:
            if algorithm.key_type != "RSA":
                raise NotForThisKey(f"{algorithm.value} is not an algorithm of RSA keys")
            rsa_public = public_key_from_jwk(jwk)
            if len(signature) != (rsa_public.key_size + 7) // 8:  # RFC 8017: k octets (OpenSSL takes fewer)
                return False
            rsa_public.verify(signature, digest, algorithm.rsa_padding(), Prehashed(algorithm.hash))
    except InvalidSignature:
        return False
    return True


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
