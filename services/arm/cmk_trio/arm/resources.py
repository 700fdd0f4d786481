"""Microsoft.Resources: the subscriptions and tenants a caller can see, resource groups, and
the cloud's metadata (`/metadata/endpoints`, what `az cloud register` reads), over the
directory's gRPC API.

Deleting a group deletes what is in it, as ARM does: the front asks the key vault and speech
for the group's vaults and accounts, deletes each with the caller's token (so a caller who
may not delete one of them is refused, and the group stays), then the group; the group's role
assignments go with it. It is ARM's long-running operation here (group_deletion.py)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from aiohttp import web
from google.protobuf import field_mask_pb2

from cmk_trio.arm.envelope import API_VERSIONS, ArmError, listing
from cmk_trio.arm.front import Services, ask, body_of, require_write
from cmk_trio.arm.group_deletion import SYNC_SECONDS, GroupDeletions
from cmk_trio.arm.lookups import all_accounts, all_vaults, required_location
from cmk_trio.arm.routing import Params, Router
from cmk_trio.proto.identity.v1 import identity_service_pb2 as ipb
from cmk_trio.proto.identity.v1 import identity_service_pb2_grpc as igrpc
from cmk_trio.proto.identity.v1 import resources_pb2 as ires
from cmk_trio.proto.keyvault.v1 import keyvault_service_pb2 as kpb
from cmk_trio.proto.keyvault.v1 import keyvault_service_pb2_grpc as kgrpc
from cmk_trio.proto.speech.v1 import speech_service_pb2 as spb
from cmk_trio.proto.speech.v1 import speech_service_pb2_grpc as sgrpc
from cmk_trio.rpckit import errors
from cmk_trio.rpckit.devca import AZURE_NAMES
from cmk_trio.rpckit.reasons import Reason

GROUPS = "/subscriptions/{subscription}/resourcegroups"
GROUP = GROUPS + "/{group}"
PROVIDERS = {
    "Microsoft.KeyVault": ("vaults", "deletedVaults", "locations/deletedVaults", "checkNameAvailability"),
    "Microsoft.CognitiveServices": ("accounts", "deletedAccounts", "locations/resourceGroups/deletedAccounts"),
    "Microsoft.Authorization": ("roleAssignments", "roleDefinitions"),
}
"""The resource providers served, each with the resource types it answers for: what a
subscription's `providers` say (`az resource show` reads the api-versions there)."""
MANAGEMENT_AUDIENCES = ("https://management.core.windows.net/", "https://management.azure.com/")
"""The audiences a cloud's metadata names for ARM: az asks for tokens for the first."""


@dataclass(frozen=True)
class Cloud:
    """What the metadata endpoint says about this cloud: where the token authority is (as
    clients reach it) and the key vault's DNS suffix. Where ARM is, is where the client asked:
    through the proxy under Azure's own names, else at the door's own address."""

    name: str
    login_endpoint: str
    vault_dns_suffix: str

    def metadata(self, host: str) -> dict[str, object]:
        default = host.lower().removesuffix(":443") in AZURE_NAMES["arm"]
        arm = f"https://{host}/"
        login = f"https://{AZURE_NAMES['identity'][0]}/" if default else self.login_endpoint.rstrip("/") + "/"
        return {
            "name": self.name,
            "resourceManager": arm,
            "portal": arm,
            "gallery": arm,
            "authentication": {
                "loginEndpoint": login,
                "audiences": list(MANAGEMENT_AUDIENCES),
                "tenant": "common",
                "identityProvider": "AAD",
            },
            "graphAudience": "https://graph.microsoft.com/",
            "microsoftGraphResourceId": "https://graph.microsoft.com/",
            "suffixes": {"keyVaultDns": self.vault_dns_suffix.lstrip("."), "storage": "core.windows.net"},
        }


def resource_group_json(group: ires.ResourceGroup) -> dict[str, object]:
    return {
        "id": group.name,
        "name": group.resource_group,
        "type": "Microsoft.Resources/resourceGroups",
        "location": group.location,
        "tags": dict(group.tags),
        "properties": {"provisioningState": "Succeeded"},
    }


def subscription_json(sub: ires.Subscription) -> dict[str, object]:
    return {
        "id": f"/subscriptions/{sub.subscription_id}",
        "subscriptionId": sub.subscription_id,
        "tenantId": sub.tenant_id,
        "homeTenantId": sub.tenant_id,
        "displayName": sub.display_name,
        "state": "Enabled",
        "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01", "quotaId": "PayAsYouGo_2014-09-01",
                                 "spendingLimit": "Off"},
        "authorizationSource": "RoleBased",
        "managedByTenants": [],
        "tags": {},
    }  # fmt: skip


def _provider_json(subscription: str, namespace: str) -> dict[str, object]:
    versions = list(API_VERSIONS[namespace])
    return {
        "id": f"/subscriptions/{subscription}/providers/{namespace}",
        "namespace": namespace,
        "registrationState": "Registered",
        "registrationPolicy": "RegistrationRequired",
        "resourceTypes": [{"resourceType": t, "locations": [], "apiVersions": versions} for t in PROVIDERS[namespace]],
    }


def tags_of(body: dict[str, object]) -> dict[str, str]:
    tags = body.get("tags", {})
    if tags is None:
        return {}
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        raise ArmError(400, "InvalidRequestContent", "tags must be an object of strings", Reason.TAGS_INVALID,
                       target="tags")  # fmt: skip
    return cast(dict[str, str], tags)


def group_id(params: Params) -> str:
    return f"/subscriptions/{params['subscription']}/resourceGroups/{params['group']}"


class ResourcesProvider:
    """Microsoft.Resources over the directory's API (and, to empty a group, the others')."""

    def __init__(self, services: Services, cloud: Cloud, *, sync_seconds: float = SYNC_SECONDS) -> None:
        self._subs = igrpc.IdentityServiceStub(services.identity)
        self._groups = igrpc.ResourceGroupServiceStub(services.identity)
        self._identity = services.identity
        self._vaults = kgrpc.VaultServiceStub(services.keyvault)
        self._accounts = sgrpc.SpeechResourceServiceStub(services.speech)
        self._cloud = cloud
        self.deletions = GroupDeletions(self._empty_and_delete, self._group_of_operation, sync_seconds=sync_seconds)

    def __call__(self, router: Router) -> None:
        add: Callable[..., None] = router.add
        add("GET", "/metadata/endpoints", self.metadata, "GetCloudMetadata", "metadata", public=True)
        add("GET", "/subscriptions", self.list_subscriptions, "ListSubscriptions", "subscriptions")
        add("GET", "/subscriptions/{subscription}", self.get_subscription, "GetSubscription", "subscriptions")
        add("GET", "/tenants", self.list_tenants, "ListTenants", "subscriptions")
        add("GET", "/subscriptions/{subscription}/providers", self.list_providers, "ListProviders",
            "Microsoft.Resources")  # fmt: skip
        add("GET", "/subscriptions/{subscription}/providers/{namespace}", self.get_provider, "GetProvider",
            "Microsoft.Resources")  # fmt: skip
        add("GET", GROUPS, self.list_groups, "ListResourceGroups", "Microsoft.Resources")
        add("GET", "/subscriptions/{subscription}/resources", self.list_resources, "ListResources", "resources")
        add("PUT", GROUP, self.put_group, "CreateOrUpdateResourceGroup", "Microsoft.Resources")
        add("GET", GROUP, self.get_group, "GetResourceGroup", "Microsoft.Resources")
        add("HEAD", GROUP, self.group_exists, "CheckResourceGroupExistence", "Microsoft.Resources")
        add("PATCH", GROUP, self.update_group, "UpdateResourceGroup", "Microsoft.Resources")
        add("DELETE", GROUP, self.delete_group, "DeleteResourceGroup", "Microsoft.Resources")
        add("GET", "/subscriptions/{subscription}/operationresults/{operation}", self.deletions.poll,
            "GetOperationResult", "Microsoft.Resources")  # fmt: skip

    async def metadata(self, request: web.Request, params: Params) -> web.Response:
        found = self._cloud.metadata(request.host)
        # 2019-05-01 lists every cloud the endpoint knows; later versions answer with the one asked.
        return web.json_response([found] if request.query["api-version"] == "2019-05-01" else found)

    # --- subscriptions and tenants ----------------------------------------------------

    async def list_subscriptions(self, request: web.Request, params: Params) -> web.Response:
        asked = ipb.ListSubscriptionsRequest(page_size=1000, page_token=_skip(request))
        found = await ask(request, self._subs.ListSubscriptions, asked)
        return listing(request, [subscription_json(s) for s in found.subscriptions], found.next_page_token)

    async def get_subscription(self, request: web.Request, params: Params) -> web.Response:
        asked = ipb.GetSubscriptionRequest(name=f"subscriptions/{params['subscription'].lower()}")
        return web.json_response(subscription_json(await ask(request, self._subs.GetSubscription, asked)))

    async def list_tenants(self, request: web.Request, params: Params) -> web.Response:
        found = await ask(
            request, self._subs.ListTenants, ipb.ListTenantsRequest(page_size=1000, page_token=_skip(request))
        )
        tenants = [{"id": f"/tenants/{t.tenant_id}", "tenantId": t.tenant_id, "tenantCategory": "Home",
                    "displayName": t.display_name, "defaultDomain": f"{t.tenant_id}.onmicrosoft.com"}
                   for t in found.tenants]  # fmt: skip
        return listing(request, tenants, found.next_page_token)

    # --- resource providers ---------------------------------------------------------

    async def list_providers(self, request: web.Request, params: Params) -> web.Response:
        sub = await self._subscription(request, params)
        return listing(request, [_provider_json(sub, namespace) for namespace in PROVIDERS])

    async def get_provider(self, request: web.Request, params: Params) -> web.Response:
        sub = await self._subscription(request, params)  # (the caller's, first: the existence rule)
        namespace = next((n for n in PROVIDERS if n.lower() == params["namespace"].lower()), None)
        if namespace is None:
            raise ArmError(404, "InvalidResourceNamespace", f"The resource namespace '{params['namespace']}' is"
                           " invalid.", Reason.HTTP_PATH_UNKNOWN)  # fmt: skip
        return web.json_response(_provider_json(sub, namespace))

    async def _subscription(self, request: web.Request, params: Params) -> str:
        asked = ipb.GetSubscriptionRequest(name=f"subscriptions/{params['subscription'].lower()}")
        return (await ask(request, self._subs.GetSubscription, asked)).subscription_id

    # --- a subscription's resources --------------------------------------------------

    async def list_resources(self, request: web.Request, params: Params) -> web.Response:
        """The subscription's vaults and speech accounts the caller may read, as generic
        resources, of one type and name if `$filter` says so."""
        wanted, named = _filter(request)
        sub = params["subscription"].lower()
        found: list[dict[str, object]] = []
        if wanted in (None, VAULT_TYPE):
            for vault in await all_vaults(request, self._vaults, sub):
                found.append({"id": vault.resource_id, "name": vault.vault_name, "type": VAULT_TYPE,
                              "location": vault.location, "tags": dict(vault.tags)})  # fmt: skip
        if wanted in (None, ACCOUNT_TYPE):
            for account in await all_accounts(request, self._accounts, sub):
                found.append({"id": account.name, "name": account.account_name, "type": ACCOUNT_TYPE,
                              "kind": "SpeechServices", "location": account.location, "tags": {}})  # fmt: skip
        if named is not None:
            found = [r for r in found if str(r["name"]).lower() == named.lower()]
        return listing(request, found)

    # --- resource groups --------------------------------------------------------------

    async def list_groups(self, request: web.Request, params: Params) -> web.Response:
        asked = ipb.ListResourceGroupsRequest(parent=f"/subscriptions/{params['subscription']}", page_size=1000,
                                              page_token=_skip(request))  # fmt: skip
        found = await ask(request, self._groups.ListResourceGroups, asked)
        return listing(request, [resource_group_json(g) for g in found.resource_groups], found.next_page_token)

    async def get_group(self, request: web.Request, params: Params) -> web.Response:
        return web.json_response(resource_group_json(await self._group(request, params)))

    async def group_exists(self, request: web.Request, params: Params) -> web.Response:
        try:
            await self._group(request, params)
        except errors.NotFound:
            return web.Response(status=404)
        return web.Response(status=204)

    async def _group(self, request: web.Request, params: Params) -> ires.ResourceGroup:
        return await ask(request, self._groups.GetResourceGroup, ipb.GetResourceGroupRequest(name=group_id(params)))

    async def put_group(self, request: web.Request, params: Params) -> web.Response:
        """Create, or update the tags of, a group; a group keeps its location (ARM's
        InvalidResourceGroupLocation otherwise)."""
        body = body_of(request)
        location, tags = required_location(body), tags_of(body)
        wanted = ires.ResourceGroup(subscription_id=params["subscription"], resource_group=params["group"],
                                    location=_region(location), tags=tags)  # fmt: skip
        try:
            made = await ask(request, self._groups.CreateResourceGroup,
                             ipb.CreateResourceGroupRequest(resource_group=wanted))  # fmt: skip
            return web.json_response(resource_group_json(made), status=201)
        except errors.AlreadyExists as exc:
            if exc.reason is not Reason.RESOURCE_GROUP_EXISTS:
                raise
        existing = await self._group(request, params)
        if existing.location != wanted.location:
            raise ArmError(
                409, "InvalidResourceGroupLocation",
                f"Invalid resource group location '{location}'. The Resource group already exists in location"
                f" '{existing.location}'.", Reason.FIELD_INVALID, target="location",
            )  # fmt: skip
        return web.json_response(resource_group_json(await self._set_tags(request, existing.name, tags)))

    async def update_group(self, request: web.Request, params: Params) -> web.Response:
        body = body_of(request)
        if "tags" not in body:  # nothing to change: still a write, which needs its role
            group = await self._group(request, params)
            await require_write(request, self._identity, group.name)
            return web.json_response(resource_group_json(group))
        return web.json_response(resource_group_json(await self._set_tags(request, group_id(params), tags_of(body))))

    async def _set_tags(self, request: web.Request, name: str, tags: dict[str, str]) -> ires.ResourceGroup:
        update = ipb.UpdateResourceGroupRequest(resource_group=ires.ResourceGroup(name=name, tags=tags),
                                                update_mask=field_mask_pb2.FieldMask(paths=["tags"]))  # fmt: skip
        return await ask(request, self._groups.UpdateResourceGroup, update)

    async def delete_group(self, request: web.Request, params: Params) -> web.Response:
        return await self.deletions.delete(request, await self._group(request, params))

    async def aclose(self) -> None:
        await self.deletions.aclose()

    async def _group_of_operation(self, request: web.Request, name: str) -> ires.ResourceGroup | None:
        """The group an operation polled is about (None: gone), for a caller who sees its
        subscription (the existence rule: another tenant's caller is told of neither)."""
        subscription = name.split("/")[2]
        await ask(request, self._subs.GetSubscription, ipb.GetSubscriptionRequest(name=f"subscriptions/{subscription}"))
        try:
            return await ask(request, self._groups.GetResourceGroup, ipb.GetResourceGroupRequest(name=name))
        except errors.NotFound:
            # Gone, for a caller who may read it; anyone else was told what a missing group's
            # caller is told, and is told it again (never "done").
            asked = ipb.CheckAccessRequest(scope=name, action=ires.READ)
            if not (await ask(request, self._subs.CheckAccess, asked)).allowed:
                raise
            return None

    async def _empty_and_delete(self, request: web.Request, group: ires.ResourceGroup) -> None:
        """The group's speech accounts and vaults, then the group (ARM's order), each one call
        that ends when it is done."""
        for account in await self._accounts_in(request, group):
            await ask(request, self._accounts.DeleteSpeechResource, spb.DeleteSpeechResourceRequest(name=account))
        for vault in await self._vaults_in(request, group):
            await ask(request, self._vaults.DeleteVault, kpb.DeleteVaultRequest(name=vault))
        await ask(request, self._groups.DeleteResourceGroup, ipb.DeleteResourceGroupRequest(name=group.name))

    async def _vaults_in(self, request: web.Request, group: ires.ResourceGroup) -> list[str]:
        vaults = await all_vaults(request, self._vaults, group.subscription_id)
        return [v.name for v in vaults if v.resource_group.lower() == group.resource_group.lower()]

    async def _accounts_in(self, request: web.Request, group: ires.ResourceGroup) -> list[str]:
        accounts = await all_accounts(request, self._accounts, group.subscription_id)
        return [r.name for r in accounts if r.resource_group.lower() == group.resource_group.lower()]


VAULT_TYPE = "Microsoft.KeyVault/vaults"
ACCOUNT_TYPE = "Microsoft.CognitiveServices/accounts"


_CLAUSE = re.compile(r"(resourceType|name)\s+eq\s+'([^']{1,128})'", re.IGNORECASE)


def _filter(request: web.Request) -> tuple[str | None, str | None]:
    """The resource type (in its canonical case) and name of `$filter=resourceType eq '{type}'`
    and `name eq '{name}'`, alone or joined by `and` (what the SDKs and the az CLI send); None
    for what it does not say. Any other filter is refused: the only ones served."""
    text = request.query.get("$filter", "").strip()
    found: dict[str, str] = {}
    for clause in re.split(r"\s+and\s+", text, flags=re.IGNORECASE) if text else []:
        match = _CLAUSE.fullmatch(clause.strip())
        if match is None or match.group(1).lower() in found:
            raise ArmError(400, "InvalidFilterInQueryString", "The filters served here are resourceType eq '{type}'"
                           " and name eq '{name}', alone or joined by and.", Reason.FIELD_INVALID,
                           target="$filter")  # fmt: skip
        found[match.group(1).lower()] = match.group(2)
    asked = found.get("resourcetype", "").lower()
    kind = next((t for t in (VAULT_TYPE, ACCOUNT_TYPE) if t.lower() == asked), asked) if asked else None
    return kind, found.get("name")


def _skip(request: web.Request) -> str:
    return request.query.get("$skiptoken", "")


def _region(location: str) -> str:
    """ARM's spelling of a region: "West Europe" is "westeurope"."""
    return location.replace(" ", "").lower()
