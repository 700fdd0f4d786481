"""The key vault's second door: Azure Key Vault's data plane over HTTPS, for code written
against Microsoft's SDKs (azure-keyvault-keys' KeyClient and CryptographyClient, unmodified).

    https://{vault}.{suffix}/keys/{name}/create?api-version=2025-07-01   (and the rest below)

The vault is the first label of the host the client dialled. A request without a token is
answered as Key Vault answers it, 401 with the challenge that names the vault's tenant and the
vault audience, which the SDKs read before they sign in. A token is validated exactly as on
gRPC (the same validator, the vault audience, revocations), the call takes a place among the
calls served at once beside gRPC's (the same limits), and then it is the gRPC API's own
method that decides: the door turns the JSON into that method's request and its answer back
into JSON (rest_shapes), so that a key made here is the key gRPC and speech see, with the same
access policies, audit records, events, soft-delete and clock. A refusal is Key Vault's error
body, `{"error": {"code", "message", "innererror": {"code": <our stable reason>}}}`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import cast
from urllib.parse import urlencode

from aiohttp import web
from google.protobuf.message import Message

from cmk_trio.keyvault import rest_shapes as shapes
from cmk_trio.keyvault.api.key_service import KeyApi
from cmk_trio.keyvault.api.trail import AuditTrail
from cmk_trio.keyvault.storage import KeyVaultStore
from cmk_trio.platform.key_names import vault_name
from cmk_trio.proto.keyvault.v1 import keyvault_service_pb2 as pb
from cmk_trio.rpckit import audiences, errors
from cmk_trio.rpckit.admission import Caller, CallLimits
from cmk_trio.rpckit.auth import serving_as
from cmk_trio.rpckit.json_input import JsonObject
from cmk_trio.rpckit.observe import REQUEST_ID_HEADER, Metrics, request_id_from, serving_call
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.status import Throttle
from cmk_trio.rpckit.tokens import TokenValidator
from cmk_trio.rpckit.types import Context

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
"""A data-plane request is small: an RSA-4096 private JWK to import is about 4 KiB."""
BODY_SECONDS = 5
SERVICE_VERSION = "1.9.2586.1"
"""What x-ms-keyvault-service-version says (a build of the real service's, as clients log it)."""
CRYPTO_OPERATIONS = {"wrapkey": "WrapKey", "unwrapkey": "UnwrapKey", "encrypt": "Encrypt", "decrypt": "Decrypt"}
GRPC_SERVICE = "/cmk.keyvault.v1.KeyService/"
VAULT = web.RequestKey("vault", str)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(status: int, code: str, message: str, reason: str) -> web.Response:
    body = {"error": {"code": code, "message": message, "innererror": {"code": reason}}}
    return web.json_response(body, status=status)


def http_error_of(exc: errors.ServiceError) -> tuple[int, str]:
    """A refusal's HTTP status and Key Vault error code."""
    reason = exc.reason
    if isinstance(exc, errors.Unauthenticated):
        return 401, "Unauthorized"
    if isinstance(exc, errors.PermissionDenied):
        return 403, "Forbidden"
    if isinstance(exc, errors.NotFound):
        return (
            404,
            "KeyNotFound" if "KEY" in reason.value else "VaultNotFound" if "VAULT" in reason.value else "NotFound",
        )
    if isinstance(exc, errors.AlreadyExists):
        return 409, "Conflict"
    if isinstance(exc, errors.FailedPrecondition):
        if reason in (Reason.KEY_DISABLED, Reason.KEY_EXPIRED, Reason.KEY_NOT_YET_VALID,
                      Reason.KEY_OPERATION_NOT_ALLOWED):  # fmt: skip
            return 403, "Forbidden"
        return 409, "Conflict"
    if isinstance(exc, errors.InvalidArgument):
        return 400, "BadParameter"
    if isinstance(exc, errors.ResourceExhausted):
        return 429, "Throttled"
    if isinstance(exc, errors.Unavailable):
        return 503, "ServiceUnavailable"
    return 500, "InternalServerError"


class KeyVaultDoor:
    """The routes, over the gRPC API's servicer and the service's validator, trail and limits."""

    def __init__(
        self,
        *,
        api: KeyApi,
        store: KeyVaultStore,
        validator: TokenValidator,
        trail: AuditTrail,
        limits: CallLimits,
        metrics: Metrics | None,
        dns_suffix: str,
        authority: str,
    ) -> None:
        self._api, self._store, self._validator, self._trail = api, store, validator, trail
        self._limits, self._metrics = limits, metrics
        self._suffix = "." + dns_suffix.lower()
        self._authority = authority.rstrip("/")
        self._throttle = Throttle()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[self._answer])
        add = app.router.add_route
        add("GET", "/keys", self.list_keys, name="GetKeys")
        add("POST", "/keys/{name}/create", self.create, name="CreateKey")
        add("POST", "/keys/{name}/rotate", self.rotate, name="RotateKey")
        add("GET", "/keys/{name}/versions", self.list_versions, name="GetKeyVersions")
        add("PUT", "/keys/{name}", self.import_key, name="ImportKey")
        add("DELETE", "/keys/{name}", self.delete, name="DeleteKey")
        add("GET", "/keys/{name}", self.get, name="GetKey")
        add("GET", "/keys/{name}/{version:[^/]*}", self.get, name="GetKeyVersion")
        add("PATCH", "/keys/{name}/{version:[^/]*}", self.update, name="UpdateKey")
        add("POST", "/keys/{name}/{version:[^/]*}/{operation}", self.crypto, name="KeyOperation")
        add("GET", "/deletedkeys", self.list_deleted, name="GetDeletedKeys")
        add("GET", "/deletedkeys/{name}", self.get_deleted, name="GetDeletedKey")
        add("DELETE", "/deletedkeys/{name}", self.purge, name="PurgeDeletedKey")
        add("POST", "/deletedkeys/{name}/recover", self.recover, name="RecoverDeletedKey")
        return app

    # --- what every request goes through ----------------------------------------------

    @web.middleware
    async def _answer(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = request_id_from(request.headers.items())
        route = request.match_info.route.name or "unknown"
        with serving_call(request_id):
            try:
                response = await self._serve(request, handler, route)
            except errors.ServiceError as exc:
                status, code = http_error_of(exc)
                response = self._refusal(request, route, status, code, exc.message, exc.reason)
                if exc.metadata.get("retry_after_seconds"):
                    response.headers["Retry-After"] = exc.metadata["retry_after_seconds"]
            except web.HTTPMethodNotAllowed as exc:
                response = self._refusal(request, route, 405, "BadParameter", f"{request.method} is not allowed"
                                         " here", Reason.HTTP_METHOD_NOT_ALLOWED)  # fmt: skip
                response.headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
            except web.HTTPException:
                response = self._refusal(request, route, 404, "NotFound", "no operation of this service has"
                                         f" the path {request.path}", Reason.HTTP_PATH_UNKNOWN)  # fmt: skip
            except ConnectionResetError:
                response = web.Response(status=499)
            except Exception:
                held = self._throttle.allow((route, "INTERNAL"))
                if held is not None:
                    log.exception("unexpected error in the key vault's HTTPS door", extra={"suppressed_before": held})
                response = error_response(500, "InternalServerError", "internal error; the service log has the"
                                          " details", Reason.INTERNAL.value)  # fmt: skip
        response.headers[REQUEST_ID_HEADER] = request_id
        response.headers["x-ms-request-id"] = request_id
        response.headers["x-ms-keyvault-service-version"] = SERVICE_VERSION
        sent = request.headers.get("x-ms-client-request-id")
        if sent and len(sent) <= 64:
            response.headers["x-ms-client-request-id"] = sent
        if response.status < 400:
            self._count(route, response.status)
        return response

    async def _serve(self, request: web.Request, handler: Handler, route: str) -> web.StreamResponse:
        vault = self._vault_of(request)
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            # The SDKs' first request carries no token: the challenge tells them whom to ask.
            await self._trail.refused(GRPC_SERVICE + route, errors.Unauthenticated(Reason.TOKEN_MISSING, ""))
            return await self._challenge(request, route, vault, Reason.TOKEN_MISSING,
                                         "Request is missing a Bearer or PoP token.")  # fmt: skip
        version = request.query.get("api-version", "")
        if version not in shapes.API_VERSIONS:
            raise errors.InvalidArgument(
                Reason.FIELD_INVALID,
                f"The specified version ({version or 'none'}) is not recognized. Consider using the latest"
                f" supported version ({shapes.LATEST_API_VERSION}).",
            )
        try:
            verified = await self._validator.validate(token.strip(), audience=audiences.VAULT)
        except errors.ServiceError as refused:  # (as the AuthInterceptor records every refusal)
            await self._trail.refused(GRPC_SERVICE + route, refused)
            if not isinstance(refused, errors.Unauthenticated):
                raise  # (the directory out of reach: REVOCATIONS_UNKNOWN, 503)
            return await self._challenge(request, route, vault, refused.reason, refused.message)
        await _read_body(request)
        request[VAULT] = vault
        with serving_as(verified), self._limits.call(Caller.of_token(verified)):
            return await handler(request)

    def _vault_of(self, request: web.Request) -> str:
        host = (request.url.host or "").lower()
        if not host.endswith(self._suffix):
            raise errors.InvalidArgument(
                Reason.VAULT_NAME_INVALID,
                f"{host or 'the request'} is not a vault of this service: dial https://{{vault}}{self._suffix}",
            )
        return vault_name("host", host[: -len(self._suffix)])

    async def _challenge(
        self, request: web.Request, route: str, vault: str, reason: Reason, message: str
    ) -> web.Response:
        with self._limits.call(Caller.anonymous(request.remote or "", sign_in=False)):  # (as any anonymous call)
            found = await self._store.get_vault(vault)
        response = self._refusal(request, route, 401, "Unauthorized", message, reason)
        tenant = found.tenant_id if found is not None else "common"
        response.headers["WWW-Authenticate"] = (
            f'Bearer authorization="{self._authority}/{tenant}", resource="{audiences.VAULT}"'
        )
        return response

    def _refusal(
        self, request: web.Request, route: str, status: int, code: str, message: str, reason: Reason
    ) -> web.Response:
        held = self._throttle.allow((route, reason.value))
        if held is not None:
            extra = {"method": f"HTTPS {request.method} {route}", "reason": reason.value, "code": status}
            log.info("call refused", extra={**extra, "suppressed_before": held} if held else extra)
        self._count(route, status, reason.value)
        return error_response(status, code, message, reason.value)

    def _count(self, route: str, status: int, reason: str = "") -> None:
        if self._metrics is not None:
            self._metrics.http_requests.labels(self._metrics.service, route, str(status), reason).inc()

    # --- the operations ---------------------------------------------------------------

    def _name(self, request: web.Request, version: str | None = None) -> str:
        name = f"vaults/{request[VAULT]}/keys/{request.match_info['name']}"
        return f"{name}/versions/{version}" if version else name

    async def _body(self, request: web.Request) -> JsonObject:
        return shapes.body_of(await request.read())

    async def create(self, request: web.Request) -> web.Response:
        spec, _ = shapes.key_spec(await self._body(request), creating=True)
        created = await self._api.CreateKey(
            pb.CreateKeyRequest(parent=f"vaults/{request[VAULT]}", key_name=request.match_info["name"], key=spec),
            cast(Context, None),
        )
        return web.json_response(shapes.key_bundle(created))

    async def import_key(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        jwk = body.get("key")
        if not isinstance(jwk, dict):
            raise errors.invalid_field("key", Reason.KEY_MATERIAL_INVALID, "must be a JWK object")
        spec, _ = shapes.key_spec(body, creating=False)
        imported = await self._api.ImportKey(
            pb.ImportKeyRequest(parent=f"vaults/{request[VAULT]}", key_name=request.match_info["name"],
                                key_material=json.dumps(jwk), key=spec),
            cast(Context, None),
        )  # fmt: skip
        return web.json_response(shapes.key_bundle(imported))

    async def get(self, request: web.Request) -> web.Response:
        version = request.match_info.get("version") or None
        got = await self._api.GetKey(pb.GetKeyRequest(name=self._name(request, version)), cast(Context, None))
        return web.json_response(shapes.key_bundle(got))

    async def update(self, request: web.Request) -> web.Response:
        spec, given = shapes.key_spec(await self._body(request), creating=False)
        update = pb.UpdateKeyRequest(name=self._name(request, request.match_info.get("version") or None),
                                     attributes=spec)  # fmt: skip
        update.update_mask.paths.extend(given)
        return web.json_response(shapes.key_bundle(await self._api.UpdateKey(update, cast(Context, None))))

    async def rotate(self, request: web.Request) -> web.Response:
        rotated = await self._api.RotateKey(pb.RotateKeyRequest(name=self._name(request)), cast(Context, None))
        return web.json_response(shapes.key_bundle(rotated))

    async def delete(self, request: web.Request) -> web.Response:
        deleted = await self._api.DeleteKey(pb.DeleteKeyRequest(name=self._name(request)), cast(Context, None))
        return web.json_response(shapes.deleted_bundle(deleted))

    async def get_deleted(self, request: web.Request) -> web.Response:
        found = await self._api.GetDeletedKey(pb.GetDeletedKeyRequest(name=self._name(request)), cast(Context, None))
        return web.json_response(shapes.deleted_bundle(found))

    async def recover(self, request: web.Request) -> web.Response:
        recovered = await self._api.RecoverDeletedKey(
            pb.RecoverDeletedKeyRequest(name=self._name(request)), cast(Context, None)
        )
        return web.json_response(shapes.key_bundle(recovered))

    async def purge(self, request: web.Request) -> web.Response:
        await self._api.PurgeDeletedKey(pb.PurgeDeletedKeyRequest(name=self._name(request)), cast(Context, None))
        return web.Response(status=204)

    async def crypto(self, request: web.Request) -> web.Response:
        method = CRYPTO_OPERATIONS.get(request.match_info["operation"].lower())
        if method is None:
            raise web.HTTPNotFound()
        body = await self._body(request)
        name, alg = self._name(request, request.match_info.get("version") or None), shapes.algorithm(body)
        value = shapes.from_b64url("value", body.get("value"))
        if method in ("WrapKey", "Encrypt"):
            request_pb: Message = (pb.WrapKeyRequest if method == "WrapKey" else pb.EncryptRequest)(
                name=name, algorithm=alg, plaintext=value
            )
        else:
            request_pb = (pb.UnwrapKeyRequest if method == "UnwrapKey" else pb.DecryptRequest)(
                name=name, algorithm=alg, ciphertext=value
            )
        answer = await getattr(self._api, method)(request_pb, cast(Context, None))
        data = answer.ciphertext if method in ("WrapKey", "Encrypt") else answer.plaintext
        return web.json_response({"kid": answer.key_id, "value": shapes.b64url(data)})

    # --- listings ---------------------------------------------------------------------

    def _page(self, request: web.Request) -> tuple[int, str]:
        raw = request.query.get("maxresults", "25")
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 25:
            raise errors.invalid_field("maxresults", Reason.FIELD_INVALID, "must be 1 to 25")
        return int(raw), request.query.get("$skiptoken", "")

    def _next_link(self, request: web.Request, size: int, token: str) -> str | None:
        if not token:
            return None
        query = urlencode({"api-version": request.query["api-version"], "maxresults": size, "$skiptoken": token})
        return f"https://{request.host}{request.path}?{query}"

    async def list_keys(self, request: web.Request) -> web.Response:
        size, token = self._page(request)
        found = await self._api.ListKeys(
            pb.ListKeysRequest(parent=f"vaults/{request[VAULT]}", page_size=size, page_token=token),
            cast(Context, None),
        )
        items = [shapes.key_item(k, versioned=False) for k in found.keys]
        return web.json_response({"value": items, "nextLink": self._next_link(request, size, found.next_page_token)})

    async def list_versions(self, request: web.Request) -> web.Response:
        size, token = self._page(request)
        found = await self._api.ListKeyVersions(
            pb.ListKeyVersionsRequest(parent=self._name(request), page_size=size, page_token=token), cast(Context, None)
        )
        items = [shapes.key_item(k, versioned=True) for k in found.versions]
        return web.json_response({"value": items, "nextLink": self._next_link(request, size, found.next_page_token)})

    async def list_deleted(self, request: web.Request) -> web.Response:
        size, token = self._page(request)
        found = await self._api.ListDeletedKeys(
            pb.ListDeletedKeysRequest(parent=f"vaults/{request[VAULT]}", page_size=size, page_token=token),
            cast(Context, None),
        )
        items = [shapes.deleted_item(d) for d in found.deleted_keys]
        return web.json_response({"value": items, "nextLink": self._next_link(request, size, found.next_page_token)})


async def _read_body(request: web.Request) -> None:
    """The body within BODY_SECONDS (a slow one holds no place among the calls meanwhile)."""
    if not request.can_read_body:
        return
    try:
        async with asyncio.timeout(BODY_SECONDS):
            await request.read()
    except TimeoutError:
        raise errors.InvalidArgument(
            Reason.REQUEST_TOO_SLOW, f"the request's body did not arrive within {BODY_SECONDS} s"
        ) from None
    except web.HTTPRequestEntityTooLarge:
        raise errors.InvalidArgument(Reason.REQUEST_TOO_LARGE, f"a request is at most {MAX_BODY_BYTES} bytes") from None
