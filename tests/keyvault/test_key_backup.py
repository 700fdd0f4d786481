"""Key backups over gRPC: every version of a key, private halves included, in a blob that only
this key vault opens; restored under its name after a purge, or into another vault of the same
subscription, with each version's attributes, so that data wrapped by any version unwraps again.
What a restore refuses (a name in use, another subscription, an altered blob) changes nothing."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from cmk_trio.client.keyvault import KeyVaultClient
from cmk_trio.proto.keyvault.v1 import resources_pb2 as res
from cmk_trio.rpckit.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied
from cmk_trio.rpckit.reasons import Reason
from tests.identity.helpers import make_principal
from tests.keyvault.conftest import make_customer
from tests.keyvault.test_crypto import private_jwk

DATA_KEY = bytes(range(32))


async def test_a_purged_key_comes_back_with_every_version_from_its_backup(customer):
    await customer.vaults.create_vault("kv1", customer.subscription_id, "rg1", "westeurope")
    first = await customer.vaults.create_key("kv1", "cmk", attributes=res.KeyVersion(tags={"team": "speech"}))
    wrapped_by_first = (await customer.vaults.wrap(first.key_id, DATA_KEY)).ciphertext
    second = await customer.vaults.rotate_key(first.key_id)
    await customer.vaults.update_key(first.key_id, res.KeyVersion(enabled=False), ["enabled"])
    third = await customer.vaults.rotate_key(first.key_id)
    wrapped_by_third = (await customer.vaults.wrap(third.key_id, DATA_KEY)).ciphertext
    before = {v.version: v for v in (await customer.vaults.list_versions(third.key_id.rsplit("/", 1)[0])).versions}

    blob = await customer.vaults.backup_key(first.key_id)
    await customer.vaults.delete_key(first.key_id)
    await customer.vaults.purge_key(first.key_id)
    with pytest.raises(NotFound):
        await customer.vaults.get_key(first.key_id)

    restored = await customer.vaults.restore_key("kv1", blob)
    assert restored.key_id == third.key_id  # the newest version is the newest again
    after = {v.version: v for v in (await customer.vaults.list_versions(third.key_id.rsplit("/", 1)[0])).versions}
    assert set(after) == {first.version, second.version, third.version}
    for version, was in before.items():
        now = after[version]
        assert (now.public_jwk, now.enabled, dict(now.tags), now.create_time) == (
            was.public_jwk, was.enabled, dict(was.tags), was.create_time)  # fmt: skip
    assert not after[first.version].enabled and dict(after[first.version].tags) == {"team": "speech"}
    assert (await customer.vaults.unwrap(third.key_id, wrapped_by_third)).plaintext == DATA_KEY
    await customer.vaults.update_key(first.key_id, res.KeyVersion(enabled=True), ["enabled"])
    assert (await customer.vaults.unwrap(first.key_id, wrapped_by_first)).plaintext == DATA_KEY


async def test_a_key_moves_to_another_vault_of_its_subscription_an_ec_key_too(customer):
    for vault in ("kv1", "kv2"):
        await customer.vaults.create_vault(vault, customer.subscription_id, "rg1", "westeurope")
    made = await customer.vaults.create_key("kv1", "signer", curve=res.P_521)
    digest = hashlib.sha512(b"moved").digest()
    signature = (await customer.vaults.sign(made.key_id, res.ES512, digest)).signature
    moved = await customer.vaults.restore_key("kv2", await customer.vaults.backup_key(made.key_id))
    assert moved.key_id == made.key_id.replace("//kv1.", "//kv2.") and moved.curve == res.P_521
    assert json.loads(moved.public_jwk)["kid"] == moved.key_id
    assert (await customer.vaults.verify(moved.key_id, res.ES512, digest, signature)).valid
    assert len((await customer.vaults.sign(moved.key_id, res.ES512, digest)).signature) == 132


async def test_what_a_restore_refuses_changes_nothing(customer, operator, channel, kv_channel, clock):
    await customer.vaults.create_vault("kv1", customer.subscription_id, "rg1", "westeurope")
    made = await customer.vaults.create_key("kv1", "cmk")
    blob = await customer.vaults.backup_key(made.key_id)
    with pytest.raises(AlreadyExists) as caught:  # the key is there
        await customer.vaults.restore_key("kv1", blob)
    assert caught.value.reason is Reason.KEY_EXISTS
    await customer.vaults.delete_key(made.key_id)
    with pytest.raises(AlreadyExists):  # soft-deleted: still its name
        await customer.vaults.restore_key("kv1", blob)
    altered = bytearray(blob)
    altered[len(altered) // 2] ^= 1
    for bad in (bytes(altered), blob[:-1], b"", b"x" * 100, bytes(4000)):
        with pytest.raises(InvalidArgument) as invalid:
            await customer.vaults.restore_key("kv1", bad)
        assert invalid.value.reason in (Reason.BACKUP_INVALID, Reason.FIELD_REQUIRED)
    # Another tenant's vault, another subscription: refused, and the blob names nothing.
    fabrikam = await make_customer(operator, channel, kv_channel, clock, "Fabrikam")
    await fabrikam.vaults.create_vault("fabrikam-kv", fabrikam.subscription_id, "rg1", "westeurope")
    with pytest.raises(InvalidArgument) as other:
        await fabrikam.vaults.restore_key("fabrikam-kv", blob)
    assert other.value.reason is Reason.BACKUP_OTHER_SUBSCRIPTION
    assert not (await fabrikam.vaults.list_keys("fabrikam-kv")).keys
    assert [k.key.key_id for k in (await customer.vaults.list_deleted_keys("kv1")).deleted_keys] == [made.key_id]


async def test_backup_and_restore_each_need_their_permission(customer, operator, channel, kv_channel, clock):
    await customer.vaults.create_vault("kv1", customer.subscription_id, "rg1", "westeurope")
    made = await customer.vaults.create_key("kv1", "cmk")
    app, _, app_client = await make_principal(operator, channel, clock, customer.tenant_id, "backups")
    as_app = KeyVaultClient(kv_channel, app_client.token_for)
    await customer.vaults.set_access_policy("kv1", customer.tenant_id, app.object_id, ["restore"])
    with pytest.raises(PermissionDenied) as caught:
        await as_app.backup_key(made.key_id)
    assert caught.value.metadata["permission"] == "backup"
    await customer.vaults.set_access_policy("kv1", customer.tenant_id, app.object_id, ["backup"])
    blob = await as_app.backup_key(made.key_id)
    await customer.vaults.delete_key(made.key_id)
    await customer.vaults.purge_key(made.key_id)
    with pytest.raises(PermissionDenied) as caught:
        await as_app.restore_key("kv1", blob)
    assert caught.value.metadata["permission"] == "restore"


async def test_no_private_key_can_be_read_from_a_backup(customer):
    await customer.vaults.create_vault("kv1", customer.subscription_id, "rg1", "westeurope")
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    imported = await customer.vaults.import_key("kv1", "byok", json.dumps(private_jwk(private)))
    blob = await customer.vaults.backup_key(imported.key_id)
    der = private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())  # fmt: skip
    d = private.private_numbers().d.to_bytes(256, "big")
    for secret in (der[-64:], d[:32], base64.b64encode(der)[100:160], b"byok", b"kv1"):
        assert secret not in blob
