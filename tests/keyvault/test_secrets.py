"""Secrets over gRPC: values with versions on the vaults, access policies (their secret half),
audit, soft-delete, purge protection and clock that keys use; a value is never in the database
file, a log line or an audit record in the clear, and a refused call changes nothing."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from google.protobuf import timestamp_pb2

from cmk_trio.client.keyvault import KeyVaultClient
from cmk_trio.proto.keyvault.v1 import resources_pb2 as res
from cmk_trio.rpckit.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from cmk_trio.rpckit.reasons import Reason
from tests import raw_database
from tests.identity.helpers import make_principal
from tests.keyvault.conftest import make_customer

VALUE = "Server=db;Password=correct-horse-battery-staple-7f3a"


async def _vault(customer, name: str = "kv1", **options) -> None:
    await customer.vaults.create_vault(name, customer.subscription_id, "rg1", "westeurope", **options)


async def test_a_secrets_life_and_its_value_nowhere_in_the_clear(customer, keyvault, caplog):
    caplog.set_level(logging.DEBUG)
    await _vault(customer)
    labelled = res.Secret(content_type="text/plain", tags={"app": "web"})
    first = await customer.vaults.set_secret("kv1", "db-password", VALUE, attributes=labelled)
    assert first.secret_id == f"https://kv1.vault.azure.net/secrets/db-password/{first.version}"
    assert first.value == VALUE and first.enabled and first.recovery_level == res.RECOVERABLE_PURGEABLE
    second = await customer.vaults.set_secret("kv1", "DB-Password", VALUE + "-rotated")  # names compare without case
    assert second.secret_id.startswith("https://kv1.vault.azure.net/secrets/db-password/")
    got = await customer.vaults.get_secret("vaults/kv1/secrets/db-password")
    assert (got.version, got.value) == (second.version, VALUE + "-rotated")
    older = await customer.vaults.get_secret(first.secret_id)
    assert (older.value, older.content_type, dict(older.tags)) == (VALUE, "text/plain", {"app": "web"})
    listed = (await customer.vaults.list_secrets("kv1")).secrets
    assert [(s.version, s.value) for s in listed] == [(second.version, "")]  # listings carry no values
    versions = (await customer.vaults.list_secret_versions("https://kv1.vault.azure.net/secrets/db-password")).versions
    assert {v.version for v in versions} == {first.version, second.version} and not any(v.value for v in versions)

    # A disabled version's value is refused; its attributes still list.
    updated = await customer.vaults.update_secret(first.secret_id, res.Secret(enabled=False, tags={"app": "old"}),
                                                  ["enabled", "tags"])  # fmt: skip
    assert not updated.enabled and dict(updated.tags) == {"app": "old"} and updated.value == ""
    with pytest.raises(FailedPrecondition) as disabled:
        await customer.vaults.get_secret(first.secret_id)
    assert disabled.value.reason is Reason.SECRET_DISABLED and disabled.value.metadata["akv_error"] == "SecretDisabled"

    # nbf and exp are kept and shown, and (as Key Vault does for secrets) not enforced on reads.
    past = timestamp_pb2.Timestamp(seconds=1)
    expired = await customer.vaults.update_secret(second.secret_id, res.Secret(expires=past), ["expires"])
    assert expired.expires.seconds == 1
    assert (await customer.vaults.get_secret(second.secret_id)).value == VALUE + "-rotated"

    stored = await raw_database.stored_bytes(keyvault.config.database_location, "keyvault")
    assert VALUE.encode() not in stored and b"correct-horse" not in stored
    audit = (await customer.vaults.list_audit("kv1", page_size=200)).records
    assert {"SetSecret", "GetSecret", "ListSecrets", "ListSecretVersions", "UpdateSecret"} <= {
        r.operation for r in audit
    }
    sets = [r for r in audit if r.operation == "SetSecret"]
    assert [(r.key_name.lower(), r.key_version) for r in sets] == [
        ("db-password", first.version), ("db-password", second.version)]  # fmt: skip
    assert not any("correct-horse" in str(r) for r in audit)
    assert "correct-horse" not in caplog.text


async def test_soft_delete_recovery_purge_protection_and_the_purger(customer, keyvault, clock):
    await _vault(customer, retention_days=7, purge_protection=True)
    made = await customer.vaults.set_secret("kv1", "api-key", VALUE)
    deleted = await customer.vaults.delete_secret("vaults/kv1/secrets/api-key")
    assert deleted.recovery_id == "https://kv1.vault.azure.net/deletedsecrets/api-key"
    assert deleted.purge_time.ToSeconds() - deleted.delete_time.ToSeconds() == 7 * 86400
    assert deleted.secret.value == ""
    with pytest.raises(NotFound) as gone:
        await customer.vaults.get_secret(made.secret_id)
    assert gone.value.reason is Reason.SECRET_DELETED
    with pytest.raises(AlreadyExists) as reused:
        await customer.vaults.set_secret("kv1", "api-key", "other")
    assert reused.value.reason is Reason.SECRET_DELETED_BUT_RECOVERABLE
    assert reused.value.metadata["akv_error"] == "ObjectIsDeletedButRecoverable"
    assert [d.recovery_id for d in (await customer.vaults.list_deleted_secrets("kv1")).deleted_secrets] == [
        deleted.recovery_id
    ]
    await customer.vaults.recover_secret("vaults/kv1/secrets/api-key")
    assert (await customer.vaults.get_secret(made.secret_id)).value == VALUE

    await customer.vaults.delete_secret(made.secret_id)
    with pytest.raises(FailedPrecondition) as protected:
        await customer.vaults.purge_secret(made.secret_id)
    assert protected.value.reason is Reason.PURGE_PROTECTED
    clock.advance(timedelta(days=8))
    await keyvault.purge_due()
    assert not (await customer.vaults.list_deleted_secrets("kv1")).deleted_secrets
    purges = [r for r in (await customer.vaults.list_audit("kv1", page_size=200)).records
              if r.operation == "PurgeDeletedSecret"]  # fmt: skip
    assert (purges[0].key_name, purges[0].result, purges[0].reason) == ("api-key", "denied", "PURGE_PROTECTED")
    assert [(p.key_name, p.client_id, p.request_id) for p in purges[1:]] == [("api-key", "keyvault", "purger")]
    fresh = await customer.vaults.set_secret("kv1", "api-key", "new")  # the name is free again
    assert fresh.version != made.version


async def test_secret_permissions_are_their_own_half_of_the_policy(customer, operator, channel, kv_channel, clock):
    await _vault(customer)
    made = await customer.vaults.set_secret("kv1", "s", VALUE)
    app, _, app_client = await make_principal(operator, channel, clock, customer.tenant_id, "reader")
    as_app = KeyVaultClient(kv_channel, app_client.token_for)
    # Every key permission, no secret one: no secret.
    await customer.vaults.set_access_policy("kv1", customer.tenant_id, app.object_id, ["all"])
    with pytest.raises(PermissionDenied) as refused:
        await as_app.get_secret(made.secret_id)
    assert refused.value.reason is Reason.FORBIDDEN_BY_POLICY
    assert (refused.value.metadata["permission"], refused.value.metadata["on"]) == ("get", "secrets")
    assert "secrets get permission" in refused.value.message
    vault = await customer.vaults.update_access_policy("kv1", customer.tenant_id, app.object_id, add_secrets=["get"])
    entry = next(p for p in vault.access_policies if p.object_id == app.object_id)
    assert list(entry.secret_permissions) == ["get"] and list(entry.key_permissions) == ["all"]
    assert (await as_app.get_secret(made.secret_id)).value == VALUE
    with pytest.raises(PermissionDenied) as refused:
        await as_app.set_secret("kv1", "s", "overwritten")
    assert refused.value.metadata["permission"] == "set"
    with pytest.raises(PermissionDenied):
        await as_app.list_secrets("kv1")
    # Taking the secret permission away revokes at the next call; the key half is untouched.
    await customer.vaults.update_access_policy("kv1", customer.tenant_id, app.object_id, remove_secrets=["get"])
    with pytest.raises(PermissionDenied):
        await as_app.get_secret(made.secret_id)
    with pytest.raises(InvalidArgument) as unknown:
        await customer.vaults.set_access_policy("kv1", customer.tenant_id, app.object_id, [], ["get", "wrapKey"])
    assert unknown.value.reason is Reason.PERMISSION_UNKNOWN and "secret permission" in unknown.value.message
    assert (await customer.vaults.get_secret(made.secret_id)).value == VALUE  # nothing changed


async def test_a_stranger_meets_a_missing_vault_and_bad_input_changes_nothing(
    customer, operator, channel, kv_channel, clock
):
    await _vault(customer)
    made = await customer.vaults.set_secret("kv1", "s", VALUE)
    fabrikam = await make_customer(operator, channel, kv_channel, clock, "Fabrikam")
    with pytest.raises(NotFound) as hidden:
        await fabrikam.vaults.get_secret(made.secret_id)
    assert hidden.value.reason is Reason.VAULT_NOT_FOUND
    for attempt, reason in (
        (customer.vaults.set_secret("kv1", "bad_name", "x"), Reason.SECRET_NAME_INVALID),
        (customer.vaults.set_secret("kv1", "big", "x" * (25 * 1024 + 1)), Reason.SECRET_TOO_LARGE),
        (customer.vaults.set_secret("kv1", "ct", "x", attributes=res.Secret(content_type="c" * 256)),
         Reason.FIELD_TOO_LONG),
        (customer.vaults.get_secret("https://kv1.vault.azure.net/keys/s"), Reason.SECRET_URI_MALFORMED),
        (customer.vaults.get_secret(made.secret_id[:-1]), Reason.KEY_URI_MALFORMED),  # (a version is 32 hex digits)
    ):  # fmt: skip
        with pytest.raises(InvalidArgument) as caught:
            await attempt
        assert caught.value.reason is reason
    assert [s.version for s in (await customer.vaults.list_secrets("kv1")).secrets] == [made.version]


async def test_a_backup_brings_a_purged_secret_back_with_every_version(customer, operator, channel, kv_channel, clock):
    await _vault(customer)
    first = await customer.vaults.set_secret("kv1", "conn", VALUE, attributes=res.Secret(content_type="dsn"))
    second = await customer.vaults.set_secret("kv1", "conn", VALUE + "2")
    blob = await customer.vaults.backup_secret(first.secret_id)
    assert VALUE.encode() not in blob and b"conn" not in blob
    await customer.vaults.delete_secret(first.secret_id)
    await customer.vaults.purge_secret(first.secret_id)
    restored = await customer.vaults.restore_secret("kv1", blob)
    assert restored.version == second.version and restored.value == ""
    assert (await customer.vaults.get_secret("vaults/kv1/secrets/conn")).value == VALUE + "2"
    old = await customer.vaults.get_secret(first.secret_id)
    assert (old.value, old.content_type) == (VALUE, "dsn")
    with pytest.raises(AlreadyExists) as exists:
        await customer.vaults.restore_secret("kv1", blob)
    assert exists.value.reason is Reason.SECRET_EXISTS
    # A key's backup is not a secret's, and another subscription's vault takes neither.
    key = await customer.vaults.create_key("kv1", "k")
    with pytest.raises(InvalidArgument) as invalid:
        await customer.vaults.restore_secret("kv1", await customer.vaults.backup_key(key.key_id))
    assert invalid.value.reason is Reason.BACKUP_INVALID
    fabrikam = await make_customer(operator, channel, kv_channel, clock, "Fabrikam")
    await fabrikam.vaults.create_vault("fab-kv", fabrikam.subscription_id, "rg1", "westeurope")
    with pytest.raises(InvalidArgument) as elsewhere:
        await fabrikam.vaults.restore_secret("fab-kv", blob)
    assert elsewhere.value.reason is Reason.BACKUP_OTHER_SUBSCRIPTION
