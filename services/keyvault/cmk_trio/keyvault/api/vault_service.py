"""cmk.keyvault.v1.VaultService: vaults and their access policies."""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf import empty_pb2

from cmk_trio.keyvault.api.convert import Converter
from cmk_trio.keyvault.api.trail import AuditTrail
from cmk_trio.keyvault.vaults import PolicyInput, Vaults
from cmk_trio.proto.keyvault.v1 import keyvault_service_pb2 as pb
from cmk_trio.proto.keyvault.v1 import keyvault_service_pb2_grpc as pb_grpc
from cmk_trio.proto.keyvault.v1 import resources_pb2 as res
from cmk_trio.rpckit.storage import decode_page_token, encode_page_token, page_size_of
from cmk_trio.rpckit.types import Context
from cmk_trio.rpckit.validation import mask_paths, subscription_parent


class VaultApi(pb_grpc.VaultServiceServicer):
    """cmk.keyvault.v1.VaultService."""

    def __init__(self, vaults: Vaults, convert: Converter, trail: AuditTrail) -> None:
        self._v = vaults
        self._c = convert
        self._trail = trail

    async def CreateVault(self, request: pb.CreateVaultRequest, context: Context) -> res.Vault:
        async with self._trail.call("CreateVault") as scope:
            v = request.vault
            scope.vault_name = v.vault_name[:64]
            created = await self._v.create(
                scope.authenticated,
                name=v.vault_name,
                subscription_id=v.subscription_id,
                resource_group=v.resource_group,
                location=v.location,
                soft_delete=v.soft_delete_enabled if v.HasField("soft_delete_enabled") else None,
                retention_days=v.soft_delete_retention_days,
                purge_protection=v.purge_protection_enabled,
                sku=v.sku,
                tags=dict(v.tags),
                tenant_id=v.tenant_id,
                access_policies=_entries(v.access_policies) if request.explicit_access_policies else None,
            )
            return self._c.vault(created)

    async def GetVault(self, request: pb.GetVaultRequest, context: Context) -> res.Vault:
        async with self._trail.call("GetVault") as scope:
            return self._c.vault(await self._v.get(scope.authenticated, scope.vault(request.name)))

    async def _list(
        self, operation: str, parent: str, size: int, token: str, deleted: bool
    ) -> tuple[list[res.Vault], str]:
        async with self._trail.call(operation) as scope:
            subscription_id = subscription_parent("parent", parent)
            after, limit = decode_page_token("vaults", token), page_size_of(size)
            found = await self._v.list_vaults(
                scope.authenticated, subscription_id, deleted=deleted, after=after, limit=limit
            )
            next_token = encode_page_token("vaults", found[-1].vault_name) if len(found) == limit else ""
            return [self._c.vault(v) for v in found], next_token

    async def ListVaults(self, request: pb.ListVaultsRequest, context: Context) -> pb.ListVaultsResponse:
        vaults, next_token = await self._list(
            "ListVaults", request.parent, request.page_size, request.page_token, False
        )
        return pb.ListVaultsResponse(vaults=vaults, next_page_token=next_token)

    async def ListDeletedVaults(
        self, request: pb.ListDeletedVaultsRequest, context: Context
    ) -> pb.ListDeletedVaultsResponse:
        vaults, next_token = await self._list(
            "ListDeletedVaults", request.parent, request.page_size, request.page_token, True
        )
        return pb.ListDeletedVaultsResponse(vaults=vaults, next_page_token=next_token)

    async def UpdateVault(self, request: pb.UpdateVaultRequest, context: Context) -> res.Vault:
        async with self._trail.call("UpdateVault") as scope:
            name = scope.vault(request.vault.name, "vault.name")
            paths = mask_paths(request.update_mask, {"purge_protection_enabled", "soft_delete_enabled", "sku", "tags"})
            v = request.vault
            updated = await self._v.update(
                scope.authenticated,
                name,
                soft_delete=v.soft_delete_enabled if "soft_delete_enabled" in paths else None,
                purge_protection=v.purge_protection_enabled if "purge_protection_enabled" in paths else None,
                sku=v.sku if "sku" in paths else None,
                tags=dict(v.tags) if "tags" in paths else None,
            )
            return self._c.vault(updated)

    async def DeleteVault(self, request: pb.DeleteVaultRequest, context: Context) -> empty_pb2.Empty:
        async with self._trail.call("DeleteVault") as scope:
            await self._v.delete(scope.authenticated, scope.vault(request.name))
            return empty_pb2.Empty()

    async def RecoverVault(self, request: pb.RecoverVaultRequest, context: Context) -> res.Vault:
        async with self._trail.call("RecoverVault") as scope:
            return self._c.vault(await self._v.recover(scope.authenticated, scope.vault(request.name)))

    async def PurgeVault(self, request: pb.PurgeVaultRequest, context: Context) -> empty_pb2.Empty:
        async with self._trail.call("PurgeVault") as scope:
            await self._v.purge(scope.authenticated, scope.vault(request.name))
            return empty_pb2.Empty()

    async def SetAccessPolicy(self, request: pb.SetAccessPolicyRequest, context: Context) -> res.Vault:
        async with self._trail.call("SetAccessPolicy") as scope:
            p = request.access_policy
            vault = await self._v.set_policy(
                scope.authenticated, scope.vault(request.name), p.tenant_id, p.object_id, p.key_permissions,
                p.secret_permissions,
            )  # fmt: skip
            return self._c.vault(vault)

    async def UpdateAccessPolicy(self, request: pb.UpdateAccessPolicyRequest, context: Context) -> res.Vault:
        async with self._trail.call("UpdateAccessPolicy") as scope:
            vault = await self._v.update_policy(
                scope.authenticated, scope.vault(request.name), request.tenant_id, request.object_id,
                request.add_permissions, request.remove_permissions,
                request.add_secret_permissions, request.remove_secret_permissions,
            )  # fmt: skip
            return self._c.vault(vault)

    async def RemoveAccessPolicy(self, request: pb.RemoveAccessPolicyRequest, context: Context) -> res.Vault:
        async with self._trail.call("RemoveAccessPolicy") as scope:
            vault = await self._v.remove_policy(scope.authenticated, scope.vault(request.name), request.object_id)
            return self._c.vault(vault)

    async def ReplaceAccessPolicies(self, request: pb.ReplaceAccessPoliciesRequest, context: Context) -> res.Vault:
        async with self._trail.call("ReplaceAccessPolicies") as scope:
            vault = await self._v.replace_policies(
                scope.authenticated, scope.vault(request.name), _entries(request.access_policies)
            )
            return self._c.vault(vault)

    async def CheckVaultNameAvailability(
        self, request: pb.CheckVaultNameAvailabilityRequest, context: Context
    ) -> pb.CheckVaultNameAvailabilityResponse:
        async with self._trail.call("CheckVaultNameAvailability") as scope:
            scope.vault_name = request.vault_name[:64]
            available, reason, message = await self._v.name_available(request.vault_name)
            return pb.CheckVaultNameAvailabilityResponse(
                name_available=available, reason=reason.value if reason else "", message=message
            )


def _entries(policies: Iterable[res.AccessPolicy]) -> list[PolicyInput]:
    return [(p.tenant_id, p.object_id, p.key_permissions, p.secret_permissions) for p in policies]
