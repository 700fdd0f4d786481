"""Microsoft.Authorization: the built-in role definitions the trio's roles are (Owner,
Contributor and Reader, under Azure's well-known ids), and role assignments at subscription,
resource group and resource scope, which are the directory's role assignments.

    PUT {scope}/providers/Microsoft.Authorization/roleAssignments/{guid}?api-version=2022-04-01
    {"properties": {"roleDefinitionId": ".../roleDefinitions/acdd72a7-...", "principalId": "..."}}

Who may grant, read and remove is the directory's rule, as on gRPC: Owner on the scope or
above (or the tenant's administrator) grants and removes. A listing of a scope's assignments
names those at the scope and above it (ARM's `atScope()`), of the caller's tenant."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

from cmk_trio.arm.envelope import ArmError, listing
from cmk_trio.arm.front import Services, ask, body_of
from cmk_trio.arm.routing import Params, Router
from cmk_trio.proto.identity.v1 import identity_service_pb2 as ipb
from cmk_trio.proto.identity.v1 import identity_service_pb2_grpc as igrpc
from cmk_trio.proto.identity.v1 import resources_pb2 as ires
from cmk_trio.rpckit import errors
from cmk_trio.rpckit.reasons import Reason

PROVIDER = "Microsoft.Authorization"
ASSIGNMENTS = "{scope*}/providers/Microsoft.Authorization/roleAssignments"
DEFINITIONS = "{scope*}/providers/Microsoft.Authorization/roleDefinitions"
BUILT_IN_TIME = "2015-02-02T21:55:09.8806423Z"
"""When Azure's built-in roles were first published: their createdOn."""


@dataclass(frozen=True)
class BuiltInRole:
    role: int
    name: str
    definition_id: str
    description: str
    actions: tuple[str, ...]
    not_actions: tuple[str, ...] = ()


ROLES = (
    BuiltInRole(ires.OWNER, "Owner", "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
                "Grants full access to manage all resources, including the ability to assign roles in Azure RBAC.",
                ("*",)),
    BuiltInRole(ires.CONTRIBUTOR, "Contributor", "b24988ac-6180-42a0-ab88-20f7382dd24c",
                "Grants full access to manage all resources, but does not allow you to assign roles in Azure RBAC.",
                ("*",), ("Microsoft.Authorization/*/Delete", "Microsoft.Authorization/*/Write")),
    BuiltInRole(ires.READER, "Reader", "acdd72a7-3385-48ef-bd42-f606fba81ae7",
                "View all resources, but does not allow you to make any changes.", ("*/read",)),
)  # fmt: skip
BY_ID: Mapping[str, BuiltInRole] = {r.definition_id: r for r in ROLES}
BY_ROLE: Mapping[int, BuiltInRole] = {r.role: r for r in ROLES}


def definition_json(role: BuiltInRole, scope: str) -> dict[str, object]:
    return {
        "id": f"{_subscription_scope(scope)}/providers/Microsoft.Authorization/roleDefinitions/{role.definition_id}",
        "name": role.definition_id,
        "type": "Microsoft.Authorization/roleDefinitions",
        "properties": {
            "roleName": role.name, "type": "BuiltInRole", "description": role.description, "assignableScopes": ["/"],
            "permissions": [{"actions": list(role.actions), "notActions": list(role.not_actions), "dataActions": [],
                             "notDataActions": []}],
            "createdOn": BUILT_IN_TIME, "updatedOn": BUILT_IN_TIME, "createdBy": None, "updatedBy": None,
        },
    }  # fmt: skip


def assignment_json(assignment: ires.RoleAssignment, principal_type: str) -> dict[str, object]:
    role = BY_ROLE[assignment.role]
    created = assignment.create_time.ToDatetime().isoformat() + "Z"
    return {
        "id": f"{assignment.scope}/providers/Microsoft.Authorization/roleAssignments/{assignment.role_assignment_id}",
        "name": assignment.role_assignment_id,
        "type": "Microsoft.Authorization/roleAssignments",
        "properties": {
            "roleDefinitionId": f"{_subscription_scope(assignment.scope)}/providers/Microsoft.Authorization"
                                f"/roleDefinitions/{role.definition_id}",
            "principalId": assignment.principal_id, "principalType": principal_type, "scope": assignment.scope,
            "condition": None, "conditionVersion": None, "description": None,
            "createdOn": created, "updatedOn": created, "createdBy": assignment.created_by,
            "updatedBy": assignment.created_by, "delegatedManagedIdentityResourceId": None,
        },
    }  # fmt: skip


def _subscription_scope(scope: str) -> str:
    return "/".join(scope.split("/")[:3])


def _role_of(definition_id: object) -> BuiltInRole:
    """The built-in role a roleDefinitionId names (its last segment, Azure's GUID)."""
    if not isinstance(definition_id, str) or not definition_id:
        raise ArmError(400, "InvalidRoleDefinitionId", "The role definition ID is required.", Reason.FIELD_REQUIRED,
                       target="properties.roleDefinitionId")  # fmt: skip
    role = BY_ID.get(definition_id.rstrip("/").rsplit("/", 1)[-1].lower())
    if role is None:
        raise ArmError(400, "RoleDefinitionDoesNotExist", "The specified role definition with ID"
                       f" '{definition_id[-64:]}' does not exist. The roles served are Owner, Contributor and Reader.",
                       Reason.FIELD_INVALID, target="properties.roleDefinitionId")  # fmt: skip
    return role


def _assignment_id(name: str) -> str:
    try:
        return str(uuid.UUID(name)) if len(name) == 36 else ""
    except ValueError:
        return ""


class AuthorizationProvider:
    """Microsoft.Authorization over the directory's role assignments."""

    def __init__(self, services: Services) -> None:
        self._directory = igrpc.IdentityServiceStub(services.identity)

    def __call__(self, router: Router) -> None:
        add: Callable[..., None] = router.add
        add("GET", DEFINITIONS, self.list_definitions, "ListRoleDefinitions", PROVIDER)
        add("GET", DEFINITIONS + "/{definition}", self.get_definition, "GetRoleDefinition", PROVIDER)
        add("GET", ASSIGNMENTS, self.list_assignments, "ListRoleAssignments", PROVIDER)
        add("PUT", ASSIGNMENTS + "/{name}", self.create_assignment, "CreateRoleAssignment", PROVIDER)
        add("GET", ASSIGNMENTS + "/{name}", self.get_assignment, "GetRoleAssignment", PROVIDER)
        add("DELETE", ASSIGNMENTS + "/{name}", self.delete_assignment, "DeleteRoleAssignment", PROVIDER)

    # --- role definitions -------------------------------------------------------------

    async def _scope_seen(self, request: web.Request, scope: str) -> None:
        """The caller's token is checked, and the scope's subscription is one it may see (to
        another tenant it does not exist), before anything is said about the scope."""
        subscription_id = scope.split("/")[2].lower()
        asked = ipb.GetSubscriptionRequest(name=f"subscriptions/{subscription_id}")
        await ask(request, self._directory.GetSubscription, asked)

    async def list_definitions(self, request: web.Request, params: Params) -> web.Response:
        await self._scope_seen(request, params["scope"])
        wanted = _filter_value(request, "roleName")
        roles = [r for r in ROLES if wanted is None or r.name.lower() == wanted.lower()]
        return listing(request, [definition_json(r, params["scope"]) for r in roles])

    async def get_definition(self, request: web.Request, params: Params) -> web.Response:
        await self._scope_seen(request, params["scope"])
        role = BY_ID.get(params["definition"].lower())
        if role is None:
            raise ArmError(404, "RoleDefinitionDoesNotExist", f"The role definition '{params['definition'][:64]}'"
                           " does not exist.", Reason.HTTP_PATH_UNKNOWN)  # fmt: skip
        return web.json_response(definition_json(role, params["scope"]))

    # --- role assignments -------------------------------------------------------------

    async def _principal_type(self, request: web.Request, assignment: ires.RoleAssignment) -> str:
        name = f"tenants/{assignment.tenant_id}/principals/{assignment.principal_id}"
        try:
            principal = await ask(request, self._directory.GetPrincipal, ipb.GetPrincipalRequest(name=name))
        except errors.ServiceError:
            return "Unknown"  # (what Azure says of a principal it cannot find)
        return "User" if principal.kind == ires.USER else "ServicePrincipal"

    async def _json(self, request: web.Request, assignment: ires.RoleAssignment) -> dict[str, object]:
        return assignment_json(assignment, await self._principal_type(request, assignment))

    async def create_assignment(self, request: web.Request, params: Params) -> web.Response:
        body = body_of(request)
        properties = body.get("properties")
        if not isinstance(properties, dict):
            raise ArmError(400, "InvalidRequestContent", "The request has no properties object.",
                           Reason.FIELD_REQUIRED, target="properties")  # fmt: skip
        role = _role_of(properties.get("roleDefinitionId"))
        principal_id = properties.get("principalId")
        if not isinstance(principal_id, str) or not principal_id:
            raise ArmError(400, "InvalidPrincipalId", "A valid principal ID must be provided for role assignment.",
                           Reason.FIELD_REQUIRED, target="properties.principalId")  # fmt: skip
        assignment_id = _assignment_id(params["name"])
        if not assignment_id:
            raise ArmError(400, "InvalidRoleAssignmentId", f"The role assignment ID '{params['name'][:64]}' is not"
                           " valid. The role assignment ID must be a GUID.", Reason.UUID_MALFORMED)  # fmt: skip
        wanted = ires.RoleAssignment(role_assignment_id=assignment_id, principal_id=principal_id.lower(),
                                     role=ires.Role.ValueType(role.role), scope=params["scope"])  # fmt: skip
        made = await ask(request, self._directory.CreateRoleAssignment,
                         ipb.CreateRoleAssignmentRequest(role_assignment=wanted))  # fmt: skip
        return web.json_response(await self._json(request, made), status=201)

    async def _assignment(self, request: web.Request, params: Params) -> ires.RoleAssignment | None:
        """The assignment the path names, or None if there is none at that scope."""
        assignment_id = _assignment_id(params["name"])
        if not assignment_id:
            await self._scope_seen(request, params["scope"])  # (the token is checked even so)
            return None
        try:
            found = await ask(request, self._directory.GetRoleAssignment,
                              ipb.GetRoleAssignmentRequest(name=f"roleAssignments/{assignment_id}"))  # fmt: skip
        except errors.NotFound:
            return None
        return found if found.scope.lower() == params["scope"].rstrip("/").lower() else None

    async def get_assignment(self, request: web.Request, params: Params) -> web.Response:
        found = await self._assignment(request, params)
        if found is None:
            raise ArmError(404, "RoleAssignmentNotFound", f"The role assignment '{params['name'][:64]}' is not found.",
                           Reason.ROLE_ASSIGNMENT_NOT_FOUND)  # fmt: skip
        return web.json_response(await self._json(request, found))

    async def delete_assignment(self, request: web.Request, params: Params) -> web.Response:
        """ARM's answer: the deleted assignment (200), or 204 when there was none."""
        found = await self._assignment(request, params)
        if found is None:
            await self._scope_seen(request, params["scope"])  # (the token is checked even so)
            return web.Response(status=204)
        shown = await self._json(request, found)
        await ask(request, self._directory.DeleteRoleAssignment, ipb.DeleteRoleAssignmentRequest(name=found.name))
        return web.json_response(shown)

    async def list_assignments(self, request: web.Request, params: Params) -> web.Response:
        principal_id = _filter_value(request, "principalId") or _assigned_to(request)
        asked = ipb.ListRoleAssignmentsRequest(scope=params["scope"], principal_id=(principal_id or "").lower(),
                                               page_size=1000, page_token=_skip(request))  # fmt: skip
        found = await ask(request, self._directory.ListRoleAssignments, asked)
        shown = [await self._json(request, a) for a in found.role_assignments]
        return listing(request, shown, found.next_page_token)


def _skip(request: web.Request) -> str:
    return request.query.get("$skiptoken", "")


def _filter_value(request: web.Request, field: str) -> str | None:
    """The value of `field eq 'value'` in the request's $filter (alone or beside `atScope()`)."""
    found = re.search(rf"\b{field}\s+eq\s+'([^']{{1,128}})'", request.query.get("$filter", ""), re.IGNORECASE)
    return found.group(1) if found else None


def _assigned_to(request: web.Request) -> str | None:
    """The principal of `assignedTo('{id}')` in the request's $filter (what az sends)."""
    found = re.search(r"\bassignedTo\('([^']{1,128})'\)", request.query.get("$filter", ""), re.IGNORECASE)
    return found.group(1) if found else None
