"""The reads of Microsoft Graph that Azure's tools make of the directory, at identity's HTTPS
door (`graph.microsoft.com` through the trio's proxy, whose certificate the door's is): who
the signed-in identity is, and a service principal by its application id, as `az keyvault
create` and `az keyvault set-policy --spn` ask them.

    GET /v1.0/me                                                   a user's own object
    GET /v1.0/servicePrincipals?$filter=servicePrincipalNames/any(c:c eq '{appId}')
    GET /v1.0/servicePrincipals?$filter=appId eq '{appId}'
    GET /v1.0/servicePrincipals/{id}

A token for Graph is a token for the directory (audiences.DIRECTORY is Graph's name), checked
by the service's own validator; what it may read is what the directory's GetPrincipal and
ListPrincipals allow the same caller (its own tenant), the same engine. The tokens the trio
issues are applications' (client credentials), so `/me` is Graph's 400 for them, as Graph
answers an application; a principal of kind user signing in with a secret is answered as
itself. Service principals are the directory's service principals and managed identities.
Errors are Graph's body (`{"error": {"code", "message", "innerError"}}`) with our reason in
`innerError`. Nothing here writes.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from aiohttp import web

from cmk_trio.identity.directory import Directory
from cmk_trio.identity.model import Principal, PrincipalKind
from cmk_trio.rpckit import audiences, errors
from cmk_trio.rpckit.auth import bearer_token
from cmk_trio.rpckit.observe import current_request_id
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.tokens import TokenValidator

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

BASE = "https://graph.microsoft.com/v1.0"
PAGE = 1000
_FILTERS = (
    re.compile(r"^servicePrincipalNames/any\(\s*(\w+)\s*:\s*\1\s+eq\s+'([^']{1,256})'\s*\)$"),
    re.compile(r"^()appId\s+eq\s+'([^']{1,256})'$"),
)
_CODES = {
    400: "BadRequest", 401: "InvalidAuthenticationToken", 403: "Authorization_RequestDenied",
    404: "Request_ResourceNotFound", 429: "TooManyRequests", 503: "ServiceUnavailable",
}  # fmt: skip
_STATUS_OF = {
    errors.InvalidArgument: 400, errors.Unauthenticated: 401, errors.PermissionDenied: 403, errors.NotFound: 404,
    errors.ResourceExhausted: 429, errors.Unavailable: 503,
}  # fmt: skip


class GraphError(Exception):
    def __init__(self, status: int, reason: Reason, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.reason, self.message, self.code = status, reason, message, code or _CODES[status]


class GraphFront:
    """Graph's reads over the directory."""

    def __init__(self, directory: Directory, validator: TokenValidator) -> None:
        self._directory = directory
        self._validator = validator

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1.0/me", self._answering(self.me), name="graph_me")
        app.router.add_get("/v1.0/servicePrincipals", self._answering(self.service_principals),
                           name="graph_servicePrincipals")  # fmt: skip
        app.router.add_get("/v1.0/servicePrincipals/{object_id}", self._answering(self.service_principal),
                           name="graph_servicePrincipal")  # fmt: skip

    def _answering(self, handler: Handler) -> Handler:
        """The handler, its refusals in Graph's body (the door's own middleware answers in OAuth's)."""

        async def answered(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except GraphError as refused:
                return _refusal(request, refused)
            except errors.ServiceError as exc:
                status = next((s for kind, s in _STATUS_OF.items() if isinstance(exc, kind)), 400)
                return _refusal(request, GraphError(status, exc.reason, str(exc.message)))

        return answered

    async def _caller(self, request: web.Request) -> Principal:
        token = bearer_token([("authorization", request.headers.get("Authorization", ""))])
        verified = await self._validator.validate(token, audience=audiences.DIRECTORY)
        return await self._directory.actor(verified.object_id, verified.tenant_id)

    async def me(self, request: web.Request) -> web.Response:
        caller = await self._caller(request)
        if caller.kind is not PrincipalKind.USER:
            raise GraphError(400, Reason.DELEGATED_TOKEN_REQUIRED,
                             "/me request is only valid with delegated authentication flow.")  # fmt: skip
        return web.json_response({"@odata.context": f"{BASE}/$metadata#users/$entity", **_user(caller)})

    async def service_principals(self, request: web.Request) -> web.Response:
        caller = await self._caller(request)
        wanted = _app_id_of(request.query.get("$filter"))
        found, after = [], None
        while True:
            page = await self._directory.principals.list_principals(caller, caller.tenant_id, None, after=after,
                                                                    limit=PAGE)  # fmt: skip
            found += [p for p in page if p.kind is not PrincipalKind.USER
                      and (wanted is None or p.client_id.lower() == wanted.lower())]  # fmt: skip
            if len(page) < PAGE:
                break
            after = page[-1].object_id
        return web.json_response({"@odata.context": f"{BASE}/$metadata#servicePrincipals",
                                  "value": [_service_principal(p) for p in found]})  # fmt: skip

    async def service_principal(self, request: web.Request) -> web.Response:
        caller = await self._caller(request)
        object_id = request.match_info["object_id"]
        missing = GraphError(404, Reason.PRINCIPAL_NOT_FOUND, f"Resource '{object_id[:64]}' does not exist or one"
                             " of its queried reference-property objects are not present.")  # fmt: skip
        try:
            found = await self._directory.principals.get_principal(caller, caller.tenant_id, object_id)
        except errors.InvalidArgument:
            raise missing from None
        if found.kind is PrincipalKind.USER:
            raise missing
        return web.json_response({"@odata.context": f"{BASE}/$metadata#servicePrincipals/$entity",
                                  **_service_principal(found)})  # fmt: skip


def _app_id_of(given: str | None) -> str | None:
    """The application id a `$filter` asks for (None: no filter), or Graph's 400."""
    if given is None:
        return None
    for pattern in _FILTERS:
        found = pattern.match(given.strip())
        if found:
            return found.group(2)
    raise GraphError(400, Reason.GRAPH_QUERY_UNSUPPORTED, "Unsupported query: only servicePrincipalNames/any(c:c eq"
                     " '{appId}') and appId eq '{appId}' are served here.", "Request_UnsupportedQuery")  # fmt: skip


def _service_principal(p: Principal) -> dict[str, object]:
    return {
        "id": p.object_id, "appId": p.client_id, "displayName": p.display_name, "accountEnabled": p.enabled,
        "appOwnerOrganizationId": p.tenant_id, "servicePrincipalNames": [p.client_id],
        "servicePrincipalType": "ManagedIdentity" if p.kind is PrincipalKind.MANAGED_IDENTITY else "Application",
        "alternativeNames": [p.resource_id] if p.resource_id else [],
    }  # fmt: skip


def _user(p: Principal) -> dict[str, object]:
    return {"id": p.object_id, "displayName": p.display_name, "userPrincipalName": f"{p.object_id}@{p.tenant_id}",
            "accountEnabled": p.enabled}  # fmt: skip


def _refusal(request: web.Request, refused: GraphError) -> web.Response:
    inner = {"date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"), "request-id": current_request_id() or "",
             "client-request-id": request.headers.get("client-request-id", "")[:64],
             "reason": refused.reason.value}  # fmt: skip
    body = {"error": {"code": refused.code, "message": refused.message, "innerError": inner}}
    response = web.json_response(body, status=refused.status)
    if refused.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="", authorization_uri="", client_id=""'
    return response
