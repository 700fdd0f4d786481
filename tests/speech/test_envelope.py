"""Envelope encryption: known answers and tampering."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cmk_trio.rpckit.datadir import StartupError
from cmk_trio.speech.envelope import (
    CannotDecrypt,
    DataKey,
    MasterKeyRing,
    load_or_create_ring,
    open_sealed,
    record_binding,
    seal,
)

KEY = DataKey(bytes(range(32)))
RESOURCE = (
    "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg"
    "/providers/Microsoft.CognitiveServices/accounts/s1"
)


def fixed(byte: int):
    return lambda n: bytes([byte]) * n


def test_known_answer():
    binding = record_binding(RESOURCE, "app-1", 3)
    sealed = seal(KEY, b'{"commands":[]}', binding, random=fixed(9))
    expected = b"\x01" + b"\x09" * 12 + AESGCM(KEY.key).encrypt(b"\x09" * 12, b'{"commands":[]}', binding)
    assert sealed == expected
    assert open_sealed(KEY, sealed, binding) == b'{"commands":[]}'


def test_a_record_opens_only_with_its_key_binding_and_bytes():
    binding = record_binding(RESOURCE, "app-1", 1)
    sealed = seal(KEY, b"secret config", binding)
    flipped = bytearray(sealed)
    flipped[-1] ^= 1
    cases = [
        (KEY, bytes(flipped), binding),  # altered
        (KEY, sealed, record_binding(RESOURCE, "app-2", 1)),  # copied onto another record
        (KEY, sealed, record_binding(RESOURCE, "app-1", 2)),  # another version
        (KEY, sealed, record_binding(RESOURCE.replace("s1", "s2"), "app-1", 1)),  # another resource
        (DataKey(b"\x07" * 32), sealed, binding),  # another data key
        (KEY, b"\x02" + sealed[1:], binding),  # unknown format
        (KEY, sealed[:10], binding),  # truncated
    ]
    for key, blob, bind in cases:
        with pytest.raises(CannotDecrypt, match=r"^cannot decrypt$"):
            open_sealed(key, blob, bind)


def test_resource_ids_compare_case_insensitively():
    sealed = seal(KEY, b"x", record_binding(RESOURCE, "a", 1))
    assert open_sealed(KEY, sealed, record_binding(RESOURCE.upper(), "a", 1)) == b"x"


def test_the_ring_wraps_with_the_current_version_and_unwraps_older_ones():
    old = MasterKeyRing({"v1": b"\x01" * 32}, "v1")
    version, wrapped = old.wrap(KEY, RESOURCE)
    rotated = MasterKeyRing({"v1": b"\x01" * 32, "v2": b"\x02" * 32}, "v2")
    assert rotated.unwrap(version, wrapped, RESOURCE).key == KEY.key
    assert rotated.wrap(KEY, RESOURCE)[0] == "v2"
    cases = [("v2", wrapped, RESOURCE), ("v9", wrapped, RESOURCE), ("v1", wrapped, RESOURCE + "x"),
             ("v1", wrapped[:-1] + bytes([wrapped[-1] ^ 1]), RESOURCE)]  # fmt: skip
    for bad_version, blob, resource in cases:
        with pytest.raises(CannotDecrypt):
            rotated.unwrap(bad_version, blob, resource)


def test_the_ring_file_is_made_once_private_and_required_later(tmp_path):
    path = tmp_path / "ring.json"
    with pytest.raises(StartupError, match="missing"):
        load_or_create_ring(path, create=False)
    ring = load_or_create_ring(path, create=True)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_ring(path, create=False) == ring
    with pytest.raises(ValueError, match="current"):
        MasterKeyRing({"v1": b"\x01" * 32}, "v2")
