"""What a caller may set on a key version and the rules for it (key operations, tags, how
much an RSA key can wrap), and what a cryptographic operation returns."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from cmk_trio.keyvault.crypto import Padding, Signature
from cmk_trio.keyvault.model import KeyOperation, KeyVersion
from cmk_trio.rpckit.errors import invalid_field
from cmk_trio.rpckit.reasons import Reason

MAX_TAGS, MAX_TAG_NAME, MAX_TAG_VALUE = 15, 512, 256
MAX_PAYLOAD = 1024


@dataclass(frozen=True, slots=True)
class KeyAttributes:
    """What a caller may set on a key version."""

    key_ops: tuple[KeyOperation, ...] | None = None
    enabled: bool | None = None
    not_before: datetime | None = None
    expires: datetime | None = None
    tags: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class CryptoResult:
    """The output of a cryptographic operation and the exact version that did it."""

    version: KeyVersion
    data: bytes
    algorithm: Padding | Signature


def key_operations(field: str, names: Iterable[str]) -> tuple[KeyOperation, ...]:
    by_lower = {o.value.lower(): o for o in KeyOperation}
    found: list[KeyOperation] = []
    for name in names:
        op = by_lower.get(name.lower())
        if op is None:
            raise invalid_field(
                field,
                Reason.KEY_OPERATION_UNKNOWN,
                f"unknown key operation; use: {', '.join(o.value for o in KeyOperation)}",
            )
        if op not in found:
            found.append(op)
    return tuple(found)


def check_tags(field: str, tags: Mapping[str, str]) -> dict[str, str]:
    if len(tags) > MAX_TAGS:
        raise invalid_field(field, Reason.TAGS_INVALID, f"at most {MAX_TAGS} tags")
    for name, value in tags.items():
        if not name or len(name) > MAX_TAG_NAME or len(value) > MAX_TAG_VALUE:
            raise invalid_field(
                field, Reason.TAGS_INVALID, f"tag names are 1-{MAX_TAG_NAME} characters, values at most {MAX_TAG_VALUE}"
            )
    return dict(tags)


def max_plaintext(size_bits: int, algorithm: Padding) -> int:
    k = size_bits // 8
    if algorithm is Padding.RSA_OAEP_256:
        return k - 2 * 32 - 2
    if algorithm is Padding.RSA_OAEP:
        return k - 2 * 20 - 2
    return k - 11
