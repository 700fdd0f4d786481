"""The only module of the speech service that touches AES-GCM: envelope encryption.

Each resource has one 256-bit data key. Every stored secret is sealed with it by
AES-256-GCM under a fresh random 96-bit nonce, with associated data that binds the
ciphertext to its resource, record and record version, so a ciphertext copied onto another
record does not open. The data key itself is stored only wrapped: by the service's own
master key ring (Microsoft-managed) or by the customer's key in a key vault.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cmk_trio.rpckit.datadir import StartupError
from cmk_trio.rpckit.keyfiles import read_private_text, write_private_file

RandomBytes = Callable[[int], bytes]
DATA_KEY_BYTES = 32
NONCE_BYTES = 12
FORMAT = b"\x01"  # the layout version of a sealed record


class CannotDecrypt(Exception):
    """A sealed record or wrapped key did not open. Says nothing about why."""


@dataclass(frozen=True)
class DataKey:
    """A resource's data encryption key, held only in memory."""

    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.key) != DATA_KEY_BYTES:
            raise ValueError("a data key is 32 bytes")

    @classmethod
    def generate(cls, random: RandomBytes = os.urandom) -> DataKey:
        return cls(random(DATA_KEY_BYTES))


def record_binding(resource_id: str, record_id: str, version: int) -> bytes:
    """The associated data of a record: which resource, which record, which version."""
    return b"\x00".join(
        (b"cmk-speech-record/v1", resource_id.lower().encode(), record_id.encode(), str(version).encode())
    )


def seal(data_key: DataKey, plaintext: bytes, binding: bytes, random: RandomBytes = os.urandom) -> bytes:
    """format || nonce || AES-256-GCM(plaintext) with `binding` as associated data.

    The nonce is random: a resource's data key seals at most a few million records over its
    life, far below the 2^32 messages at which random 96-bit nonces would need a counter.
    """
    nonce = random(NONCE_BYTES)
    return FORMAT + nonce + AESGCM(data_key.key).encrypt(nonce, plaintext, binding)


def open_sealed(data_key: DataKey, sealed: bytes, binding: bytes) -> bytes:
    if len(sealed) < 1 + NONCE_BYTES + 16 or sealed[:1] != FORMAT:
        raise CannotDecrypt("cannot decrypt")
    try:
        return AESGCM(data_key.key).decrypt(sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :], binding)
    except InvalidTag:
        raise CannotDecrypt("cannot decrypt") from None


# --- the Microsoft-managed master key ring --------------------------------------------------


@dataclass(frozen=True)
class MasterKeyRing:
    """The speech service's own AES-256 keys, by version; the current one wraps new data
    keys, older ones still unwrap what they wrapped. Loaded from a key file, never from
    the database."""

    keys: dict[str, bytes] = field(repr=False)
    current: str

    def __post_init__(self) -> None:
        if self.current not in self.keys or any(len(k) != 32 for k in self.keys.values()):
            raise ValueError("the master key ring needs 32-byte keys and a current version among them")

    def wrap(self, data_key: DataKey, resource_uid: str, random: RandomBytes = os.urandom) -> tuple[str, bytes]:
        """(ring version, wrapped data key), bound to the resource."""
        nonce = random(NONCE_BYTES)
        blob = nonce + AESGCM(self.keys[self.current]).encrypt(nonce, data_key.key, _wrap_binding(resource_uid))
        return self.current, blob

    def unwrap(self, version: str, wrapped: bytes, resource_uid: str) -> DataKey:
        key = self.keys.get(version)
        if key is None or len(wrapped) < NONCE_BYTES + 16:
            raise CannotDecrypt("cannot decrypt")
        try:
            return DataKey(
                AESGCM(key).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], _wrap_binding(resource_uid))
            )
        except (InvalidTag, ValueError):
            raise CannotDecrypt("cannot decrypt") from None

    def adopt(self, newer: MasterKeyRing) -> bool:
        """Take the versions of `newer` (the ring file as another replica rotated it) that
        this ring lacks, so that what they wrapped unwraps here too; the versions held are
        never replaced. Returns whether any was taken."""
        missing = {v: k for v, k in newer.keys.items() if v not in self.keys}
        self.keys.update(missing)
        return bool(missing)

    def rotated(self, random: RandomBytes = os.urandom) -> MasterKeyRing:
        """A ring with a new current version; the old versions stay, to unwrap what they wrapped."""
        number = 1 + max(int(v[1:]) for v in self.keys if v[1:].isdigit())
        version = f"v{number}"
        return MasterKeyRing({**self.keys, version: random(32)}, version)

    def to_json(self) -> str:
        return json.dumps(
            {"current": self.current, "keys": {v: base64.b64encode(k).decode() for v, k in self.keys.items()}},
            indent=2,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> MasterKeyRing:
        data = json.loads(text)
        return cls({v: base64.b64decode(k, validate=True) for v, k in data["keys"].items()}, data["current"])


def _wrap_binding(resource_uid: str) -> bytes:
    return b"cmk-speech-data-key/v1\x00" + resource_uid.lower().encode()


def rotate_ring_file(path: Path, random: RandomBytes = os.urandom) -> MasterKeyRing:
    """Add a new current version to the ring file (atomically, keeping mode 0600). The
    service picks it up at its next start and rewraps Microsoft-managed data keys to it."""
    ring = MasterKeyRing.from_json(read_private_text(path)).rotated(random)
    write_private_file(path, ring.to_json() + "\n", replace=True)
    return ring


def load_or_create_ring(path: Path, *, create: bool, random: RandomBytes = os.urandom) -> MasterKeyRing:
    """Read the ring file, or create it (one version, mode 0600) if allowed."""
    try:
        text = read_private_text(path)
    except FileNotFoundError:
        text = None
    if text is not None:
        try:
            return MasterKeyRing.from_json(text)
        except (ValueError, KeyError, TypeError):
            raise StartupError(f"{path} is not a master key ring file; restore it") from None
    if not create:
        raise StartupError(
            f"the master key ring {path} is missing, but the database holds data keys wrapped with it; restore it"
        )
    ring = MasterKeyRing({"v1": random(32)}, "v1")
    write_private_file(path, ring.to_json() + "\n")
    return ring
