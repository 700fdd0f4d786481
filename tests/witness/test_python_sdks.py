"""The Python witnesses: Microsoft's SDKs, unmodified (azure-identity sync and aio,
azure-keyvault-keys' KeyClient and CryptographyClient sync and aio, azure-keyvault-secrets'
SecretClient sync and aio), against a real trio, each test both ways of naming the hosts
(tests/keyvault/doors.py): the explicit endpoints with the transport we ship, and Azure's
defaults untouched through the trio's CONNECT proxy. The same engine decides as on gRPC: each
test checks what it made through the gRPC API too. The README's parity table names these
tests for each operation they run (tests/witness/test_parity.py holds it to that)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import jwt
import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.keyvault.keys import (
    JsonWebKey,
    KeyRotationLifetimeAction,
    KeyRotationPolicy,
    KeyRotationPolicyAction,
)
from azure.keyvault.keys.crypto import EncryptionAlgorithm, KeyWrapAlgorithm, SignatureAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

from cmk_trio.proto.keyvault.v1 import resources_pb2 as res
from tests.keyvault.doors import PERMISSIONS, SECRET_PERMISSIONS, WAYS, Doors, assert_walked, open_doors, walk

pytestmark = pytest.mark.witness
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=WAYS)
async def doors(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Doors]:
    async with open_doors(tmp_path) as opened:
        yield opened.use(request.param, monkeypatch)
        if request.param == "defaults":
            assert opened.trio is not None and opened.trio.proxy is not None
            assert opened.trio.proxy.count.refused == 0


async def test_key_client_and_cryptography_client_on_the_same_engine(doors: Doors) -> None:
    # Sign in: a token for the vault, of Contoso's tenant, for this application.
    token = await asyncio.to_thread(doors.credential().get_token, "https://vault.azure.net/.default")
    claims = jwt.decode(token.token, options={"verify_signature": False})  # (the vault checks it, below)
    creds = doors.contoso.admin_credentials
    assert (claims["aud"], claims["tid"], claims["appid"]) == ("https://vault.azure.net", creds.tenant_id,
                                                               creds.client_id)  # fmt: skip
    keys = doors.key_client()
    made = await asyncio.to_thread(keys.create_rsa_key, "cmk", size=2048, tags={"team": "speech"})
    assert made.id.startswith(f"https://{doors.vault}.vault.azure.net/keys/cmk/")
    assert made.key_type == "RSA" and made.properties.enabled and made.properties.tags == {"team": "speech"}
    assert made.properties.recovery_level == "Recoverable+Purgeable"

    # The same key through the gRPC API.
    seen = await doors.vaults.get_key(made.id)
    assert seen.version == made.properties.version

    got = await asyncio.to_thread(keys.get_key, "cmk")
    assert got.id == made.id and got.key.n == made.key.n  # type: ignore[attr-defined]  # JsonWebKey sets its fields at run time
    listed = await asyncio.to_thread(lambda: [k.name for k in keys.list_properties_of_keys()])
    assert listed == ["cmk"]
    updated = await asyncio.to_thread(keys.update_key_properties, "cmk", made.properties.version,
                                      tags={"team": "speech", "cmk": "yes"})  # fmt: skip
    assert updated.properties.tags == {"team": "speech", "cmk": "yes"}
    rotated = await asyncio.to_thread(keys.rotate_key, "cmk")
    versions = await asyncio.to_thread(lambda: {k.version for k in keys.list_properties_of_key_versions("cmk")})
    assert versions == {made.properties.version, rotated.properties.version}

    # CryptographyClient wraps with the public key it fetched, and asks the vault to unwrap.
    crypto = doors.crypto_client(made.id)
    wrapped = await asyncio.to_thread(crypto.wrap_key, KeyWrapAlgorithm.rsa_oaep_256, b"k" * 32)
    unwrapped = await asyncio.to_thread(crypto.unwrap_key, KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key)
    assert unwrapped.key == b"k" * 32
    sealed = await asyncio.to_thread(crypto.encrypt, EncryptionAlgorithm.rsa_oaep, b"hello")
    opened = await asyncio.to_thread(crypto.decrypt, EncryptionAlgorithm.rsa_oaep, sealed.ciphertext)
    assert opened.plaintext == b"hello"
    # What gRPC wrapped, the SDK unwraps.
    by_grpc = await doors.vaults.wrap(made.id, b"g" * 32)
    back = await asyncio.to_thread(crypto.unwrap_key, KeyWrapAlgorithm.rsa_oaep_256, by_grpc.ciphertext)
    assert back.key == b"g" * 32

    # The policy removed over gRPC: the SDK's next unwrap is Key Vault's 403; restored, allowed.
    contoso = doors.contoso
    await doors.vaults.remove_access_policy(doors.vault, contoso.admin.object_id)
    with pytest.raises(HttpResponseError) as refused:
        await asyncio.to_thread(crypto.unwrap_key, KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key)
    assert refused.value.status_code == 403 and refused.value.error is not None
    assert refused.value.error.code == "Forbidden"
    await doors.vaults.set_access_policy(doors.vault, contoso.tenant_id, contoso.admin.object_id, PERMISSIONS,
                                         SECRET_PERMISSIONS)  # fmt: skip
    again = await asyncio.to_thread(crypto.unwrap_key, KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key)
    assert again.key == b"k" * 32

    # Soft-delete, as the SDK's pollers read it, then recovery and purge.
    poller = await asyncio.to_thread(keys.begin_delete_key, "cmk")
    deleted = await asyncio.to_thread(poller.result)
    assert deleted.recovery_id == f"https://{doors.vault}.vault.azure.net/deletedkeys/cmk"
    with pytest.raises(ResourceNotFoundError):
        await asyncio.to_thread(keys.get_key, "cmk")
    assert await asyncio.to_thread(lambda: [d.name for d in keys.list_deleted_keys()]) == ["cmk"]
    recovered = await asyncio.to_thread(lambda: keys.begin_recover_deleted_key("cmk").result())
    assert recovered.name == "cmk"
    await asyncio.to_thread(lambda: keys.begin_delete_key("cmk").result())
    await asyncio.to_thread(keys.purge_deleted_key, "cmk")
    with pytest.raises(ResourceNotFoundError):
        await asyncio.to_thread(keys.get_deleted_key, "cmk")


async def test_the_walk_the_container_suite_takes(doors: Doors) -> None:
    """tests/containers takes this walk against compose (both compose versions, the replicas
    profile): here it is held to the same answers on a trio in this process."""
    assert_walked(doors, await walk(doors))


async def test_ec_keys_and_signatures_with_the_sdk(doors: Doors) -> None:
    """EC keys on every curve and RSA keys of every size, made and imported with KeyClient;
    CryptographyClient signs through the vault (the private key's operation) and verifies:
    locally with the key it fetched, and through the vault for a caller who may not get it."""
    keys = doors.key_client()
    for size in (3072, 4096):
        assert (await asyncio.to_thread(keys.create_rsa_key, f"rsa-{size}", size=size)).key.n  # type: ignore[attr-defined]  # JsonWebKey sets its fields at run time
    signer = await doors.principal("signer", ["sign", "verify"])  # (no get: the SDK must ask the vault)
    as_signer = doors.credential(signer[1])
    for curve, algorithm, hash_name in (("P-256", SignatureAlgorithm.es256, "sha256"),
                                        ("P-384", SignatureAlgorithm.es384, "sha384"),
                                        ("P-521", SignatureAlgorithm.es512, "sha512")):  # fmt: skip
        made = await asyncio.to_thread(keys.create_ec_key, f"ec-{curve[2:]}", curve=curve)
        assert made.key_type == "EC" and made.key.crv == curve and made.key_operations == ["sign", "verify"]  # type: ignore[attr-defined]  # (as above)
        digest = hashlib.new(hash_name, b"signed by the vault").digest()
        crypto = doors.crypto_client(made.id)
        signed = await asyncio.to_thread(crypto.sign, algorithm, digest)
        assert signed.key_id == made.id
        assert (await asyncio.to_thread(crypto.verify, algorithm, digest, signed.signature)).is_valid
        assert not (await asyncio.to_thread(crypto.verify, algorithm, digest[::-1], signed.signature)).is_valid
        # The same signature checked by the vault, for a caller without `get`, and over gRPC.
        remote = doors.crypto_client(made.id, as_signer)
        assert (await asyncio.to_thread(remote.verify, algorithm, digest, signed.signature)).is_valid
        assert not (await asyncio.to_thread(remote.verify, algorithm, digest[::-1], signed.signature)).is_valid
        by_grpc = await doors.vaults.verify(made.id, getattr(res, algorithm.value), digest, signed.signature)
        assert by_grpc.valid

    audit = (await doors.vaults.list_audit(doors.vault, page_size=1000)).records
    checked_remotely = [r for r in audit if r.operation == "Verify" and r.caller_object_id == signer[0].object_id]
    assert len(checked_remotely) == 6  # (the SDK did go to the vault for this caller)

    # RSA signatures, PKCS#1 and PSS, through the vault for the caller without `get`.
    rsa_key = await asyncio.to_thread(keys.get_key, "rsa-3072")
    remote = doors.crypto_client(rsa_key.id, as_signer)
    digest = hashlib.sha384(b"an RSA signature").digest()
    for algorithm in (SignatureAlgorithm.rs384, SignatureAlgorithm.ps384):
        signed = await asyncio.to_thread(remote.sign, algorithm, digest)
        assert len(signed.signature) == 384
        assert (await asyncio.to_thread(remote.verify, algorithm, digest, signed.signature)).is_valid
    # What an EC key cannot do is Key Vault's BadParameter.
    with pytest.raises(HttpResponseError) as refused:
        await asyncio.to_thread(remote.sign, SignatureAlgorithm.es256, hashlib.sha256(b"x").digest())
    assert refused.value.status_code == 400 and refused.value.error is not None
    assert refused.value.error.code == "BadParameter"

    # An EC private key imported as a JWK signs, and is the same key over gRPC.
    private = ec.generate_private_key(ec.SECP256R1())
    numbers = private.private_numbers()
    jwk = JsonWebKey(kty="EC", crv="P-256", x=numbers.public_numbers.x.to_bytes(32, "big"),
                     y=numbers.public_numbers.y.to_bytes(32, "big"), d=numbers.private_value.to_bytes(32, "big"),
                     key_ops=["sign", "verify"])  # fmt: skip
    imported = await asyncio.to_thread(keys.import_key, "imported-ec", jwk)
    assert imported.key_type == "EC" and (await doors.vaults.get_key(imported.id)).curve == res.P_256
    digest = hashlib.sha256(b"imported").digest()
    signed = await asyncio.to_thread(doors.crypto_client(imported.id).sign, SignatureAlgorithm.es256, digest)
    r, s = int.from_bytes(signed.signature[:32], "big"), int.from_bytes(signed.signature[32:], "big")
    private.public_key().verify(encode_dss_signature(r, s), digest, ec.ECDSA(Prehashed(hashes.SHA256())))


async def test_a_backup_brings_a_purged_key_back_with_the_sdk(doors: Doors) -> None:
    keys = doors.key_client()
    made = await asyncio.to_thread(keys.create_rsa_key, "kept", size=2048, tags={"why": "backup"})
    wrapped = await asyncio.to_thread(doors.crypto_client(made.id).wrap_key, KeyWrapAlgorithm.rsa_oaep_256, b"d" * 32)
    rotated = await asyncio.to_thread(keys.rotate_key, "kept")
    blob = await asyncio.to_thread(keys.backup_key, "kept")
    assert isinstance(blob, bytes) and len(blob) > 2 * 1200  # (two versions' private keys, sealed)
    await asyncio.to_thread(lambda: keys.begin_delete_key("kept").result())
    await asyncio.to_thread(keys.purge_deleted_key, "kept")
    restored = await asyncio.to_thread(keys.restore_key_backup, blob)
    assert restored.id == rotated.id and restored.properties.tags == {"why": "backup"}
    versions = await asyncio.to_thread(lambda: {k.version for k in keys.list_properties_of_key_versions("kept")})
    assert versions == {made.properties.version, rotated.properties.version}
    back = await asyncio.to_thread(doors.crypto_client(made.id).unwrap_key, KeyWrapAlgorithm.rsa_oaep_256,
                                   wrapped.encrypted_key)  # fmt: skip
    assert back.key == b"d" * 32
    # Restored over a key of that name: Key Vault's 409; an altered blob: 400.
    with pytest.raises(HttpResponseError) as refused:
        await asyncio.to_thread(keys.restore_key_backup, blob)
    assert refused.value.status_code == 409
    with pytest.raises(HttpResponseError) as refused:
        await asyncio.to_thread(keys.restore_key_backup, blob[:-1] + bytes([blob[-1] ^ 1]))
    assert refused.value.status_code == 400 and refused.value.error is not None
    assert refused.value.error.code == "BadParameter"


async def test_secret_client_on_the_same_engine(doors: Doors) -> None:
    """SecretClient, synchronous and asynchronous: what it offers, on the secrets gRPC sees."""
    secrets = doors.secret_client()
    made = await asyncio.to_thread(secrets.set_secret, "db-password", "s3cr3t-value", content_type="text/plain",
                                   tags={"app": "web"})  # fmt: skip
    assert made.id is not None and made.id.startswith(f"https://{doors.vault}.vault.azure.net/secrets/db-password/")
    assert (made.value, made.properties.content_type, made.properties.tags) == ("s3cr3t-value", "text/plain",
                                                                                {"app": "web"})  # fmt: skip
    assert made.properties.recovery_level == "Recoverable+Purgeable"
    assert (await doors.vaults.get_secret(made.id)).value == "s3cr3t-value"  # the same secret over gRPC
    second = await asyncio.to_thread(secrets.set_secret, "db-password", "rotated")
    assert (await asyncio.to_thread(secrets.get_secret, "db-password")).value == "rotated"
    assert (await asyncio.to_thread(secrets.get_secret, "db-password", made.properties.version)).value == "s3cr3t-value"
    names = await asyncio.to_thread(lambda: [p.name for p in secrets.list_properties_of_secrets()])
    assert names == ["db-password"]
    versions = await asyncio.to_thread(lambda: {p.version for p in
                                                secrets.list_properties_of_secret_versions("db-password")})  # fmt: skip
    assert versions == {made.properties.version, second.properties.version}
    disabled = await asyncio.to_thread(secrets.update_secret_properties, "db-password", made.properties.version,
                                       enabled=False)  # fmt: skip
    assert disabled.enabled is False
    with pytest.raises(HttpResponseError) as refused:
        await asyncio.to_thread(secrets.get_secret, "db-password", made.properties.version)
    assert refused.value.status_code == 403 and refused.value.error is not None
    assert refused.value.error.code == "Forbidden"

    blob = await asyncio.to_thread(secrets.backup_secret, "db-password")
    deleted = await asyncio.to_thread(lambda: secrets.begin_delete_secret("db-password").result())
    assert deleted.recovery_id == f"https://{doors.vault}.vault.azure.net/deletedsecrets/db-password"
    with pytest.raises(ResourceNotFoundError):
        await asyncio.to_thread(secrets.get_secret, "db-password")
    assert await asyncio.to_thread(lambda: [d.name for d in secrets.list_deleted_secrets()]) == ["db-password"]
    assert (await asyncio.to_thread(secrets.get_deleted_secret, "db-password")).name == "db-password"
    await asyncio.to_thread(lambda: secrets.begin_recover_deleted_secret("db-password").result())
    assert (await asyncio.to_thread(secrets.get_secret, "db-password")).value == "rotated"
    await asyncio.to_thread(lambda: secrets.begin_delete_secret("db-password").result())
    await asyncio.to_thread(secrets.purge_deleted_secret, "db-password")
    restored = await asyncio.to_thread(secrets.restore_secret_backup, blob)
    assert restored.name == "db-password" and restored.version == second.properties.version

    # The key's rotation policy, with KeyClient.
    keys = doors.key_client()
    await asyncio.to_thread(keys.create_rsa_key, "rotating")
    policy = KeyRotationPolicy(expires_in="P2Y", lifetime_actions=[
        KeyRotationLifetimeAction(KeyRotationPolicyAction.rotate, time_after_create="P90D"),
        KeyRotationLifetimeAction(KeyRotationPolicyAction.notify, time_before_expiry="P30D")])  # fmt: skip
    stored = await asyncio.to_thread(keys.update_key_rotation_policy, "rotating", policy)
    assert stored.expires_in == "P2Y" and len(stored.lifetime_actions) == 2
    got = await asyncio.to_thread(keys.get_key_rotation_policy, "rotating")
    assert {(a.action, a.time_after_create, a.time_before_expiry) for a in got.lifetime_actions} == {
        (KeyRotationPolicyAction.rotate, "P90D", None), (KeyRotationPolicyAction.notify, None, "P30D")}  # fmt: skip


async def test_the_asynchronous_clients_too(doors: Doors) -> None:
    """azure.identity.aio, azure.keyvault.keys.aio and azure.keyvault.secrets.aio, in a program
    of their own (tests/witness/aio_sdks.py): with the aiohttp transport we ship, or with Azure's
    defaults through the proxy."""
    creds = doors.contoso.admin_credentials
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CMK_", "AZURE_"))} | {
        "WITNESS_WAY": doors.way, "AZURE_TENANT_ID": creds.tenant_id, "AZURE_CLIENT_ID": creds.client_id,
        "AZURE_CLIENT_SECRET": creds.client_secret, "VAULT_URL": doors.vault_url, "CMK_CA": str(doors.ca),
        "CMK_AUTHORITY": doors.authority, "CMK_KEYVAULT_DOOR": doors.door,
    }  # fmt: skip
    if doors.way == "defaults":  # (HTTPS_PROXY, NO_PROXY and REQUESTS_CA_BUNDLE are set: see Doors.use)
        env["SSL_CERT_FILE"] = str(doors.ca)
    run = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.witness.aio_sdks", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(run.communicate(), 60)
    assert run.returncode == 0, err.decode()[-3000:]
    seen = json.loads(out)
    assert seen["key_id"].startswith(f"{doors.vault_url}/keys/async-cmk/") and seen["rsa"]
    assert (seen["unwrapped"], seen["keys"]) == ("a" * 32, ["async-cmk"])
    assert (seen["set"], seen["got"], seen["secrets"]) == ("from-aio", "from-aio", ["aio"])
    assert (await doors.vaults.get_secret(f"vaults/{doors.vault}/secrets/aio")).value == "from-aio"
