"""The key vault's crypto verbs: round trips, known answers and tampering."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from cmk_trio.keyvault.crypto import (
    BadKeyMaterial,
    CannotDecrypt,
    CheckpointSigner,
    Curve,
    EcKeyMaterial,
    NotForThisKey,
    Padding,
    Sealer,
    Signature,
    VaultMasterKey,
    audit_mac,
    generate_ec,
    generate_rsa,
    import_jwk,
    import_rsa_jwk,
    load_private_der,
    public_key_from_jwk,
    verify_checkpoint_signature,
    verify_with_public,
    wrap_with_public,
)

MASTER = VaultMasterKey(bytes(range(32)))


@pytest.fixture(scope="module")
def material():
    return generate_rsa(2048)


def b64u(value: int) -> str:
    return base64.urlsafe_b64encode(value.to_bytes((value.bit_length() + 7) // 8, "big")).decode().rstrip("=")


def private_jwk(key: rsa.RSAPrivateKey) -> dict[str, str]:
    n = key.private_numbers()
    return {
        "kty": "RSA", "n": b64u(n.public_numbers.n), "e": b64u(n.public_numbers.e), "d": b64u(n.d),
        "p": b64u(n.p), "q": b64u(n.q), "dp": b64u(n.dmp1), "dq": b64u(n.dmq1), "qi": b64u(n.iqmp),
    }  # fmt: skip


@pytest.mark.parametrize("algorithm", list(Padding))
def test_wrap_with_the_public_jwk_and_unwrap_with_the_private_key(material, algorithm):
    public = public_key_from_jwk(material.public_jwk("kid", ["wrapKey"]))
    data_key = bytes(range(32))
    wrapped = wrap_with_public(public, algorithm, data_key)
    assert material.unwrap(algorithm, wrapped) == data_key
    assert algorithm.recommended is (algorithm is Padding.RSA_OAEP_256)


def test_an_altered_or_foreign_blob_cannot_be_unwrapped_and_says_nothing_more(material):
    wrapped = bytearray(material.wrap(Padding.RSA_OAEP_256, b"k" * 32))
    wrapped[5] ^= 0xFF
    for bad, algorithm in (
        (bytes(wrapped), Padding.RSA_OAEP_256),
        (material.wrap(Padding.RSA_OAEP, b"k" * 32), Padding.RSA_OAEP_256),  # wrong padding
        (b"\x00" * 10, Padding.RSA_OAEP_256),  # wrong length
    ):
        with pytest.raises(CannotDecrypt) as caught:
            material.unwrap(algorithm, bad)
        assert str(caught.value) == "cannot decrypt"


def test_sealing_binds_the_context_and_detects_tampering(material):
    sealer = Sealer(MASTER, random=lambda n: b"\x01" * n)
    der = material.private_der()
    sealed = sealer.seal(der, "https://v.vault.azure.net/keys/k/" + "a" * 32)
    assert der not in sealed and sealed[:12] == b"\x01" * 12
    assert load_private_der(sealer.open(sealed, "https://v.vault.azure.net/keys/k/" + "a" * 32)).size == 2048
    flipped = bytearray(sealed)
    flipped[-1] ^= 1
    for blob, context in ((bytes(flipped), "ctx"), (sealed, "https://v.vault.azure.net/keys/k/" + "b" * 32)):
        with pytest.raises(CannotDecrypt):
            sealer.open(blob, context)
    with pytest.raises(CannotDecrypt):
        Sealer(VaultMasterKey(b"\x09" * 32)).open(sealed, "https://v.vault.azure.net/keys/k/" + "a" * 32)


def test_derived_keys_differ_by_purpose_and_are_stable():
    assert MASTER.sealing_key != MASTER.audit_mac_key
    assert MASTER.sealing_key == VaultMasterKey(bytes(range(32))).sealing_key
    assert MASTER.audit_mac_key.hex() != MASTER.key.hex()


def test_import_accepts_an_rsa_jwk_and_refuses_everything_else(material):
    imported = import_rsa_jwk(private_jwk(material.private))
    assert imported.private_der() == material.private_der()
    jwk = private_jwk(material.private)
    for bad in (
        {**jwk, "kty": "EC"},
        {k: v for k, v in jwk.items() if k != "d"},
        {**jwk, "n": "!!"},
        {**jwk, "q": jwk["p"]},
        private_jwk(rsa.generate_private_key(public_exponent=65537, key_size=1024)),  # noqa: S505 (must be refused)
    ):
        with pytest.raises(BadKeyMaterial):
            import_rsa_jwk(bad)


def test_key_sizes():
    with pytest.raises(ValueError, match="2048"):
        generate_rsa(1024)


def test_audit_mac_known_answer_and_chain_sensitivity():
    key = b"\x02" * 32
    record = {"b": 1, "a": "x"}
    expected = hmac.new(key, b"\x00" * 32 + b'{"a":"x","b":1}', hashlib.sha256).digest()
    assert audit_mac(key, b"\x00" * 32, record) == expected
    assert audit_mac(key, b"\x01" * 32, record) != expected
    assert audit_mac(b"\x03" * 32, b"\x00" * 32, record) != expected


def test_checkpoint_signatures_verify_only_the_signed_message():
    signer = CheckpointSigner.generate()
    again = CheckpointSigner.from_raw(signer.raw())
    signature = again.sign(b"count=3;head=ab")
    assert verify_checkpoint_signature(signer.public_raw(), b"count=3;head=ab", signature)
    assert not verify_checkpoint_signature(signer.public_raw(), b"count=2;head=ab", signature)
    assert not verify_checkpoint_signature(
        signer.public_raw(), b"count=3;head=ab", signature[:-1] + bytes([signature[-1] ^ 1])
    )


@pytest.mark.parametrize("curve", list(Curve), ids=[c.value for c in Curve])
def test_an_ec_key_imports_from_its_jwk_and_its_signatures_verify_by_the_public_jwk_alone(curve):
    made = generate_ec(curve)
    public = made.public_jwk("kid", ["sign", "verify"])
    assert public["crv"] == curve.value and "d" not in public
    numbers = made.private.private_numbers()
    width = (curve.bits + 7) // 8
    assert len(base64.urlsafe_b64decode(str(public["x"]) + "==")) == width  # (P-521: 66 bytes, leading zeros kept)
    private = {**public, "d": base64.urlsafe_b64encode(numbers.private_value.to_bytes(width, "big")).decode()}
    imported = import_jwk(private)
    assert isinstance(imported, EcKeyMaterial) and imported.private_der() == made.private_der()
    algorithm = next(s for s in Signature if s.curve is curve)
    digest = bytes(range(algorithm.hash.digest_size))
    signature = imported.sign(algorithm, digest)
    assert verify_with_public(json.dumps(public), algorithm, digest, signature)
    for forged in (signature[::-1], signature[:-1], b"", b"\x00" * 2000):
        assert not verify_with_public(json.dumps(public), algorithm, digest, forged)
    with pytest.raises(NotForThisKey):
        imported.wrap(Padding.RSA_OAEP_256, b"k" * 32)
    for bad in ({**private, "crv": "P-256K"}, {**private, "d": "!!"}, {k: v for k, v in private.items() if k != "y"},
                {**private, "x": public["y"]}):  # fmt: skip
        with pytest.raises(BadKeyMaterial):
            import_jwk(bad)


def test_rsa_signatures_of_any_shape_are_a_verdict_and_mismatches_are_refused(material):
    public = json.dumps(material.public_jwk("kid", ["sign"]))
    digest = bytes(32)
    for algorithm in (Signature.RS256, Signature.PS256):
        signature = material.sign(algorithm, digest)
        assert verify_with_public(public, algorithm, digest, signature)
        for forged in (signature[1:], b"\x01", signature + b"\x00", bytes(len(signature))):
            assert not verify_with_public(public, algorithm, digest, forged)
    with pytest.raises(NotForThisKey):
        material.sign(Signature.ES256, digest)
    with pytest.raises(NotForThisKey):
        verify_with_public(public, Signature.ES256, digest, b"x")
    with pytest.raises(ValueError, match="32-byte digest"):
        material.sign(Signature.RS256, bytes(31))
    with pytest.raises(BadKeyMaterial):
        import_jwk({"kty": "oct", "k": "AA"})


def test_an_rsa_signature_is_exactly_as_long_as_the_modulus(material):
    """RFC 8017: a signature of another length than the key's is invalid. A PSS signature
    (its salt is random) whose first octet is zero verified with that octet cut off, since
    OpenSSL reads the shorter string as the same integer (seen once in 256 runs of the test
    above)."""
    public = json.dumps(material.public_jwk("kid", ["sign"]))
    digest = bytes(32)
    for _ in range(20_000):  # about 256 signatures until one starts with a zero octet
        signature = material.sign(Signature.PS256, digest)
        if signature[0] == 0:
            break
    else:
        raise AssertionError("no PS256 signature with a leading zero octet in 20,000")
    assert verify_with_public(public, Signature.PS256, digest, signature)
    assert not verify_with_public(public, Signature.PS256, digest, signature[1:])
