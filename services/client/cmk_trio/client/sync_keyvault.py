"""The synchronous KeyVaultClient: generated from cmk_trio.client.keyvault by
scripts/gen_sync_clients.py. Do not edit; `python scripts/gen_sync_clients.py` makes it again."""

# @generated

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping

from cmk_trio.client.blocking import Blocking
from cmk_trio.client.keyvault import KeyVaultClient
from cmk_trio.proto.keyvault.v1 import keyvault_service_pb2 as pb
from cmk_trio.proto.keyvault.v1 import resources_pb2 as res


class SyncKeyVaultClient(Blocking[KeyVaultClient]):
    """The key vault's API. `tokens(audience)` returns a bearer token for an audience
    (an IdentityClient's `token_for` does).

    (Synchronous: each call blocks.)"""

    def with_token(self, token: str) -> KeyVaultClient:
        """This client with `token` for each call: a service acting for one of its resources,
        with the token it got for that resource's identity. The channel and stubs are
        shared; only this small view is made."""
        return self._inner.with_token(token)

    def create_vault(
        self,
        name: str,
        subscription_id: str,
        resource_group: str,
        location: str,
        *,
        soft_delete: bool = True,
        retention_days: int = 90,
        purge_protection: bool = False,
        sku: str = "",
        tags: Mapping[str, str] | None = None,
        access_policies: Iterable[res.AccessPolicy] | None = None,
    ) -> res.Vault:
        """A new vault. Its creator gets an entry with every permission, unless
        `access_policies` is given: then those are its entries, and only those."""
        return self._runner.run(
            self._inner.create_vault(
                name,
                subscription_id,
                resource_group,
                location,
                soft_delete=soft_delete,
                retention_days=retention_days,
                purge_protection=purge_protection,
                sku=sku,
                tags=tags,
                access_policies=access_policies,
            )
        )

    def check_vault_name(self, name: str) -> pb.CheckVaultNameAvailabilityResponse:
        """Whether a vault could be made under `name` now (names are global), and why not."""
        return self._runner.run(self._inner.check_vault_name(name))

    def get_vault(self, name: str) -> res.Vault:
        return self._runner.run(self._inner.get_vault(name))

    def list_vaults(self, subscription_id: str, *, page_token: str = "") -> pb.ListVaultsResponse:
        return self._runner.run(self._inner.list_vaults(subscription_id, page_token=page_token))

    def list_deleted_vaults(self, subscription_id: str, *, page_token: str = "") -> pb.ListDeletedVaultsResponse:
        return self._runner.run(self._inner.list_deleted_vaults(subscription_id, page_token=page_token))

    def update_vault(
        self,
        name: str,
        *,
        purge_protection: bool | None = None,
        soft_delete: bool | None = None,
        sku: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> res.Vault:
        """Turn purge protection or soft-delete on, set the pricing tier, replace the tags."""
        return self._runner.run(
            self._inner.update_vault(
                name, purge_protection=purge_protection, soft_delete=soft_delete, sku=sku, tags=tags
            )
        )

    def delete_vault(self, name: str) -> None:
        self._runner.run(self._inner.delete_vault(name))

    def recover_vault(self, name: str) -> res.Vault:
        return self._runner.run(self._inner.recover_vault(name))

    def purge_vault(self, name: str) -> None:
        self._runner.run(self._inner.purge_vault(name))

    def set_access_policy(
        self, vault: str, tenant_id: str, object_id: str, permissions: Iterable[str], secrets: Iterable[str] = ()
    ) -> res.Vault:
        """Replace a principal's entry: `permissions` on keys, `secrets` on secrets."""
        return self._runner.run(self._inner.set_access_policy(vault, tenant_id, object_id, permissions, secrets))

    def replace_access_policies(self, vault: str, policies: Iterable[res.AccessPolicy]) -> res.Vault:
        """Make the vault's entries exactly `policies`, all or nothing."""
        return self._runner.run(self._inner.replace_access_policies(vault, policies))

    def update_access_policy(
        self,
        vault: str,
        tenant_id: str,
        object_id: str,
        *,
        add: Iterable[str] = (),
        remove: Iterable[str] = (),
        add_secrets: Iterable[str] = (),
        remove_secrets: Iterable[str] = (),
    ) -> res.Vault:
        return self._runner.run(
            self._inner.update_access_policy(
                vault,
                tenant_id,
                object_id,
                add=add,
                remove=remove,
                add_secrets=add_secrets,
                remove_secrets=remove_secrets,
            )
        )

    def remove_access_policy(self, vault: str, object_id: str) -> res.Vault:
        return self._runner.run(self._inner.remove_access_policy(vault, object_id))

    def create_key(
        self,
        vault: str,
        name: str,
        *,
        size: int = 2048,
        curve: res.KeyCurve.ValueType | None = None,
        attributes: res.KeyVersion | None = None,
    ) -> res.KeyVersion:
        """An RSA key of `size` bits, or with `curve` (res.P_256, P_384, P_521) an EC key."""
        return self._runner.run(self._inner.create_key(vault, name, size=size, curve=curve, attributes=attributes))

    def import_key(self, vault: str, name: str, jwk_json: str) -> res.KeyVersion:
        return self._runner.run(self._inner.import_key(vault, name, jwk_json))

    def get_key(self, key: str) -> res.KeyVersion:
        return self._runner.run(self._inner.get_key(key))

    def list_keys(self, vault: str, *, page_token: str = "") -> pb.ListKeysResponse:
        return self._runner.run(self._inner.list_keys(vault, page_token=page_token))

    def list_versions(self, key: str, *, page_token: str = "") -> pb.ListKeyVersionsResponse:
        return self._runner.run(self._inner.list_versions(key, page_token=page_token))

    def update_key(self, key: str, attributes: res.KeyVersion, paths: Iterable[str]) -> res.KeyVersion:
        return self._runner.run(self._inner.update_key(key, attributes, paths))

    def rotate_key(self, key: str) -> res.KeyVersion:
        return self._runner.run(self._inner.rotate_key(key))

    def wrap(self, key: str, plaintext: bytes, algorithm: int = res.RSA_OAEP_256) -> pb.WrapKeyResponse:
        return self._runner.run(self._inner.wrap(key, plaintext, algorithm))

    def unwrap(self, key: str, ciphertext: bytes, algorithm: int = res.RSA_OAEP_256) -> pb.UnwrapKeyResponse:
        return self._runner.run(self._inner.unwrap(key, ciphertext, algorithm))

    def sign(self, key: str, algorithm: res.SignatureAlgorithm.ValueType, digest: bytes) -> pb.SignResponse:
        return self._runner.run(self._inner.sign(key, algorithm, digest))

    def verify(
        self, key: str, algorithm: res.SignatureAlgorithm.ValueType, digest: bytes, signature: bytes
    ) -> pb.VerifyResponse:
        return self._runner.run(self._inner.verify(key, algorithm, digest, signature))

    def delete_key(self, key: str) -> res.DeletedKey:
        return self._runner.run(self._inner.delete_key(key))

    def get_deleted_key(self, key: str) -> res.DeletedKey:
        return self._runner.run(self._inner.get_deleted_key(key))

    def list_deleted_keys(self, vault: str) -> pb.ListDeletedKeysResponse:
        return self._runner.run(self._inner.list_deleted_keys(vault))

    def recover_key(self, key: str) -> res.KeyVersion:
        return self._runner.run(self._inner.recover_key(key))

    def backup_key(self, key: str) -> bytes:
        return self._runner.run(self._inner.backup_key(key))

    def restore_key(self, vault: str, backup: bytes) -> res.KeyVersion:
        return self._runner.run(self._inner.restore_key(vault, backup))

    def purge_key(self, key: str) -> None:
        self._runner.run(self._inner.purge_key(key))

    def set_secret(self, vault: str, name: str, value: str, *, attributes: res.Secret | None = None) -> res.Secret:
        return self._runner.run(self._inner.set_secret(vault, name, value, attributes=attributes))

    def get_secret(self, secret: str) -> res.Secret:
        return self._runner.run(self._inner.get_secret(secret))

    def list_secrets(self, vault: str, *, page_token: str = "") -> pb.ListSecretsResponse:
        return self._runner.run(self._inner.list_secrets(vault, page_token=page_token))

    def list_secret_versions(self, secret: str, *, page_token: str = "") -> pb.ListSecretVersionsResponse:
        return self._runner.run(self._inner.list_secret_versions(secret, page_token=page_token))

    def update_secret(self, secret: str, attributes: res.Secret, paths: Iterable[str]) -> res.Secret:
        return self._runner.run(self._inner.update_secret(secret, attributes, paths))

    def delete_secret(self, secret: str) -> res.DeletedSecret:
        return self._runner.run(self._inner.delete_secret(secret))

    def get_deleted_secret(self, secret: str) -> res.DeletedSecret:
        return self._runner.run(self._inner.get_deleted_secret(secret))

    def list_deleted_secrets(self, vault: str) -> pb.ListDeletedSecretsResponse:
        return self._runner.run(self._inner.list_deleted_secrets(vault))

    def recover_secret(self, secret: str) -> res.Secret:
        return self._runner.run(self._inner.recover_secret(secret))

    def purge_secret(self, secret: str) -> None:
        self._runner.run(self._inner.purge_secret(secret))

    def backup_secret(self, secret: str) -> bytes:
        return self._runner.run(self._inner.backup_secret(secret))

    def restore_secret(self, vault: str, backup: bytes) -> res.Secret:
        return self._runner.run(self._inner.restore_secret(vault, backup))

    def list_audit(
        self,
        vault: str = "",
        *,
        result: str = "",
        page_token: str = "",
        page_size: int = 0,
        key_name: str = "",
        caller_object_id: str = "",
    ) -> pb.ListAuditRecordsResponse:
        return self._runner.run(
            self._inner.list_audit(
                vault,
                result=result,
                page_token=page_token,
                page_size=page_size,
                key_name=key_name,
                caller_object_id=caller_object_id,
            )
        )

    def checkpoint(self) -> res.AuditCheckpoint:
        return self._runner.run(self._inner.checkpoint())

    def verify_audit(self, checkpoint: res.AuditCheckpoint | None = None) -> pb.VerifyAuditLogResponse:
        return self._runner.run(self._inner.verify_audit(checkpoint))

    def watch_events(
        self, after_sequence: int = 0, on_heartbeat: Callable[[], None] | None = None
    ) -> Iterator[res.Event]:
        """The vault's event stream from `after_sequence`. Heartbeats (sent once the replay is
        current, and when idle) are not yielded: `on_heartbeat` is told of them."""
        yield from self._iterate(self._inner.watch_events(after_sequence, on_heartbeat))

    def stream_audit(self, after_sequence: int = 0) -> Iterator[res.AuditRecord]:
        yield from self._iterate(self._inner.stream_audit(after_sequence))
