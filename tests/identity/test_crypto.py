"""The identity service's crypto verbs: known answers and tampering."""

from __future__ import annotations

import pytest

from cmk_trio.identity.crypto import (
    CannotDecrypt,
    MasterKey,
    SecretHasher,
    VerifiedSecretMemo,
    load_or_create_master_key,
    new_client_secret,
    secret_id_of,
)
from cmk_trio.rpckit.datadir import StartupError

SECRET_ID = "0b5e6c1e-3d4f-4a5b-8c6d-7e8f9a0b1c2d"


def fixed(byte: int):
    return lambda n: bytes([byte]) * n


def test_master_key_seal_known_answer_and_tamper():
    key = MasterKey(bytes(range(32)))
    sealed = key.seal(b"private key", b"kid-1", random=fixed(7))
    # nonce || ciphertext || tag, deterministic for a fixed nonce.
    assert sealed[:12] == b"\x07" * 12
    assert sealed.hex() == key.seal(b"private key", b"kid-1", random=fixed(7)).hex()
    assert key.open(sealed, b"kid-1") == b"private key"
    flipped = bytearray(sealed)
    flipped[15] ^= 1
    for bad, context in ((bytes(flipped), b"kid-1"), (sealed, b"kid-2"), (sealed[:20], b"kid-1")):
        with pytest.raises(CannotDecrypt, match="cannot decrypt"):
            key.open(bad, context)
    with pytest.raises(CannotDecrypt):
        MasterKey(b"\x00" * 32).open(sealed, b"kid-1")


def test_secret_hash_verifies_only_the_secret_and_holds_its_parameters():
    hasher = SecretHasher(cost=10)
    secret = new_client_secret(SECRET_ID, fixed(1))
    assert secret == f"cmk~{SECRET_ID}~" + "AQEB" * 10  # the prefix, its id, 240 random bits
    encoded = hasher.hash(secret, fixed(2))
    assert encoded.startswith("scrypt$1024$8$1$") and secret not in encoded
    assert SecretHasher.verify(secret, encoded)
    assert not SecretHasher.verify(secret + "x", encoded)
    assert not SecretHasher.verify(secret, "bcrypt$x")
    assert not SecretHasher.verify(secret, "garbage")


def test_a_secret_names_its_own_id_and_older_forms_name_none():
    assert secret_id_of(new_client_secret(SECRET_ID)) == SECRET_ID
    for unnamed in (
        "cmk~" + "AQEB" * 10,  # made before secrets named their id
        "an-operator-secret-from-configuration",
        f"cmk~{SECRET_ID}~",  # no random part
        f"cmk~{SECRET_ID.upper()}~AQEB",  # not the id as we write it
        f"xcmk~{SECRET_ID}~AQEB",
        f"cmk~{SECRET_ID}~AQEB~more",
    ):
        assert secret_id_of(unnamed) is None, unnamed


def test_the_production_cost_is_the_default():
    assert SecretHasher().cost >= 14


def test_the_memo_knows_only_what_was_verified():
    memo = VerifiedSecretMemo()
    memo.remember("s1", "value")
    assert memo.known("s1", "value")
    assert not memo.known("s1", "other") and not memo.known("s2", "value")
    memo.forget("s1")
    assert not memo.known("s1", "value")


def test_master_key_file_is_created_once_with_mode_0600(tmp_path):
    path = tmp_path / "k"
    with pytest.raises(StartupError, match="missing"):
        load_or_create_master_key(path, create=False)
    made = load_or_create_master_key(path, create=True)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_master_key(path, create=False).key == made.key
