"""Microsoft.KeyVault: vaults, their access policies, deleted vaults and name availability,
over the key vault's VaultService, with the caller's token.

    PUT /subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/{vault}
    {"location": "westeurope", "properties": {"tenantId": "...", "sku": {"family": "A", "name":
     "standard"}, "accessPolicies": [...], "enablePurgeProtection": true}}

A PUT makes the vault with exactly the access policies it lists (CreateVault's explicit list;
the creator gets none unless listed, as ARM does it), or, for a vault that exists, sets what
it says: sku and tags, soft-delete and purge protection (each only ever on), and the whole
list of access policies (ReplaceAccessPolicies), so that a refused change changes nothing of
the policies. `createMode: recover` recovers a soft-deleted vault. ARM checks that the
resource group exists before a vault is made in it, and so does this door.

What ARM offers that the trio does not: Azure RBAC for the data plane
(`enableRbacAuthorization: true`), network rules and private endpoints, and the vault's use
for deployments and disk encryption; a request that asks for them is refused with what to use
instead, never silently accepted."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import cast

from aiohttp import web
from google.protobuf import field_mask_pb2

from cmk_trio.arm.envelope import ArmError, iso_time, json_object, listing
from cmk_trio.arm.front import Services, ask, body_of, require_write
from cmk_trio.arm.lookups import all_vaults, group_exists, required_location
from cmk_trio.arm.routing import Params, Router
from cmk_trio.proto.identity.v1 import identity_service_pb2_grpc as igrpc
from cmk_trio.proto.keyvault.v1 import keyvault_service_pb2 as kpb
from cmk_trio.proto.keyvault.v1 import keyvault_service_pb2_grpc as kgrpc
from cmk_trio.proto.keyvault.v1 import resources_pb2 as kres
from cmk_trio.rpckit import errors
from cmk_trio.rpckit.reasons import Reason

PROVIDER = "Microsoft.KeyVault"
VAULTS_IN_GROUP = "/subscriptions/{subscription}/resourcegroups/{group}/providers/Microsoft.KeyVault/vaults"
VAULT = VAULTS_IN_GROUP + "/{vault}"
IN_SUBSCRIPTION = "/subscriptions/{subscription}/providers/Microsoft.KeyVault"
NOT_SERVED = {
    "enableRbacAuthorization": "Azure RBAC for the data plane is not served: the vault's access policies decide",
    "enabledForDeployment": "virtual machine deployments are not served",
    "enabledForDiskEncryption": "disk encryption is not served",
    "enabledForTemplateDeployment": "template deployments are not served",
}
"""Properties that may be given only as false."""


def policy_json(p: kres.AccessPolicy) -> dict[str, object]:
    return {"tenantId": p.tenant_id, "objectId": p.object_id,
            "permissions": {"keys": list(p.key_permissions), "secrets": list(p.secret_permissions),
                            "certificates": [], "storage": []}}  # fmt: skip


def vault_json(v: kres.Vault) -> dict[str, object]:
    return {
        "id": v.resource_id,
        "name": v.vault_name,
        "type": "Microsoft.KeyVault/vaults",
        "location": v.location,
        "tags": dict(v.tags),
        "properties": {
            "tenantId": v.tenant_id, "sku": {"family": "A", "name": v.sku or "standard"},
            "accessPolicies": [policy_json(p) for p in v.access_policies], "vaultUri": v.vault_uri,
            "enabledForDeployment": False, "enabledForDiskEncryption": False, "enabledForTemplateDeployment": False,
            "enableSoftDelete": v.soft_delete_enabled, "softDeleteRetentionInDays": v.soft_delete_retention_days,
            "enableRbacAuthorization": False,
            **({"enablePurgeProtection": True} if v.purge_protection_enabled else {}),
            "provisioningState": "Succeeded", "publicNetworkAccess": "Enabled",
        },
    }  # fmt: skip


def deleted_json(v: kres.Vault) -> dict[str, object]:
    return {
        "id": f"/subscriptions/{v.subscription_id}/providers/Microsoft.KeyVault/locations/{v.location}"
              f"/deletedVaults/{v.vault_name}",
        "name": v.vault_name,
        "type": "Microsoft.KeyVault/deletedVaults",
        "properties": {"vaultId": v.resource_id, "location": v.location, "deletionDate": iso_time(v.delete_time),
                       "scheduledPurgeDate": iso_time(v.purge_time), "tags": dict(v.tags),
                       "purgeProtectionEnabled": v.purge_protection_enabled},
    }  # fmt: skip


def _strings(value: object, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ArmError(400, "BadRequest", f"{where} must be a list of strings.", Reason.FIELD_INVALID, target=where)
    return cast(list[str], value)


def policies_of(value: object, where: str = "properties.accessPolicies") -> list[kres.AccessPolicy]:
    """ARM's access policy entries as the service's (their permission names are the
    service's to check); certificates and storage permissions are not served."""
    if not isinstance(value, list):
        raise ArmError(400, "BadRequest", f"{where} must be a list.", Reason.FIELD_INVALID, target=where)
    found = []
    for i, raw in enumerate(value):
        entry = json_object(raw, f"{where}[{i}]")
        permissions = json_object(entry.get("permissions", {}), f"{where}[{i}].permissions")
        for kind in ("certificates", "storage"):
            if _strings(permissions.get(kind), f"{where}[{i}].permissions.{kind}"):
                raise ArmError(400, "BadRequest", f"{kind} permissions are not served: certificates and storage"
                               " accounts are not kept by this key vault.", Reason.FIELD_INVALID,
                               target=f"{where}[{i}].permissions.{kind}")  # fmt: skip
        tenant, object_id = entry.get("tenantId"), entry.get("objectId")
        if not isinstance(tenant, str) or not isinstance(object_id, str):
            raise ArmError(400, "BadRequest", f"{where}[{i}] needs tenantId and objectId.", Reason.FIELD_REQUIRED,
                           target=f"{where}[{i}]")  # fmt: skip
        found.append(kres.AccessPolicy(
            tenant_id=tenant.lower(), object_id=object_id.lower(),
            key_permissions=_strings(permissions.get("keys"), f"{where}[{i}].permissions.keys"),
            secret_permissions=_strings(permissions.get("secrets"), f"{where}[{i}].permissions.secrets"),
        ))  # fmt: skip
    return found


def _not_served(properties: Mapping[str, object]) -> None:
    for name, why in NOT_SERVED.items():
        if properties.get(name) not in (None, False):
            raise ArmError(400, "BadRequest", f"{name}: {why}.", Reason.FIELD_INVALID, target=f"properties.{name}")
    if not _open_network(properties.get("networkAcls")) or properties.get("publicNetworkAccess") not in (
        None, "Enabled", "enabled"
    ):  # fmt: skip
        raise ArmError(400, "BadRequest", "network rules are not served: the vault is reached on the trio's"
                       " network.", Reason.FIELD_INVALID, target="properties.networkAcls")  # fmt: skip


def _open_network(acls: object) -> bool:
    """Whether network rules say what the trio does: every network allowed (the az CLI sends
    defaultAction Allow with no rules)."""
    if acls is None or acls == {}:
        return True
    if not isinstance(acls, dict):
        return False
    rules = [acls.get("ipRules") or [], acls.get("virtualNetworkRules") or []]
    return str(acls.get("defaultAction", "Allow")).lower() == "allow" and not any(rules)


def _sku(properties: Mapping[str, object]) -> str | None:
    sku = properties.get("sku")
    if sku is None:
        return None
    name = json_object(sku, "properties.sku").get("name")
    if not isinstance(name, str):
        raise ArmError(400, "BadRequest", "properties.sku.name is required.", Reason.FIELD_REQUIRED,
                       target="properties.sku.name")  # fmt: skip
    return name.lower()


def _bool(properties: Mapping[str, object], name: str) -> bool | None:
    value = properties.get(name)
    if value is None or isinstance(value, bool):
        return value
    raise ArmError(400, "BadRequest", f"properties.{name} must be true or false.", Reason.FIELD_INVALID,
                   target=f"properties.{name}")  # fmt: skip


def _tags(body: Mapping[str, object]) -> dict[str, str] | None:
    tags = body.get("tags")
    if tags is None:
        return None
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        raise ArmError(400, "InvalidRequestContent", "tags must be an object of strings", Reason.TAGS_INVALID,
                       target="tags")  # fmt: skip
    return cast(dict[str, str], tags)


class KeyVaultProvider:
    """Microsoft.KeyVault over VaultService."""

    def __init__(self, services: Services) -> None:
        self._vaults = kgrpc.VaultServiceStub(services.keyvault)
        self._groups = igrpc.ResourceGroupServiceStub(services.identity)
        self._identity = services.identity

    def __call__(self, router: Router) -> None:
        add: Callable[..., None] = router.add
        add("PUT", VAULT, self.put_vault, "CreateOrUpdateVault", PROVIDER)
        add("PATCH", VAULT, self.patch_vault, "UpdateVault", PROVIDER)
        add("GET", VAULT, self.get_vault, "GetVault", PROVIDER)
        add("DELETE", VAULT, self.delete_vault, "DeleteVault", PROVIDER)
        add("GET", VAULTS_IN_GROUP, self.list_in_group, "ListVaultsByResourceGroup", PROVIDER)
        add("GET", IN_SUBSCRIPTION + "/vaults", self.list_in_subscription, "ListVaultsBySubscription", PROVIDER)
        add("PUT", VAULT + "/accessPolicies/{kind}", self.update_policies, "UpdateAccessPolicy", PROVIDER)
        add("GET", IN_SUBSCRIPTION + "/deletedVaults", self.list_deleted, "ListDeletedVaults", PROVIDER)
        add("GET", IN_SUBSCRIPTION + "/locations/{location}/deletedVaults/{vault}", self.get_deleted,
            "GetDeletedVault", PROVIDER)  # fmt: skip
        add("POST", IN_SUBSCRIPTION + "/locations/{location}/deletedVaults/{vault}/purge", self.purge_deleted,
            "PurgeDeletedVault", PROVIDER)  # fmt: skip
        add("POST", IN_SUBSCRIPTION + "/checkNameAvailability", self.check_name, "CheckNameAvailability", PROVIDER)

    # --- one vault --------------------------------------------------------------------

    async def _vault(self, request: web.Request, params: Params) -> kres.Vault:
        """The vault the path names, in the group and subscription the path names (else missing)."""
        found = await ask(request, self._vaults.GetVault, kpb.GetVaultRequest(name=f"vaults/{params['vault']}"))
        if (found.subscription_id.lower(), found.resource_group.lower()) != (
            params["subscription"].lower(), params["group"].lower()
        ):  # fmt: skip
            raise _vault_missing(params)  # (the name is global: a vault of that name elsewhere is not this one)
        return found

    async def get_vault(self, request: web.Request, params: Params) -> web.Response:
        return web.json_response(vault_json(await self._vault(request, params)))

    async def put_vault(self, request: web.Request, params: Params) -> web.Response:
        body = body_of(request)
        properties = json_object(body.get("properties"), "properties")
        _not_served(properties)
        if str(properties.get("createMode", "default")).lower() == "recover":
            recovered = await ask(request, self._vaults.RecoverVault,
                                  kpb.RecoverVaultRequest(name=f"vaults/{params['vault']}"))  # fmt: skip
            return web.json_response(vault_json(recovered), status=200)
        location = required_location(body)
        tenant = properties.get("tenantId")
        if not isinstance(tenant, str) or not tenant:
            raise ArmError(400, "BadRequest", "properties.tenantId is required.", Reason.FIELD_REQUIRED,
                           target="properties.tenantId")  # fmt: skip
        if "accessPolicies" not in properties:  # (a PUT sets the whole list: leaving it out is not "none")
            raise ArmError(400, "BadRequest", "properties.accessPolicies is required (an empty list for none).",
                           Reason.FIELD_REQUIRED, target="properties.accessPolicies")  # fmt: skip
        policies = policies_of(properties["accessPolicies"])
        try:
            existing = await self._vault(request, params)
        except errors.NotFound:
            existing = None
        if existing is None:
            await group_exists(request, self._groups, params)
            wanted = kres.Vault(
                vault_name=params["vault"], subscription_id=params["subscription"].lower(),
                resource_group=params["group"], location=location.replace(" ", "").lower(), tenant_id=tenant.lower(),
                soft_delete_retention_days=_retention(properties), sku=_sku(properties) or "standard",
                purge_protection_enabled=bool(_bool(properties, "enablePurgeProtection")), access_policies=policies,
                tags=_tags(body) or {},
            )  # fmt: skip
            soft = _bool(properties, "enableSoftDelete")
            if soft is not None:
                wanted.soft_delete_enabled = soft
            made = await ask(request, self._vaults.CreateVault,
                             kpb.CreateVaultRequest(vault=wanted, explicit_access_policies=True))  # fmt: skip
            return web.json_response(vault_json(made), status=201)
        if existing.location != location.replace(" ", "").lower():
            raise ArmError(400, "InvalidResourceLocation",
                           f"The resource '{existing.vault_name}' already exists in location '{existing.location}'.",
                           Reason.FIELD_INVALID, target="location")  # fmt: skip
        updated = await self._update(request, existing, body, properties)
        replaced = await ask(request, self._vaults.ReplaceAccessPolicies,
                             kpb.ReplaceAccessPoliciesRequest(name=updated.name, access_policies=policies))  # fmt: skip
        return web.json_response(vault_json(replaced), status=200)

    async def patch_vault(self, request: web.Request, params: Params) -> web.Response:
        body = body_of(request)
        properties = json_object(body.get("properties", {}), "properties")
        _not_served(properties)
        existing = await self._vault(request, params)
        updated = await self._update(request, existing, body, properties)
        if "accessPolicies" in properties:
            replace = kpb.ReplaceAccessPoliciesRequest(
                name=updated.name, access_policies=policies_of(properties["accessPolicies"])
            )
            updated = await ask(request, self._vaults.ReplaceAccessPolicies, replace)
        return web.json_response(vault_json(updated))

    async def _update(
        self, request: web.Request, existing: kres.Vault, body: Mapping[str, object], properties: Mapping[str, object]
    ) -> kres.Vault:
        """Set what the request says of sku, tags, soft-delete and purge protection (one call)."""
        wanted, paths = kres.Vault(name=existing.name), list[str]()
        sku, tags = _sku(properties), _tags(body)
        if sku is not None and sku != existing.sku:
            wanted.sku, paths = sku, [*paths, "sku"]
        if tags is not None:
            wanted.tags.update(tags)
            paths.append("tags")
        for arm_name, field in (("enableSoftDelete", "soft_delete_enabled"),
                                ("enablePurgeProtection", "purge_protection_enabled")):  # fmt: skip
            value = _bool(properties, arm_name)
            if value is not None and value != getattr(existing, field):
                setattr(wanted, field, value)
                paths.append(field)
        if not paths:
            await require_write(request, self._identity, existing.resource_id)
            return existing
        update = kpb.UpdateVaultRequest(vault=wanted, update_mask=field_mask_pb2.FieldMask(paths=paths))
        return await ask(request, self._vaults.UpdateVault, update)

    async def delete_vault(self, request: web.Request, params: Params) -> web.Response:
        """ARM's answer: 200 once deleted (soft-deleted when soft-delete is on), 204 if there
        was no such vault."""
        try:
            found = await self._vault(request, params)
        except errors.NotFound:
            return web.Response(status=204)
        await ask(request, self._vaults.DeleteVault, kpb.DeleteVaultRequest(name=found.name))
        return web.Response(status=200)

    # --- access policies --------------------------------------------------------------

    async def update_policies(self, request: web.Request, params: Params) -> web.Response:
        """accessPolicies/add (permissions added to each entry), /replace (each entry set as
        given) and /remove (permissions taken from each entry; an entry left with none goes)."""
        kind = params["kind"].lower()
        if kind not in {"add", "replace", "remove"}:
            raise ArmError(400, "BadRequest", "The operation kind must be add, replace or remove.",
                           Reason.FIELD_INVALID, target="operationKind")  # fmt: skip
        body = body_of(request)
        given = policies_of(json_object(body.get("properties"), "properties").get("accessPolicies"),
                            "properties.accessPolicies")  # fmt: skip
        vault = await self._vault(request, params)
        for entry in given:
            if kind == "replace":
                await ask(request, self._vaults.SetAccessPolicy,
                          kpb.SetAccessPolicyRequest(name=vault.name, access_policy=entry))  # fmt: skip
                continue
            change = kpb.UpdateAccessPolicyRequest(name=vault.name, tenant_id=entry.tenant_id,
                                                   object_id=entry.object_id)  # fmt: skip
            if kind == "add":
                change.add_permissions.extend(entry.key_permissions)
                change.add_secret_permissions.extend(entry.secret_permissions)
            else:
                change.remove_permissions.extend(entry.key_permissions)
                change.remove_secret_permissions.extend(entry.secret_permissions)
            await ask(request, self._vaults.UpdateAccessPolicy, change)
        after = await self._vault(request, params)
        return web.json_response({
            "id": f"{after.resource_id}/accessPolicies/{kind}", "name": kind,
            "type": "Microsoft.KeyVault/vaults/accessPolicies", "location": after.location,
            "properties": {"accessPolicies": [policy_json(p) for p in after.access_policies]},
        })  # fmt: skip

    # --- lists ------------------------------------------------------------------------

    async def list_in_group(self, request: web.Request, params: Params) -> web.Response:
        await group_exists(request, self._groups, params)
        vaults = await all_vaults(request, self._vaults, params["subscription"])
        group = params["group"].lower()
        return listing(request, [vault_json(v) for v in vaults if v.resource_group.lower() == group])

    async def list_in_subscription(self, request: web.Request, params: Params) -> web.Response:
        vaults = await all_vaults(request, self._vaults, params["subscription"])
        return listing(request, [vault_json(v) for v in vaults])

    async def list_deleted(self, request: web.Request, params: Params) -> web.Response:
        vaults = await all_vaults(request, self._vaults, params["subscription"], deleted=True)
        return listing(request, [deleted_json(v) for v in vaults])

    async def _deleted(self, request: web.Request, params: Params) -> kres.Vault:
        for vault in await all_vaults(request, self._vaults, params["subscription"], deleted=True):
            if vault.vault_name.lower() == params["vault"].lower() and vault.location == params["location"].lower():
                return vault
        raise ArmError(404, "DeletedVaultNotFound", f"The deleted vault '{params['vault'][:64]}' was not found in"
                       f" location '{params['location'][:64]}'.", Reason.DELETED_VAULT_NOT_FOUND)  # fmt: skip

    async def get_deleted(self, request: web.Request, params: Params) -> web.Response:
        return web.json_response(deleted_json(await self._deleted(request, params)))

    async def purge_deleted(self, request: web.Request, params: Params) -> web.Response:
        found = await self._deleted(request, params)
        await ask(request, self._vaults.PurgeVault, kpb.PurgeVaultRequest(name=found.name))
        return web.Response(status=200)

    async def check_name(self, request: web.Request, params: Params) -> web.Response:
        body = body_of(request)
        name, kind = body.get("name"), body.get("type", "Microsoft.KeyVault/vaults")
        if not isinstance(name, str) or not isinstance(kind, str) or kind.lower() != "microsoft.keyvault/vaults":
            raise ArmError(400, "BadRequest", "The request needs name and type Microsoft.KeyVault/vaults.",
                           Reason.FIELD_INVALID, target="name")  # fmt: skip
        answer = await ask(request, self._vaults.CheckVaultNameAvailability,
                           kpb.CheckVaultNameAvailabilityRequest(vault_name=name))  # fmt: skip
        if answer.name_available:
            return web.json_response({"nameAvailable": True})
        reason = "AccountNameInvalid" if answer.reason == Reason.VAULT_NAME_INVALID.value else "AlreadyExists"
        return web.json_response({"nameAvailable": False, "reason": reason, "message": answer.message})


def _retention(properties: Mapping[str, object]) -> int:
    days = properties.get("softDeleteRetentionInDays", 90)
    if not isinstance(days, int) or isinstance(days, bool):
        raise ArmError(400, "BadRequest", "properties.softDeleteRetentionInDays must be a number of days (7-90).",
                       Reason.RETENTION_DAYS_INVALID, target="properties.softDeleteRetentionInDays")  # fmt: skip
    return days


def _vault_missing(params: Params) -> errors.NotFound:
    return errors.NotFound(Reason.VAULT_NOT_FOUND, f"The Resource 'Microsoft.KeyVault/vaults/{params['vault'][:64]}'"
                           f" under resource group '{params['group'][:90]}' was not found.")  # fmt: skip
