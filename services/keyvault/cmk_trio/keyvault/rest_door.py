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

import json
import logging
from collections.abc import Awaitable, Callable
from typing import cast

from aiohttp import web
from google.protobuf.message import Message

from cmk_trio.keyvault import rest_requests as req
from cmk_trio.keyvault import rest_shapes as shapes
from cmk_trio.keyvault.api.key_service import KeyApi
from cmk_trio.keyvault.api.secret_service import SecretApi
from cmk_trio.keyvault.api.trail import AuditTrail
from cmk_trio.keyvault.key_backup import MAX_BACKUP_BYTES
from cmk_trio.keyvault.rest_secrets import SecretRoutes
from cmk_trio.keyvault.storage import KeyVaultStore
from cmk_trio.platform.key_names import vault_name
from cmk_trio.proto.keyvault.v1 import keyvault_service_pb2 as pb
from cmk_trio.rpckit import audiences, errors
from cmk_trio.rpckit.admission import Caller, CallLimits
from cmk_trio.rpckit.auth import serving_as
from cmk_trio.rpckit.http_bodies import read_body
from cmk_trio.rpckit.json_input import JsonObject
from cmk_trio.rpckit.observe import REQUEST_ID_HEADER, Metrics, request_id_from, serving_call
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.status import Throttle
from cmk_trio.rpckit.tokens import TokenValidator
from cmk_trio.rpckit.types import Context

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
"""A data-plane request is small: an RSA-4096 private JWK to import is about 4 KiB..."""
MAX_RESTORE_BYTES = MAX_BACKUP_BYTES * 4 // 3 + 1024
"""...but a restore's, the backup in base64url, may be as large as a backup."""
LARGE_BODIES = {"RestoreKey", "RestoreSecret"}
SERVICE_VERSION = "1.9.2586.1"
"""What x-ms-keyvault-service-version says (a build of the real service's, as clients log it)."""
CRYPTO_OPERATIONS = {"wrapkey": "WrapKey", "unwrapkey": "UnwrapKey", "encrypt": "Encrypt", "decrypt": "Decrypt",
                     "sign": "Sign", "verify": "Verify"}  # fmt: skip
GRPC_SERVICES = ("/cmk.keyvault.v1.KeyService/", "/cmk.keyvault.v1.SecretService/")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _operation(request: web.Request) -> str:
    """The operation a request asks for, by the name of the gRPC method that decides it (what
    the audit trail, the logs and the metrics call it)."""
    route = request.match_info.route.name or "unknown"
    if route == "KeyOperation":
        return CRYPTO_OPERATIONS.get(request.match_info["operation"].lower(), route)
    return route.removesuffix("Version") if route in ("GetKeyVersion", "GetSecretVersion") else route


def _grpc_method(route: str) -> str:
    """The gRPC method a route is the door of, as the audit trail names refusals."""
    return GRPC_SERVICES["Secret" in route] + route


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
        # Key Vault's own code where the engine named it (KeyNotFound, SecretNotFound), else by kind.
        found = exc.metadata.get("akv_error")
        return 404, found or ("VaultNotFound" if "VAULT" in reason.value else "NotFound")
    if isinstance(exc, errors.AlreadyExists):
        return 409, "Conflict"
    if isinstance(exc, errors.FailedPrecondition):
        if reason in (Reason.KEY_DISABLED, Reason.KEY_EXPIRED, Reason.KEY_NOT_YET_VALID,
                      Reason.KEY_OPERATION_NOT_ALLOWED, Reason.SECRET_DISABLED):  # fmt: skip
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
        secrets: SecretApi,
        store: KeyVaultStore,
        validator: TokenValidator,
        trail: AuditTrail,
        limits: CallLimits,
        metrics: Metrics | None,
        dns_suffix: str,
        authority: str,
    ) -> None:
        self._api, self._store, self._validator, self._trail = api, store, validator, trail
        self._secrets = SecretRoutes(secrets)
        self._limits, self._metrics = limits, metrics
        self._suffix = "." + dns_suffix.lower()
        self._authority = authority.rstrip("/")
        self._throttle = Throttle()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_RESTORE_BYTES, middlewares=[self._answer])
        add = app.router.add_route
        add("GET", "/keys", self.list_keys, name="ListKeys")
        add("POST", "/keys/restore", self.restore, name="RestoreKey")
        add("POST", "/keys/{name}/create", self.create, name="CreateKey")
        add("POST", "/keys/{name}/backup", self.backup, name="BackupKey")
        add("POST", "/keys/{name}/rotate", self.rotate, name="RotateKey")
        add("GET", "/keys/{name}/rotationpolicy", self.get_rotation_policy, name="GetKeyRotationPolicy")
        add("PUT", "/keys/{name}/rotationpolicy", self.set_rotation_policy, name="UpdateKeyRotationPolicy")
        add("GET", "/keys/{name}/versions", self.list_versions, name="ListKeyVersions")
        add("PUT", "/keys/{name}", self.import_key, name="ImportKey")
        add("DELETE", "/keys/{name}", self.delete, name="DeleteKey")
        add("GET", "/keys/{name}", self.get, name="GetKey")
        add("GET", "/keys/{name}/{version:[^/]*}", self.get, name="GetKeyVersion")
        add("PATCH", "/keys/{name}/{version:[^/]*}", self.update, name="UpdateKey")
        add("POST", "/keys/{name}/{version:[^/]*}/{operation}", self.crypto, name="KeyOperation")
        add("GET", "/deletedkeys", self.list_deleted, name="ListDeletedKeys")
        add("GET", "/deletedkeys/{name}", self.get_deleted, name="GetDeletedKey")
        add("DELETE", "/deletedkeys/{name}", self.purge, name="PurgeDeletedKey")
        add("POST", "/deletedkeys/{name}/recover", self.recover, name="RecoverDeletedKey")
        self._secrets.add_to(app.router)
        return app

    # --- what every request goes through ----------------------------------------------

    @web.middleware
    async def _answer(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = request_id_from(request.headers.items())
        route = _operation(request)
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
            await self._trail.refused(_grpc_method(route), errors.Unauthenticated(Reason.TOKEN_MISSING, ""))
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
            await self._trail.refused(_grpc_method(route), refused)
            if not isinstance(refused, errors.Unauthenticated):
                raise  # (the directory out of reach: REVOCATIONS_UNKNOWN, 503)
            return await self._challenge(request, route, vault, refused.reason, refused.message)
        request[req.BODY] = await read_body(request, MAX_RESTORE_BYTES if route in LARGE_BODIES else MAX_BODY_BYTES)
        request[req.VAULT] = vault
        with serving_as(verified), self._limits.call(Caller.of_token(verified)):
            return await handler(request)

    def _vault_of(self, request: web.Request) -> str:
        try:
            host = (request.url.host or "").lower()
        except ValueError:  # a Host header yarl cannot read (a port beyond 65535): no vault's
            host = ""
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
        return req.named(request, "keys", version)

    async def _body(self, request: web.Request) -> JsonObject:
        return req.body(request)

    async def create(self, request: web.Request) -> web.Response:
        spec, _ = shapes.key_spec(await self._body(request), creating=True)
        created = await self._api.CreateKey(
            pb.CreateKeyRequest(parent=req.parent(request), key_name=request.match_info["name"], key=spec),
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
            pb.ImportKeyRequest(parent=req.parent(request), key_name=request.match_info["name"],
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

    async def get_rotation_policy(self, request: web.Request) -> web.Response:
        found = await self._api.GetKeyRotationPolicy(
            pb.GetKeyRotationPolicyRequest(name=self._name(request)), cast(Context, None)
        )
        return web.json_response(shapes.rotation_policy(found, f"https://{request.host}{request.path}"))

    async def set_rotation_policy(self, request: web.Request) -> web.Response:
        policy = shapes.rotation_policy_spec(await self._body(request))
        stored = await self._api.UpdateKeyRotationPolicy(
            pb.UpdateKeyRotationPolicyRequest(name=self._name(request), policy=policy), cast(Context, None)
        )
        return web.json_response(shapes.rotation_policy(stored, f"https://{request.host}{request.path}"))

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

    async def backup(self, request: web.Request) -> web.Response:
        made = await self._api.BackupKey(pb.BackupKeyRequest(name=self._name(request)), cast(Context, None))
        return web.json_response({"value": shapes.b64url(made.backup)})

    async def restore(self, request: web.Request) -> web.Response:
        blob = shapes.from_b64url("value", (await self._body(request)).get("value"))
        restored = await self._api.RestoreKey(
            pb.RestoreKeyRequest(parent=req.parent(request), backup=blob), cast(Context, None)
        )
        return web.json_response(shapes.key_bundle(restored))

    async def purge(self, request: web.Request) -> web.Response:
        await self._api.PurgeDeletedKey(pb.PurgeDeletedKeyRequest(name=self._name(request)), cast(Context, None))
        return web.Response(status=204)

    async def crypto(self, request: web.Request) -> web.Response:
        method = CRYPTO_OPERATIONS.get(request.match_info["operation"].lower())
        if method is None:
            raise web.HTTPNotFound()
        body = await self._body(request)
        name = self._name(request, request.match_info.get("version") or None)
        if method == "Sign":
            sign = pb.SignRequest(name=name, algorithm=shapes.signature_algorithm(body),
                                  digest=shapes.from_b64url("value", body.get("value")))  # fmt: skip
            signed = await self._api.Sign(sign, cast(Context, None))
            return web.json_response({"kid": signed.key_id, "value": shapes.b64url(signed.signature)})
        if method == "Verify":
            checked = await self._api.Verify(
                pb.VerifyRequest(name=name, algorithm=shapes.signature_algorithm(body),
                                 digest=shapes.from_b64url("digest", body.get("digest")),
                                 signature=shapes.from_b64url("value", body.get("value"))),
                cast(Context, None),
            )  # fmt: skip
            return web.json_response({"value": checked.valid})
        alg, value = shapes.algorithm(body), shapes.from_b64url("value", body.get("value"))
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

    async def list_keys(self, request: web.Request) -> web.Response:
        size, token = req.page(request)
        found = await self._api.ListKeys(
            pb.ListKeysRequest(parent=req.parent(request), page_size=size, page_token=token), cast(Context, None)
        )
        return req.listing(request, [shapes.key_item(k, versioned=False) for k in found.keys], size,
                           found.next_page_token)  # fmt: skip

    async def list_versions(self, request: web.Request) -> web.Response:
        size, token = req.page(request)
        found = await self._api.ListKeyVersions(
            pb.ListKeyVersionsRequest(parent=self._name(request), page_size=size, page_token=token), cast(Context, None)
        )
        return req.listing(request, [shapes.key_item(k, versioned=True) for k in found.versions], size,
                           found.next_page_token)  # fmt: skip

    async def list_deleted(self, request: web.Request) -> web.Response:
        size, token = req.page(request)
        found = await self._api.ListDeletedKeys(
            pb.ListDeletedKeysRequest(parent=req.parent(request), page_size=size, page_token=token),
            cast(Context, None),
        )
        return req.listing(request, [shapes.deleted_item(d) for d in found.deleted_keys], size,
                           found.next_page_token)  # fmt: skip
