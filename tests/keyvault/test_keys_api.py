"""Keys and key operations over the wire: wrap/unwrap, the authorization matrix, disabled
and expired versions, soft-delete and purge, revocation, audit, bad input."""

from __future__ import annotations

import contextlib
import json
import os
from datetime import timedelta

import grpc
import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2

from cmk_trio.client.keyvault import KeyVaultClient
from cmk_trio.keyvault.crypto import Padding, public_key_from_jwk, wrap_with_public
from cmk_trio.proto.keyvault.v1 import keyvault_service_pb2 as pb
from cmk_trio.proto.keyvault.v1 import keyvault_service_pb2_grpc as pb_grpc
from cmk_trio.proto.keyvault.v1 import resources_pb2 as res
from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.status import error_info_of
from cmk_trio.rpckit.testing import expect_rpc_error
from tests import raw_database
from tests.identity.helpers import make_principal
from tests.keyvault.conftest import make_customer
from tests.waiting import eventually

DATA_KEY = bytes(range(32))
BLOB = b"x" * 256
EC_JWK = json.dumps({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "d": "AA"})


async def vault_with_key(customer, name="kv1", **vault_options):
    await customer.vaults.create_vault(name, customer.subscription_id, "rg1", "westeurope", **vault_options)
    return await customer.vaults.create_key(name, "cmk")


async def test_wrap_locally_with_the_public_key_and_unwrap_through_the_vault(customer):
    key = await vault_with_key(customer)
    assert key.key_id.startswith("https://kv1.vault.azure.net/keys/cmk/") and len(key.version) == 32
    assert key.key_size == 2048 and key.recovery_level == res.RECOVERABLE_PURGEABLE
    jwk = json.loads(key.public_jwk)
    assert jwk["kid"] == key.key_id and "d" not in jwk
    wrapped = wrap_with_public(public_key_from_jwk(jwk), Padding.RSA_OAEP_256, DATA_KEY)
    unwrapped = await customer.vaults.unwrap(key.key_id, wrapped)
    assert unwrapped.plaintext == DATA_KEY and unwrapped.key_id == key.key_id and unwrapped.algorithm_recommended
    versionless = key.key_id.rsplit("/", 1)[0]
    round_trip = await customer.vaults.wrap(versionless, DATA_KEY, res.RSA1_5)
    assert round_trip.key_id == key.key_id and not round_trip.algorithm_recommended
    assert (await customer.vaults.unwrap(key.key_id, round_trip.ciphertext, res.RSA1_5)).plaintext == DATA_KEY


async def test_an_altered_or_foreign_blob_fails_cleanly(customer):
    key = await vault_with_key(customer)
    wrapped = bytearray((await customer.vaults.wrap(key.key_id, DATA_KEY)).ciphertext)
    wrapped[7] ^= 0x40
    messages = set()
    for blob, algorithm in (
        (bytes(wrapped), res.RSA_OAEP_256),
        (os.urandom(256), res.RSA_OAEP_256),
        (b"\x01" * 256, res.RSA_OAEP),
    ):
        with pytest.raises(InvalidArgument) as caught:
            await customer.vaults.unwrap(key.key_id, blob, algorithm)
        assert caught.value.reason is Reason.CANNOT_DECRYPT
        messages.add(caught.value.message)
    assert len(messages) == 1  # no oracle: every failure says the same


async def test_a_new_version_and_rotation(customer):
    first = await vault_with_key(customer)
    rotated = await customer.vaults.rotate_key(first.key_id)
    assert rotated.version != first.version and rotated.key_size == first.key_size
    again = await customer.vaults.create_key("kv1", "cmk", size=3072)
    versions = await customer.vaults.list_versions(first.key_id.rsplit("/", 1)[0])
    assert {v.version for v in versions.versions} == {first.version, rotated.version, again.version}
    assert (await customer.vaults.get_key(first.key_id.rsplit("/", 1)[0])).version == again.version
    old = await customer.vaults.wrap(first.key_id, DATA_KEY)
    assert old.key_id == first.key_id


# --- the authorization matrix ---------------------------------------------------------------

MATRIX = [
    ("get", "GetKey", lambda kid: pb.GetKeyRequest(name=kid)),
    ("list", "ListKeyVersions", lambda kid: pb.ListKeyVersionsRequest(parent=kid)),
    ("wrapKey", "WrapKey", lambda kid: pb.WrapKeyRequest(name=kid, algorithm=res.RSA_OAEP_256, plaintext=DATA_KEY)),
    ("unwrapKey", "UnwrapKey", lambda kid: pb.UnwrapKeyRequest(name=kid, algorithm=res.RSA_OAEP_256, ciphertext=BLOB)),
    ("encrypt", "Encrypt", lambda kid: pb.WrapKeyRequest(name=kid, algorithm=res.RSA_OAEP_256, plaintext=b"hi")),
    ("decrypt", "Decrypt", lambda kid: pb.UnwrapKeyRequest(name=kid, algorithm=res.RSA_OAEP_256, ciphertext=BLOB)),
    ("update", "UpdateKey", lambda kid: pb.UpdateKeyRequest(name=kid, attributes=res.KeyVersion(enabled=True),
                                                            update_mask=field_mask_pb2.FieldMask(paths=["enabled"]))),
    ("rotate", "RotateKey", lambda kid: pb.RotateKeyRequest(name=kid)),
    ("delete", "DeleteKey", lambda kid: pb.DeleteKeyRequest(name=kid)),
    ("create", "CreateKey", lambda kid: pb.CreateKeyRequest(parent="vaults/kv1", key_name="other")),
    ("sign", "Sign", lambda kid: pb.SignRequest(name=kid, algorithm=res.PS256, digest=DATA_KEY)),
    ("verify", "Verify", lambda kid: pb.VerifyRequest(name=kid, algorithm=res.RS256, digest=DATA_KEY,
                                                      signature=BLOB)),
]  # fmt: skip


async def _data_call(kv_channel, token: str, method: str, request):
    stub = pb_grpc.KeyServiceStub(kv_channel)
    return getattr(stub, method)(request, metadata=(("authorization", f"Bearer {token}"),))


@pytest.mark.parametrize(("permission", "method", "make"), MATRIX, ids=[m[1] for m in MATRIX])
async def test_each_data_plane_call_needs_its_permission(
    customer, operator, channel, kv_channel, clock, permission, method, make
):
    key = await vault_with_key(customer)
    app, _, app_client = await make_principal(operator, channel, clock, customer.tenant_id, "app")
    everything_else = [m[0] for m in MATRIX if m[0] != permission]
    await customer.vaults.set_access_policy("kv1", customer.tenant_id, app.object_id, everything_else)
    token = await app_client.token_for(audiences.VAULT)
    exc = await expect_rpc_error(
        await _data_call(kv_channel, token, method, make(key.key_id)), grpc.StatusCode.PERMISSION_DENIED,
        Reason.FORBIDDEN_BY_POLICY,
    )  # fmt: skip
    info = error_info_of(exc)
    assert info is not None and info.metadata["akv_error"] == "ForbiddenByPolicy"
    assert info.metadata["permission"] == permission
    await customer.vaults.update_access_policy("kv1", customer.tenant_id, app.object_id, add=[permission])
    call = await _data_call(kv_channel, token, method, make(key.key_id))
    with contextlib.suppress(grpc.aio.AioRpcError):  # past the policy, the call may still fail on its input
        await call
    assert await call.code() != grpc.StatusCode.PERMISSION_DENIED, await call.details()


async def test_a_caller_of_another_tenant_is_refused_even_with_a_matching_policy(
    customer, operator, channel, kv_channel, clock
):
    key = await vault_with_key(customer)
    other = await make_customer(operator, channel, kv_channel, clock, "Fabrikam")
    # The vault's admin lists the other tenant's admin by object id, as if in its own tenant.
    await customer.vaults.set_access_policy("kv1", customer.tenant_id, other.tenant.admin.object_id, ["all"])
    # To a caller of another tenant the vault does not exist: naming the tenant it trusts
    # would tell a stranger it exists, and whose it is (issue 12, finding 7).
    with pytest.raises(NotFound) as caught:
        await other.vaults.unwrap(key.key_id, b"x" * 256)
    assert caught.value.reason is Reason.VAULT_NOT_FOUND
    assert customer.tenant_id not in caught.value.message


async def test_a_management_token_does_not_work_on_keys(customer, kv_channel):
    key = await vault_with_key(customer)
    token = await customer.tenant.admin_client.token_for(audiences.MANAGEMENT)
    await expect_rpc_error(
        await _data_call(kv_channel, token, "GetKey", pb.GetKeyRequest(name=key.key_id)),
        grpc.StatusCode.UNAUTHENTICATED, Reason.TOKEN_AUDIENCE_INVALID,
    )  # fmt: skip


async def test_every_method_refuses_a_call_without_a_token(keyvault, kv_channel):
    services = {
        "VaultService": pb.DESCRIPTOR.services_by_name["VaultService"],
        "KeyService": pb.DESCRIPTOR.services_by_name["KeyService"],
        "AuditService": pb.DESCRIPTOR.services_by_name["AuditService"],
    }
    from google.protobuf import message_factory

    for service in services.values():
        for method in service.methods:
            request = message_factory.GetMessageClass(method.input_type)()
            path = f"/{service.full_name}/{method.name}"
            response_class = message_factory.GetMessageClass(method.output_type)
            if method.server_streaming:
                call = kv_channel.unary_stream(
                    path,
                    request_serializer=lambda m: m.SerializeToString(),
                    response_deserializer=response_class.FromString,
                )(request)
                await expect_rpc_error(call.read(), grpc.StatusCode.UNAUTHENTICATED, Reason.TOKEN_MISSING)
            else:
                call = kv_channel.unary_unary(
                    path,
                    request_serializer=lambda m: m.SerializeToString(),
                    response_deserializer=response_class.FromString,
                )(request)
                await expect_rpc_error(call, grpc.StatusCode.UNAUTHENTICATED, Reason.TOKEN_MISSING)  # fmt: skip


# --- key validity ---------------------------------------------------------------------------


def _stamp(dt) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(dt)
    return stamp


async def test_a_disabled_version_refuses_every_operation_and_others_are_unaffected(customer):
    first = await vault_with_key(customer)
    second = await customer.vaults.rotate_key(first.key_id)
    wrapped = (await customer.vaults.wrap(first.key_id, DATA_KEY)).ciphertext
    await customer.vaults.update_key(first.key_id, res.KeyVersion(enabled=False), ["enabled"])
    for attempt in (customer.vaults.wrap(first.key_id, DATA_KEY), customer.vaults.unwrap(first.key_id, wrapped)):
        with pytest.raises(FailedPrecondition) as caught:
            await attempt
        assert caught.value.reason is Reason.KEY_DISABLED and caught.value.metadata["akv_error"] == "KeyDisabled"
    assert (await customer.vaults.wrap(second.key_id, DATA_KEY)).key_id == second.key_id
    await customer.vaults.update_key(first.key_id, res.KeyVersion(enabled=True), ["enabled"])
    assert (await customer.vaults.unwrap(first.key_id, wrapped)).plaintext == DATA_KEY


async def test_outside_nbf_and_exp_wrap_is_refused_but_unwrap_still_works(customer, clock):
    key = await vault_with_key(customer)
    wrapped = (await customer.vaults.wrap(key.key_id, DATA_KEY)).ciphertext
    expires = clock.now() + timedelta(days=1)
    await customer.vaults.update_key(key.key_id, res.KeyVersion(expires=_stamp(expires)), ["expires"])
    clock.advance(timedelta(days=2))
    with pytest.raises(FailedPrecondition) as caught:
        await customer.vaults.wrap(key.key_id, DATA_KEY)
    assert caught.value.reason is Reason.KEY_EXPIRED
    assert (await customer.vaults.unwrap(key.key_id, wrapped)).plaintext == DATA_KEY

    later = await customer.vaults.create_key(
        "kv1", "future", attributes=res.KeyVersion(not_before=_stamp(clock.now() + timedelta(days=3)))
    )
    with pytest.raises(FailedPrecondition) as caught:
        await customer.vaults.wrap(later.key_id, DATA_KEY)
    assert caught.value.reason is Reason.KEY_NOT_YET_VALID
    local = wrap_with_public(public_key_from_jwk(json.loads(later.public_jwk)), Padding.RSA_OAEP_256, DATA_KEY)
    assert (await customer.vaults.unwrap(later.key_id, local)).plaintext == DATA_KEY


async def test_an_operation_outside_the_keys_operations_is_refused(customer):
    await customer.vaults.create_vault("kv1", customer.subscription_id, "rg1", "westeurope")
    key = await customer.vaults.create_key("kv1", "wrap-only", attributes=res.KeyVersion(key_operations=[res.WRAP_KEY]))
    await customer.vaults.wrap(key.key_id, DATA_KEY)
    with pytest.raises(FailedPrecondition) as caught:
        await customer.vaults.unwrap(key.key_id, b"x" * 256)
    assert caught.value.reason is Reason.KEY_OPERATION_NOT_ALLOWED


# --- soft-delete and purge ------------------------------------------------------------------


async def test_delete_recover_and_purge_under_purge_protection(customer, keyvault, clock):
    key = await vault_with_key(customer, retention_days=7, purge_protection=True)
    wrapped = (await customer.vaults.wrap(key.key_id, DATA_KEY)).ciphertext
    deleted = await customer.vaults.delete_key(key.key_id)
    assert deleted.recovery_id == "https://kv1.vault.azure.net/deletedkeys/cmk"
    assert deleted.key.recovery_level == res.RECOVERABLE
    with pytest.raises(NotFound) as caught:
        await customer.vaults.unwrap(key.key_id, wrapped)
    assert caught.value.reason is Reason.KEY_DELETED
    with pytest.raises(AlreadyExists) as exists:
        await customer.vaults.create_key("kv1", "cmk")
    assert exists.value.metadata["akv_error"] == "ObjectIsDeletedButRecoverable"
    await customer.vaults.recover_key(key.key_id)
    assert (await customer.vaults.unwrap(key.key_id, wrapped)).plaintext == DATA_KEY

    await customer.vaults.delete_key(key.key_id)
    with pytest.raises(FailedPrecondition) as protected:
        await customer.vaults.purge_key(key.key_id)
    assert protected.value.reason is Reason.PURGE_PROTECTED
    clock.advance(timedelta(days=7, seconds=1))
    await customer.vaults.purge_key(key.key_id)
    with pytest.raises(NotFound) as caught:
        await customer.vaults.unwrap(key.key_id, wrapped)
    assert caught.value.reason is Reason.KEY_NOT_FOUND
    fresh = await customer.vaults.create_key("kv1", "cmk")  # the name is free again
    assert fresh.version != key.version


async def test_the_purger_removes_expired_deleted_keys(customer, keyvault, clock):
    key = await vault_with_key(customer, retention_days=7)
    await customer.vaults.delete_key(key.key_id)
    assert len((await customer.vaults.list_deleted_keys("kv1")).deleted_keys) == 1
    clock.advance(timedelta(days=8))
    await keyvault.purge_due()
    assert not (await customer.vaults.list_deleted_keys("kv1")).deleted_keys
    # The purge is the service's own work, audited like a call (the vault's readers see it).
    records = (await customer.vaults.list_audit("kv1", page_size=100)).records
    purges = [r for r in records if r.operation == "PurgeDeletedKey"]
    assert [(p.key_name, p.client_id, p.request_id, p.result) for p in purges] == [
        ("cmk", "keyvault", "purger", "allowed")
    ]


# --- revocation -----------------------------------------------------------------------------


async def test_a_principal_disabled_in_identity_is_refused_within_a_second(
    customer, operator, channel, clock, kv_channel
):
    key = await vault_with_key(customer)
    app, _, app_client = await make_principal(operator, channel, clock, customer.tenant_id, "app")
    await customer.vaults.set_access_policy("kv1", customer.tenant_id, app.object_id, ["wrapKey", "unwrapKey"])
    app_vault = KeyVaultClient(kv_channel, app_client.token_for)
    await app_vault.wrap(key.key_id, DATA_KEY)

    async def refusal() -> Reason | None:
        try:
            await app_vault.wrap(key.key_id, DATA_KEY)
        except Unauthenticated as refused:
            return refused.reason
        return None

    await operator.disable_principal(customer.tenant_id, app.object_id)
    assert await eventually(refusal, "the disabled principal's token refused") is Reason.TOKEN_REVOKED


# --- audit ----------------------------------------------------------------------------------


async def test_allowed_and_denied_calls_are_audited_and_the_log_verifies(
    customer, operator, channel, clock, kv_channel, keyvault
):
    key = await vault_with_key(customer)
    app, _, app_client = await make_principal(operator, channel, clock, customer.tenant_id, "app")
    with pytest.raises(PermissionDenied):
        await KeyVaultClient(kv_channel, app_client.token_for).wrap(key.key_id, DATA_KEY)
    await customer.vaults.wrap(key.key_id, DATA_KEY)
    records = (await customer.vaults.list_audit("kv1", page_size=100)).records
    ops = [(r.operation, r.result, r.reason) for r in records]
    assert ("CreateVault", "allowed", "") in ops and ("CreateKey", "allowed", "") in ops
    denied = next(r for r in records if r.result == "denied")
    assert (denied.operation, denied.reason, denied.caller_object_id) == (
        "WrapKey",
        "FORBIDDEN_BY_POLICY",
        app.object_id,
    )
    allowed_wrap = [r for r in records if r.operation == "WrapKey" and r.result == "allowed"][-1]
    assert allowed_wrap.key_version == key.version and allowed_wrap.key_name == "cmk"
    assert all(r.request_id for r in records)
    operator_vaults = KeyVaultClient(kv_channel, operator.token_for)
    saved = await operator_vaults.checkpoint()
    verdict = await operator_vaults.verify_audit(saved)
    assert verdict.ok and verdict.records >= saved.count
    with pytest.raises(PermissionDenied):
        await customer.vaults.verify_audit()


async def test_a_change_commits_with_its_audit_record_or_not_at_all(customer, keyvault, monkeypatch):
    """The record of a change is written in the change's own transaction: if it cannot be,
    the change is not made either (no key version that exists but was never audited)."""
    from cmk_trio.keyvault.storage.sql import SqlKeyVaultUnitOfWork

    await customer.vaults.create_vault("kv1", customer.subscription_id, "rg1", "westeurope")

    async def failing(self: object, records: object) -> None:
        raise OSError("disk full")

    with monkeypatch.context() as patched:
        patched.setattr(SqlKeyVaultUnitOfWork, "insert_audit_records", failing)
        with pytest.raises(Unavailable) as refused:
            await customer.vaults.create_key("kv1", "cmk")
    assert refused.value.reason is Reason.AUDIT_UNAVAILABLE
    assert await keyvault.store.get_key("kv1", "cmk") is None
    created = await customer.vaults.create_key("kv1", "cmk")
    records = await keyvault.audit.query(vault_name="kv1", key_name="cmk")
    assert [(r.entry.operation, r.entry.result, r.entry.key_version) for r in records] == [
        ("CreateKey", "allowed", created.version)
    ]


# --- bad input and secrets at rest ----------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("https://kv1.vault.azure.net/secrets/cmk", Reason.KEY_URI_MALFORMED),
        ("https://kv1.evil.example/keys/cmk", Reason.KEY_URI_MALFORMED),
        ("https://kv1.vault.azure.net/keys/cmk/not-hex", Reason.KEY_URI_MALFORMED),
        ("https://kv1.vault.azure.net/keys/c_m_k", Reason.KEY_NAME_INVALID),
        ("https://k.vault.azure.net/keys/cmk", Reason.VAULT_NAME_INVALID),
        ("", Reason.FIELD_REQUIRED),
        ("x" * 600, Reason.FIELD_TOO_LONG),
    ],
)
async def test_malformed_key_identifiers_are_refused(customer, key, reason):
    await vault_with_key(customer)
    with pytest.raises(InvalidArgument) as caught:
        await customer.vaults.get_key(key)
    assert caught.value.reason is reason


async def test_bad_key_input_changes_nothing(customer, keyvault):
    await vault_with_key(customer)
    before = (await customer.vaults.list_keys("kv1")).keys
    cases = [
        (customer.vaults.create_key("kv1", "small", size=1024), Reason.KEY_SIZE_INVALID),
        (customer.vaults.import_key("kv1", "ec", EC_JWK), Reason.KEY_MATERIAL_INVALID),
        (customer.vaults.import_key("kv1", "junk", "not json"), Reason.KEY_MATERIAL_INVALID),
        (customer.vaults.wrap("https://kv1.vault.azure.net/keys/cmk", b"x" * 300), Reason.PAYLOAD_TOO_LARGE),
        (customer.vaults.unwrap("https://kv1.vault.azure.net/keys/cmk", b"x" * 5000), Reason.PAYLOAD_TOO_LARGE),
        (customer.vaults.wrap("https://kv1.vault.azure.net/keys/cmk", DATA_KEY, 9), Reason.ALGORITHM_UNKNOWN),
    ]  # fmt: skip
    for attempt, reason in cases:
        with pytest.raises(InvalidArgument) as caught:
            await attempt
        assert caught.value.reason is reason
    assert [k.key_id for k in (await customer.vaults.list_keys("kv1")).keys] == [k.key_id for k in before]


async def test_an_imported_key_works_and_no_private_key_reaches_the_database(customer, keyvault):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from tests.keyvault.test_crypto import private_jwk

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    await customer.vaults.create_vault("kv1", customer.subscription_id, "rg1", "westeurope")
    imported = await customer.vaults.import_key("kv1", "byok", json.dumps(private_jwk(private)))
    wrapped = wrap_with_public(private.public_key(), Padding.RSA_OAEP_256, DATA_KEY)
    assert (await customer.vaults.unwrap(imported.key_id, wrapped)).plaintext == DATA_KEY
    generated = await customer.vaults.create_key("kv1", "made-here")
    assert generated.key_id
    der = private.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    stored = await raw_database.stored_bytes(keyvault.config.database_location, "keyvault")
    assert der[-64:] not in stored and pem[40:120] not in stored and b"PRIVATE KEY" not in stored
    d = private.private_numbers().d.to_bytes(256, "big")
    assert d[:32] not in stored


async def test_parsed_private_keys_are_kept_for_the_versions_used_last_only(customer, keyvault, monkeypatch):
    """The cache of parsed private keys is bounded: a vault with more versions than it holds
    still unwraps with every one, reparsing the ones it let go."""
    from cmk_trio.keyvault import key_material

    monkeypatch.setattr(key_material, "MATERIAL_CACHE", 2)
    first = await vault_with_key(customer)
    versions = [first, *[await customer.vaults.rotate_key(first.key_id) for _ in range(3)]]
    for _ in range(2):
        for version in versions:
            public = public_key_from_jwk(json.loads(version.public_jwk))
            wrapped = wrap_with_public(public, Padding.RSA_OAEP_256, DATA_KEY)
            assert (await customer.vaults.unwrap(version.key_id, wrapped)).plaintext == DATA_KEY
            assert len(keyvault.keys.materials) <= 2


@pytest.mark.parametrize("name", ["fuzzkey\x00", "a\x00b"])
async def test_a_name_with_nul_is_refused_and_audited_on_either_engine(customer, name):
    """A key or secret name a caller sent is kept in the call's audit record, a refused one
    too; one with NUL (which PostgreSQL's text cannot hold) made the record, and so the call,
    UNAVAILABLE on PostgreSQL (found by the fuzzer). Now the name is refused for what it is,
    and the record keeps it with U+FFFD in place of each NUL."""
    await customer.vaults.create_vault("kv1", customer.subscription_id, "rg1", "westeurope")
    for attempt in (customer.vaults.create_key("kv1", name), customer.vaults.set_secret("kv1", name, "v")):
        with pytest.raises(InvalidArgument):
            await attempt
    records = (await customer.vaults.list_audit("kv1", page_size=100)).records
    shown = name.replace("\x00", "\ufffd")
    assert [(r.operation, r.key_name, r.result) for r in records if r.key_name == shown] == [
        ("CreateKey", shown, "denied"),
        ("SetSecret", shown, "denied"),
    ]


@pytest.mark.parametrize(("field", "value", "reason"), [("caller_object_id", "\x00", Reason.UUID_MALFORMED),
                                                      ("caller_object_id", "not-an-id", Reason.UUID_MALFORMED),
                                                      ("key_name", "a\x00b", Reason.KEY_NAME_INVALID)])  # fmt: skip
async def test_the_audit_filters_are_checked_before_the_database_sees_them(customer, field, value, reason):
    """A NUL in ListAuditRecords' caller filter reached PostgreSQL, which refused the statement:
    UNAVAILABLE, and an error logged (the PostgreSQL fuzz found it). The filters are now an
    object id and a key name, as the records hold them, refused otherwise on either engine."""
    await customer.vaults.create_vault("kv1", customer.subscription_id, "rg1", "westeurope")
    with pytest.raises(InvalidArgument) as refused:
        await customer.vaults.list_audit("kv1", **{field: value})
    assert refused.value.reason is reason
    mine = await customer.vaults.list_audit("kv1", caller_object_id=customer.tenant.admin.object_id, key_name="none")
    assert list(mine.records) == []
