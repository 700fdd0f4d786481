"""Azure Resource Manager's door: `https://management.azure.com`-shaped requests for the
seed's flow, each turned into a call of the gRPC API of the service that owns the data, with
the caller's own token.

    PUT https://management.azure.com/subscriptions/{s}/resourcegroups/{rg}?api-version=2025-04-01

The front holds no data and decides nothing a service decides: the caller's bearer token goes
with the call (its audience is the management one, as ARM's is and as the key vault's and
speech's control planes want), so that the service authenticates it, authorises the call by
the same role assignments and access policies as any gRPC call, audits it and answers;
the front gives the answer ARM's shape (JSON, status codes, `x-ms-*` headers, errors, paging,
long-running operations). What ARM itself does (api-versions, the envelope, that a resource's
group exists, what deleting a group deletes) is done here, as ARM does it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import grpc
from aiohttp import web
from google.protobuf.message import Message

from cmk_trio.arm import envelope
from cmk_trio.arm.envelope import ArmError
from cmk_trio.arm.routing import Router
from cmk_trio.client.calls import call
from cmk_trio.proto.identity.v1 import identity_service_pb2 as ipb
from cmk_trio.proto.identity.v1 import identity_service_pb2_grpc as igrpc
from cmk_trio.proto.identity.v1 import resources_pb2 as ires
from cmk_trio.rpckit import errors
from cmk_trio.rpckit.http_bodies import read_body
from cmk_trio.rpckit.json_input import JsonObject, JsonTooDeep, loads
from cmk_trio.rpckit.observe import REQUEST_ID_HEADER, Metrics, request_id_from, serving_call
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.status import Throttle

log = logging.getLogger(__name__)

R = TypeVar("R")

MAX_BODY_BYTES = 256 * 1024
"""A management request is small: a vault with 1024 access policies is about 200 KiB."""
CORRELATION_HEADER = "x-ms-correlation-request-id"
TOKEN = web.RequestKey("token", str)
"""The caller's bearer token, which every call the request makes carries."""
BODY = web.RequestKey("body", bytes)


@dataclass(frozen=True)
class Services:
    """The channels to the three services (mutual TLS, as the CLI dials them)."""

    identity: grpc.aio.Channel
    keyvault: grpc.aio.Channel
    speech: grpc.aio.Channel


def token_of(request: web.Request) -> str:
    return request[TOKEN]


def body_of(request: web.Request) -> JsonObject:
    """The request's body, a JSON object, or ARM's refusal."""
    raw = request[BODY]
    if not raw.strip():
        raise ArmError(400, "InvalidRequestContent", "The request content was invalid and could not be deserialized:"
                       " the request has no body.", Reason.FIELD_REQUIRED)  # fmt: skip
    try:
        parsed = loads(raw)
    except (ValueError, UnicodeDecodeError, JsonTooDeep, RecursionError):
        parsed = None
    if not isinstance(parsed, dict):
        raise ArmError(400, "InvalidRequestContent", "The request content was invalid and could not be deserialized:"
                       " it is not a JSON object.", Reason.REQUEST_MALFORMED)  # fmt: skip
    return parsed


async def ask(request: web.Request, method: Callable[..., Awaitable[R]], message: Message) -> R:
    """One call of a service's gRPC API with the caller's token (its refusal, typed, raised)."""
    return await call(method, message, token=request[TOKEN])


async def require_write(request: web.Request, identity: grpc.aio.Channel, scope: str) -> None:
    """What ARM checks of every write, one that changes nothing too: the caller's own role
    allowing writes (Contributor or Owner) on `scope` or above, as the directory's CheckAccess
    answers it. (A write that changes something is checked by the service that makes it.)"""
    stub = igrpc.IdentityServiceStub(identity)
    asked = ipb.CheckAccessRequest(scope=scope, action=ires.WRITE)
    if not (await ask(request, stub.CheckAccess, asked)).allowed:
        raise ArmError(403, "AuthorizationFailed", f"The client does not have authorization to perform a write"
                       f" over scope '{scope}' or the scope is invalid.", Reason.ROLE_REQUIRED,
                       facts={"scope": scope, "role": "CONTRIBUTOR"})  # fmt: skip


Provider = Callable[[Router], None]
"""A resource provider: adds its routes to the router."""


class ArmFront:
    """The routes of the providers, behind ARM's envelope."""

    def __init__(self, providers: list[Provider], *, authority: str, metrics: Metrics | None = None) -> None:
        self._router = Router()
        for provider in providers:
            provider(self._router)
        self._closers: list[Callable[[], Awaitable[None]]] = [
            close for close in (getattr(p, "aclose", None) for p in providers) if close is not None
        ]
        self._authority = authority.rstrip("/")
        self._metrics = metrics
        self._throttle = Throttle()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[_unrouted])
        for close in self._closers:  # (what a provider still runs)

            async def cleanup(_app: web.Application, close: Callable[[], Awaitable[None]] = close) -> None:
                await close()

            app.on_cleanup.append(cleanup)
        # Every path, a newline in one too ("." would stop at it, leaving aiohttp's bare 404).
        app.router.add_route("*", r"/{tail:[\s\S]*}", self._answer)
        return app

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        request_id = request_id_from(request.headers.items())
        name = "unknown"
        with serving_call(request_id):
            try:
                found = self._router.match(request.method, request.path)
                if isinstance(found, list):
                    raise _no_route(request, found)
                route, params = found
                name = route.name
                if not route.public:
                    request[TOKEN] = self._bearer(request)
                envelope.check_api_version(request, route.provider)
                request[BODY] = await read_body(request, MAX_BODY_BYTES)
                response = await route.handler(request, params)
            except ArmError as refused:
                response = self._refused(request, name, refused)
            except errors.ServiceError as exc:
                response = self._refused(request, name, envelope.arm_error_of(exc))
            except ConnectionResetError:
                response = web.Response(status=499)
            except Exception:
                held = self._throttle.allow((name, "INTERNAL"))
                if held is not None:
                    log.exception(
                        "unexpected error in Azure Resource Manager's door", extra={"suppressed_before": held}
                    )
                response = ArmError(500, "InternalServerError", "internal error; the service log has the details",
                                    Reason.INTERNAL).response()  # fmt: skip
        response.headers[REQUEST_ID_HEADER] = request_id
        response.headers["x-ms-request-id"] = request_id
        response.headers[CORRELATION_HEADER] = _correlation(request.headers)
        sent = request.headers.get("x-ms-client-request-id")
        if sent and len(sent) <= 64:
            response.headers["x-ms-client-request-id"] = sent
        if response.status < 400:
            self._count(name, response.status)
        return response

    def _bearer(self, request: web.Request) -> str:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ArmError(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.",
                           Reason.TOKEN_MISSING)  # fmt: skip
        return token.strip()

    def _refused(self, request: web.Request, name: str, refused: ArmError) -> web.Response:
        held = self._throttle.allow((name, refused.reason.value))
        if held is not None and refused.status != 500:
            extra = {"method": f"HTTPS {request.method} {name}", "reason": refused.reason.value, "code": refused.status}
            log.info("call refused", extra={**extra, "suppressed_before": held} if held else extra)
        self._count(name, refused.status, refused.reason.value)
        response = refused.response()
        if refused.status == 401:
            response.headers["WWW-Authenticate"] = (
                f'Bearer authorization_uri="{self._authority}/", error="invalid_token",'
                f' error_description="{refused.message}"'
            )
        return response

    def _count(self, route: str, status: int, reason: str = "") -> None:
        if self._metrics is not None:
            self._metrics.http_requests.labels(self._metrics.service, route, str(status), reason).inc()


@web.middleware
async def _unrouted(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """What aiohttp's router answers itself (a CONNECT, whose target is no path): in ARM's body
    too, with our reason (the fuzz found a bare 404)."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 500 or exc.status < 400:
            raise
        return _no_route(request, ["GET"] if exc.status == 405 else []).response()


def _no_route(request: web.Request, allowed: list[str]) -> ArmError:
    if allowed:
        return ArmError(405, "MethodNotAllowed", f"The requested resource does not support http method"
                        f" '{request.method}'.", Reason.HTTP_METHOD_NOT_ALLOWED)  # fmt: skip
    return ArmError(404, "InvalidResourceType", f"No operation of this service has the path '{request.path}'.",
                    Reason.HTTP_PATH_UNKNOWN)  # fmt: skip


def _correlation(headers: Mapping[str, str]) -> str:
    """The client's correlation id if it sent a GUID, else a new one (ARM's behaviour)."""
    sent = headers.get(CORRELATION_HEADER, "")
    try:
        return str(uuid.UUID(sent)) if len(sent) == 36 else str(uuid.uuid4())
    except ValueError:
        return str(uuid.uuid4())
