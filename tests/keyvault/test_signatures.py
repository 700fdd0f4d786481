"""EC keys and signatures over gRPC: keys on P-256, P-384 and P-521 made and imported, digests
signed with RSA (RS*, PS*) and EC (ES*) keys and checked by the vault and, independently, by
the `cryptography` package with the public JWK alone; and what a key cannot do is refused with
its own reason before anything is signed."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

from cmk_trio.client.keyvault import KeyVaultClient
from cmk_trio.keyvault.crypto import public_key_from_jwk
from cmk_trio.proto.keyvault.v1 import resources_pb2 as res
from cmk_trio.rpckit.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from cmk_trio.rpckit.reasons import Reason
from tests import raw_database
from tests.identity.helpers import make_principal

CURVES = [(res.P_256, "P-256", res.ES256, hashlib.sha256, ec.SECP256R1()),
          (res.P_384, "P-384", res.ES384, hashlib.sha384, ec.SECP384R1()),
          (res.P_521, "P-521", res.ES512, hashlib.sha512, ec.SECP521R1())]  # fmt: skip
PROOF = b"the quarterly report, as approved"


def _b64u_int(text: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")


def _ec_public(jwk: dict[str, str], curve: ec.EllipticCurve) -> ec.EllipticCurvePublicKey:
    return ec.EllipticCurvePublicNumbers(_b64u_int(jwk["x"]), _b64u_int(jwk["y"]), curve).public_key()


async def _vault(customer, name: str = "kv1") -> None:
    await customer.vaults.create_vault(name, customer.subscription_id, "rg1", "westeurope")


@pytest.mark.parametrize(("curve", "crv", "alg", "digest_of", "ec_curve"), CURVES, ids=[c[1] for c in CURVES])
async def test_an_ec_key_signs_and_anyone_can_check_with_its_public_jwk(customer, curve, crv, alg, digest_of, ec_curve):
    await _vault(customer)
    key = await customer.vaults.create_key("kv1", "signer", curve=curve)
    assert key.key_type == res.EC and key.curve == curve and key.key_size == ec_curve.key_size
    assert list(key.key_operations) == [res.SIGN, res.VERIFY]  # (an EC key's default, as Key Vault's)
    jwk = json.loads(key.public_jwk)
    assert jwk["kty"] == "EC" and jwk["crv"] == crv and "d" not in jwk and jwk["kid"] == key.key_id
    digest = digest_of(PROOF).digest()
    signed = await customer.vaults.sign(key.key_id, alg, digest)
    width = (ec_curve.key_size + 7) // 8
    assert signed.key_id == key.key_id and len(signed.signature) == 2 * width
    # Checked without the vault: R || S as JWS has it, with the public key from the JWK.
    r, s = int.from_bytes(signed.signature[:width], "big"), int.from_bytes(signed.signature[width:], "big")
    hash_algorithm = {32: hashes.SHA256(), 48: hashes.SHA384(), 64: hashes.SHA512()}[len(digest)]
    _ec_public(jwk, ec_curve).verify(encode_dss_signature(r, s), digest, ec.ECDSA(Prehashed(hash_algorithm)))
    # And by the vault: valid, and not valid for another digest or an altered signature.
    assert (await customer.vaults.verify(key.key_id, alg, digest, signed.signature)).valid
    assert not (await customer.vaults.verify(key.key_id, alg, digest_of(b"other").digest(), signed.signature)).valid
    altered = bytes([signed.signature[0] ^ 1]) + signed.signature[1:]
    assert not (await customer.vaults.verify(key.key_id, alg, digest, altered)).valid
    assert not (await customer.vaults.verify(key.key_id, alg, digest, signed.signature[:-1])).valid
    # Rotation keeps the curve.
    rotated = await customer.vaults.rotate_key(key.key_id)
    assert rotated.curve == curve and rotated.key_type == res.EC and rotated.version != key.version


@pytest.mark.parametrize("alg", [res.RS256, res.RS384, res.RS512, res.PS256, res.PS384, res.PS512],
                         ids=["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"])  # fmt: skip
async def test_an_rsa_key_signs_with_pkcs1_and_pss(customer, alg):
    await _vault(customer)
    key = await customer.vaults.create_key("kv1", "rsa-signer", size=3072)
    name = res.SignatureAlgorithm.Name(alg)
    hash_algorithm = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}[name[2:]]
    digest = hashlib.new(hash_algorithm.name, PROOF).digest()
    signed = await customer.vaults.sign(key.key_id, alg, digest)
    assert len(signed.signature) == 384
    pad = (
        padding.PSS(mgf=padding.MGF1(hash_algorithm), salt_length=hash_algorithm.digest_size)
        if name.startswith("PS")
        else padding.PKCS1v15()
    )
    public_key_from_jwk(json.loads(key.public_jwk)).verify(signed.signature, digest, pad, Prehashed(hash_algorithm))
    assert (await customer.vaults.verify(key.key_id, alg, digest, signed.signature)).valid
    with pytest.raises(InvalidSignature):  # (the check above can fail: another digest does not verify)
        public_key_from_jwk(json.loads(key.public_jwk)).verify(signed.signature, digest[::-1], pad,
                                                               Prehashed(hash_algorithm))  # fmt: skip


async def test_what_a_key_cannot_do_is_refused_with_its_own_reason(customer):
    await _vault(customer)
    ec_key = await customer.vaults.create_key("kv1", "ec", curve=res.P_256)
    rsa_key = await customer.vaults.create_key("kv1", "rsa")
    digest = hashlib.sha256(PROOF).digest()
    for attempt in (
        customer.vaults.wrap(ec_key.key_id, bytes(32)),  # EC keys neither wrap nor encrypt
        customer.vaults.unwrap(ec_key.key_id, bytes(64)),
        customer.vaults.sign(ec_key.key_id, res.ES384, hashlib.sha384(PROOF).digest()),  # another curve's
        customer.vaults.sign(ec_key.key_id, res.RS256, digest),
        customer.vaults.sign(rsa_key.key_id, res.ES256, digest),
        customer.vaults.verify(rsa_key.key_id, res.ES256, digest, bytes(64)),
    ):
        with pytest.raises(InvalidArgument) as caught:
            await attempt
        assert caught.value.reason is Reason.ALGORITHM_NOT_FOR_KEY, caught.value
    for attempt, field in (
        (customer.vaults.sign(rsa_key.key_id, res.RS256, digest[:31]), "digest"),
        (customer.vaults.sign(ec_key.key_id, res.ES256, hashlib.sha512(PROOF).digest()), "digest"),
    ):
        with pytest.raises(InvalidArgument) as caught:
            await attempt
        assert caught.value.reason is Reason.FIELD_INVALID and caught.value.metadata["field"] == field
    with pytest.raises(InvalidArgument) as caught:
        await customer.vaults.sign(rsa_key.key_id, 0, digest)
    assert caught.value.reason is Reason.ALGORITHM_UNKNOWN
    # An EC key is not made to wrap, nor changed to.
    wrapping = res.KeyVersion(key_operations=[res.SIGN, res.WRAP_KEY])
    with pytest.raises(InvalidArgument) as caught:
        await customer.vaults.create_key("kv1", "ec-wrap", curve=res.P_384, attributes=wrapping)
    assert caught.value.reason is Reason.KEY_OPERATION_NOT_FOR_KEY
    with pytest.raises(InvalidArgument) as caught:
        await customer.vaults.update_key(ec_key.key_id, wrapping, ["key_operations"])
    assert caught.value.reason is Reason.KEY_OPERATION_NOT_FOR_KEY
    with pytest.raises(InvalidArgument) as caught:
        await customer.vaults.create_key("kv1", "no-curve", attributes=res.KeyVersion(key_type=res.EC))
    assert caught.value.reason is Reason.KEY_CURVE_INVALID
    # A key whose key_ops leave out sign refuses to sign, as for wrap.
    verify_only = await customer.vaults.update_key(ec_key.key_id, res.KeyVersion(key_operations=[res.VERIFY]),
                                                   ["key_operations"])  # fmt: skip
    assert list(verify_only.key_operations) == [res.VERIFY]
    with pytest.raises(FailedPrecondition) as refused:
        await customer.vaults.sign(ec_key.key_id, res.ES256, digest)
    assert refused.value.reason is Reason.KEY_OPERATION_NOT_ALLOWED
    assert [k.key_id.rsplit("/", 2)[-2] for k in (await customer.vaults.list_keys("kv1")).keys] == ["ec", "rsa"]


async def test_signing_needs_sign_and_checking_needs_verify(customer, operator, channel, kv_channel, clock):
    await _vault(customer)
    key = await customer.vaults.create_key("kv1", "ec", curve=res.P_256)
    app, _, app_client = await make_principal(operator, channel, clock, customer.tenant_id, "signer")
    await customer.vaults.set_access_policy("kv1", customer.tenant_id, app.object_id, ["verify"])
    as_app = KeyVaultClient(kv_channel, app_client.token_for)
    digest = hashlib.sha256(PROOF).digest()
    with pytest.raises(PermissionDenied) as caught:
        await as_app.sign(key.key_id, res.ES256, digest)
    assert caught.value.reason is Reason.FORBIDDEN_BY_POLICY and caught.value.metadata["permission"] == "sign"
    signed = await customer.vaults.sign(key.key_id, res.ES256, digest)
    assert (await as_app.verify(key.key_id, res.ES256, digest, signed.signature)).valid
    await customer.vaults.set_access_policy("kv1", customer.tenant_id, app.object_id, ["sign"])
    assert len((await as_app.sign(key.key_id, res.ES256, digest)).signature) == 64
    with pytest.raises(PermissionDenied):
        await as_app.verify(key.key_id, res.ES256, digest, signed.signature)


async def test_an_imported_ec_key_signs_and_its_private_half_never_reaches_the_database(customer, keyvault):
    await _vault(customer)
    private = ec.generate_private_key(ec.SECP384R1())
    numbers = private.private_numbers()

    def b64u(value: int) -> str:
        return base64.urlsafe_b64encode(value.to_bytes(48, "big")).rstrip(b"=").decode()

    jwk = {"kty": "EC", "crv": "P-384", "x": b64u(numbers.public_numbers.x), "y": b64u(numbers.public_numbers.y),
           "d": b64u(numbers.private_value)}  # fmt: skip
    imported = await customer.vaults.import_key("kv1", "imported-ec", json.dumps(jwk))
    assert imported.key_type == res.EC and imported.curve == res.P_384
    digest = hashlib.sha384(PROOF).digest()
    signed = await customer.vaults.sign(imported.key_id, res.ES384, digest)
    r, s = int.from_bytes(signed.signature[:48], "big"), int.from_bytes(signed.signature[48:], "big")
    private.public_key().verify(encode_dss_signature(r, s), digest, ec.ECDSA(Prehashed(hashes.SHA384())))
    der = private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())  # fmt: skip
    stored = await raw_database.stored_bytes(keyvault.config.database_location, "keyvault")
    for secret in (der[-48:], numbers.private_value.to_bytes(48, "big"), jwk["d"].encode()):
        assert secret not in stored
