"""Identity's HTTP face, for validators and clients written against identity providers
(msal, azure-identity, @azure/identity, any OpenID Connect library): per tenant, an OpenID
Connect discovery document, the JWKS it names, and the OAuth 2.0 client-credentials token
endpoint (RFC 6749 section 4.4), at Entra ID's v2.0 paths; and msal's instance discovery:

    GET  /{tenant}/v2.0/.well-known/openid-configuration
    GET  /{tenant}/discovery/v2.0/keys
    POST /{tenant}/oauth2/v2.0/token     grant_type=client_credentials&client_id=...&scope=AUD/.default
    GET  /common/discovery/instance?authorization_endpoint=https://HOST/{tenant}/oauth2/v2.0/authorize
    GET  /{tenant}/oauth2/v2.0/authorize (published, as clients require; refused: no interactive flows)

The token endpoint is the gRPC IssueToken call by another road: the same issuer, so the same
secret checks, pauses after failed sign-ins, disabled principals and call limits. A refusal is
an RFC 6749 error object in Entra's shape (entra.py: the AADSTS code, `error_codes`,
`trace_id` = the request id, also in the x-request-id and x-ms-request-id headers,
`correlation_id` = the client's client-request-id) with our stable `reason`, and it is logged
as the gRPC refusals are, never with the secret.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from aiohttp import web

from cmk_trio.identity import entra
from cmk_trio.identity.graph import GraphFront
from cmk_trio.identity.issuer import SigningKeyRing, TokenIssuer, TokenPolicy
from cmk_trio.identity.storage import IdentityStore
from cmk_trio.rpckit import errors
from cmk_trio.rpckit.admission import Caller, CallLimits
from cmk_trio.rpckit.clock import Clock
from cmk_trio.rpckit.config import TlsConfig
from cmk_trio.rpckit.devca import AZURE_NAMES
from cmk_trio.rpckit.http_listener import RunningHttp, serve_http
from cmk_trio.rpckit.listeners import ConnectionLimits
from cmk_trio.rpckit.observe import REQUEST_ID_HEADER, Metrics, request_id_from, serving_call
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.status import Throttle
from cmk_trio.rpckit.tokens import issuer_for
from cmk_trio.rpckit.validation import require_uuid

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024
"""A token request is a few hundred bytes; anything near this is not one."""
BODY_SECONDS = 5
"""How long a request's body may take to arrive (a slow one holds no place meanwhile)."""
DEFAULT_SCOPE_SUFFIX = "/.default"
DISCOVERY_PATH = "/{tenant}/v2.0/.well-known/openid-configuration"
KEYS_PATH = "/{tenant}/discovery/v2.0/keys"
TOKEN_PATH = "/{tenant}/oauth2/v2.0/token"  # noqa: S105 (a path, not a password)
AUTHORIZE_PATH = "/{tenant}/oauth2/v2.0/authorize"
INSTANCE_DISCOVERY_PATH = "/common/discovery/instance"
KEYS_MAX_AGE = 60
"""Seconds a validator may cache the key set: a revoked signing key leaves it within this."""
FORM = "application/x-www-form-urlencoded"
SAID = web.RequestKey("said", entra.Said)
ENDPOINTS = (
    f"the endpoints are GET {DISCOVERY_PATH}, GET {KEYS_PATH}, POST {TOKEN_PATH} and GET {INSTANCE_DISCOVERY_PATH}"
)
TOKEN_PARAMETERS = frozenset({"grant_type", "client_id", "client_secret", "scope"})


class OAuthError(Exception):
    """A refusal in RFC 6749's terms (section 5.2), with our reason beside it (and, for a
    pause, how long to wait)."""

    def __init__(
        self, status: int, error: str, reason: Reason, description: str, retry_after: str | None = None
    ) -> None:
        super().__init__(description)
        self.status, self.error, self.reason, self.description = status, error, reason, description
        self.retry_after = retry_after


def _invalid_request(reason: Reason, description: str) -> OAuthError:
    return OAuthError(400, "invalid_request", reason, description)


def oauth_error_of(exc: errors.ServiceError) -> OAuthError:
    """What a refusal of the token call is in OAuth's words: the client's credentials are
    `invalid_client` (401), a disabled principal `unauthorized_client`, an audience nobody
    serves `invalid_scope`, a pause after failed sign-ins or a full service 429/503."""
    if exc.reason is Reason.AUDIENCE_UNKNOWN:
        return OAuthError(400, "invalid_scope", exc.reason, exc.message)
    if isinstance(exc, errors.Unauthenticated):
        return OAuthError(401, "invalid_client", exc.reason, exc.message)
    if isinstance(exc, errors.PermissionDenied):
        return OAuthError(400, "unauthorized_client", exc.reason, exc.message)
    wait = exc.metadata.get("retry_after_seconds") or "1"
    if isinstance(exc, errors.ResourceExhausted):
        return OAuthError(429, "temporarily_unavailable", exc.reason, exc.message, retry_after=wait)
    if isinstance(exc, errors.Unavailable):
        return OAuthError(503, "temporarily_unavailable", exc.reason, exc.message, retry_after=wait)
    return _invalid_request(exc.reason, exc.message)  # bad fields, an unknown tenant


@dataclass(frozen=True)
class TokenRequest:
    """A client-credentials request, read from the form and (client_secret_basic) the
    Authorization header."""

    tenant_id: str
    client_id: str
    client_secret: str
    audience: str
    basic: bool

    @classmethod
    async def read(cls, request: web.Request, tenant_id: str) -> TokenRequest:
        if request.query.keys() & TOKEN_PARAMETERS:
            # RFC 6749 2.3.1: credentials never in the URL (it ends up in logs and histories).
            raise _invalid_request(Reason.FIELD_INVALID, "send the token request's parameters in the form body")
        if request.content_type != FORM:
            raise _invalid_request(Reason.FIELD_INVALID, f"the token request is a form: Content-Type {FORM}")
        try:
            form = await request.post()
        except web.HTTPRequestEntityTooLarge:
            raise OAuthError(
                413, "invalid_request", Reason.REQUEST_TOO_LARGE, f"a token request is at most {MAX_BODY_BYTES} bytes"
            ) from None
        except (ValueError, UnicodeDecodeError, LookupError):  # (LookupError: a charset Python does not know)
            raise _invalid_request(Reason.REQUEST_MALFORMED, "the form body is not valid") from None
        fields: dict[str, str] = {}
        for name in TOKEN_PARAMETERS:
            values = form.getall(name, [])
            if len(values) > 1:  # RFC 6749 3.2: no parameter twice
                raise _invalid_request(Reason.FIELD_INVALID, f"{name} is given more than once")
            if values and not isinstance(values[0], str):
                raise _invalid_request(Reason.FIELD_INVALID, f"{name} must be a form field, not a file")
            fields[name] = str(values[0]) if values else ""
        basic = _basic_credentials(request.headers.get("Authorization", ""))
        if basic is not None:
            if fields["client_secret"] or (fields["client_id"] and fields["client_id"] != basic[0]):
                raise _invalid_request(Reason.FIELD_INVALID, "authenticate the client one way, not two")
            fields["client_id"], fields["client_secret"] = basic
        grant = fields["grant_type"]
        if not grant:
            raise _invalid_request(Reason.FIELD_REQUIRED, "grant_type is required (client_credentials)")
        if grant != "client_credentials":
            raise OAuthError(
                400, "unsupported_grant_type", Reason.FIELD_INVALID, "this endpoint grants client_credentials only"
            )
        return cls(
            tenant_id, fields["client_id"], fields["client_secret"], _audience_of(fields["scope"]), basic is not None
        )


def _basic_credentials(header: str) -> tuple[str, str] | None:
    """client_secret_basic (RFC 6749 2.3.1): both halves form-urlencoded, then base64."""
    scheme, _, value = header.partition(" ")
    if not header or scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise OAuthError(
            401, "invalid_client", Reason.INVALID_CLIENT_CREDENTIALS, "the Basic credentials are not valid"
        ) from None
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        raise OAuthError(
            401, "invalid_client", Reason.INVALID_CLIENT_CREDENTIALS, "the Basic credentials are not valid"
        )
    return unquote(client_id.replace("+", " ")), unquote(secret.replace("+", " "))


def _audience_of(scope: str) -> str:
    """`https://vault.azure.net/.default` asks for a token for https://vault.azure.net, as
    Entra's v2.0 endpoint reads it; one resource per token."""
    if not scope:
        raise _invalid_request(Reason.FIELD_REQUIRED, "scope is required: the audience followed by /.default")
    scopes = scope.split()
    if len(scopes) != 1 or not scopes[0].endswith(DEFAULT_SCOPE_SUFFIX):
        raise OAuthError(
            400, "invalid_scope", Reason.FIELD_INVALID,
            "the client-credentials grant takes one scope, the audience followed by /.default",
        )  # fmt: skip
    return scopes[0].removesuffix(DEFAULT_SCOPE_SUFFIX)


class OidcFront:
    """The routes, over the service's own issuer, keys and store."""

    def __init__(
        self,
        *,
        store: IdentityStore,
        issuer: TokenIssuer,
        keys: SigningKeyRing,
        policy: TokenPolicy,
        limits: CallLimits,
        metrics: Metrics | None,
        public_url: Callable[[], str],
        clock: Clock,
        graph: GraphFront | None = None,
    ) -> None:
        self._graph = graph
        self._store = store
        self._issuer = issuer
        self._keys = keys
        self._policy = policy
        self._limits = limits
        self._metrics = metrics
        self._public_url = public_url
        self._clock = clock
        self._throttle = Throttle()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[self._answer])

        # (any segment reaches the tenant check, which says what is wrong with it)
        def route(path: str) -> str:
            return path.replace("{tenant}", "{tenant:[^/]+}")

        app.router.add_get(route(DISCOVERY_PATH), self.discovery, name="discovery")
        app.router.add_get(route(KEYS_PATH), self.jwks, name="jwks")
        app.router.add_post(route(TOKEN_PATH), self.token, name="token")
        app.router.add_get(INSTANCE_DISCOVERY_PATH, self.instance_discovery, name="instance_discovery")
        app.router.add_route("*", route(AUTHORIZE_PATH), self.authorize, name="authorize")
        if self._graph is not None:
            self._graph.add_routes(app)
        return app

    @web.middleware
    async def _answer(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Every answer carries the request id; a refusal is an OAuth error object, counted
        and logged (at most so often per kind) like the gRPC refusals."""
        request_id = request_id_from(request.headers.items())
        route = request.match_info.route.name or "unknown"
        with serving_call(request_id):
            try:
                # The body first, within a time limit, and only then a place among the calls
                # served at once: a client that trickles its body holds no place meanwhile.
                # Every request here is anonymous, counted by its client's address; the token
                # endpoint's against the sign-ins' budget, which the gRPC IssueToken shares.
                await _read_body(request)
                caller = Caller.anonymous(request.remote or "", sign_in=route == "token")
                with self._limits.call(caller):
                    response = await handler(request)
            except OAuthError as exc:
                response = self._refusal(request, route, exc, request_id)
            except errors.ServiceError as exc:
                response = self._refusal(request, route, oauth_error_of(exc), request_id)
            except web.HTTPMethodNotAllowed as exc:
                refused = OAuthError(
                    405,
                    "invalid_request",
                    Reason.HTTP_METHOD_NOT_ALLOWED,
                    f"{request.method} is not allowed here; use {', '.join(sorted(exc.allowed_methods))}",
                )
                response = self._refusal(request, route, refused, request_id)
                response.headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
            except ConnectionResetError:  # the client went away mid-request: nobody to answer
                response = web.Response(status=499)
            except web.HTTPException:  # no such path
                refused = OAuthError(404, "invalid_request", Reason.HTTP_PATH_UNKNOWN, f"no endpoint here; {ENDPOINTS}")
                response = self._refusal(request, route, refused, request_id)
            except Exception:
                held = self._throttle.allow((route, "INTERNAL"))
                if held is not None:
                    log.exception("unexpected error in HTTP %s", route, extra={"suppressed_before": held})
                body = entra.error_body("server_error", Reason.INTERNAL, "internal error; the service log has the"
                                        " details", self._said(request, request_id))  # fmt: skip
                body["error_codes"] = [entra.INTERNAL]
                response = _json(body, status=500, no_store=True)
        response.headers[REQUEST_ID_HEADER] = request_id
        response.headers[entra.TRACE_HEADER] = request_id
        response.headers[entra.CORRELATION_HEADER] = self._said(request, request_id).correlation_id
        if response.status < 400 or response.status >= 500:  # (refusals are counted with their reason)
            self._count(route, response.status)
        return response

    def _refusal(self, request: web.Request, route: str, exc: OAuthError, request_id: str) -> web.Response:
        held = self._throttle.allow((route, exc.reason.value))
        if held is not None:
            extra = {"method": f"HTTP {request.method} {route}", "reason": exc.reason.value, "code": exc.status}
            log.info("call refused", extra={**extra, "suppressed_before": held} if held else extra)
        body = entra.error_body(exc.error, exc.reason, exc.description, self._said(request, request_id))
        response = _json(body, status=exc.status, no_store=True)
        if exc.status == 401 and request.headers.get("Authorization", "").lower().startswith("basic"):
            response.headers["WWW-Authenticate"] = 'Basic realm="token"'
        if exc.retry_after is not None:
            response.headers["Retry-After"] = exc.retry_after
        self._count(route, exc.status, exc.reason.value)
        return response

    def _public_for(self, request: web.Request) -> str:
        """The base URL the answer names: Entra's own host when the client came by that name
        (through the trio's proxy, which tunnels it here), else where clients reach this door."""
        host = _host_of(request)
        return f"https://{host}" if host in AZURE_NAMES["identity"] else self._public_url()

    def _said(self, request: web.Request, request_id: str) -> entra.Said:
        """The request's trace id, correlation id and time, once per request (kept on it)."""
        said = request.get(SAID)
        if said is None:
            said = entra.Said(request_id, entra.correlation_id(request.headers), self._clock.now())
            request[SAID] = said
        return said

    def _count(self, route: str, status: int, reason: str = "") -> None:
        if self._metrics is not None:
            self._metrics.http_requests.labels(self._metrics.service, route, str(status), reason).inc()

    async def _tenant(self, request: web.Request) -> str:
        tenant_id = require_uuid("tenant", request.match_info["tenant"])  # (its errors are invalid_request)
        if await self._store.get_tenant(tenant_id) is None:
            raise OAuthError(
                400, "invalid_tenant", Reason.TENANT_NOT_FOUND,
                f"Tenant '{tenant_id}' not found. Check to make sure you have the correct tenant ID.",
            )  # fmt: skip
        return tenant_id

    async def discovery(self, request: web.Request) -> web.Response:
        tenant_id = await self._tenant(request)
        base = f"{self._public_for(request)}/{tenant_id}"
        document: dict[str, object] = {
            "issuer": issuer_for(self._policy.issuer_base, tenant_id),
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            # Published because msal and msal-node require it; it answers that only the
            # client-credentials grant is served here (no interactive sign-in).
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "request_uri_parameter_supported": False,
            "http_logout_supported": False,
            "frontchannel_logout_supported": False,
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": sorted(a + DEFAULT_SCOPE_SUFFIX for a in self._policy.audiences),
            "claims_supported": ["aud", "iss", "iat", "nbf", "exp", "sub", "oid", "tid", "appid", "idtyp",
                                 "ver", "jti", "roles", "xms_mirid"],
        }  # fmt: skip
        return _json(document, max_age=3600)

    async def instance_discovery(self, request: web.Request) -> web.Response:
        """msal's question about an authority before it trusts it: answered for this door's
        own host names (as clients reach it, and as this request named it), refused as Entra
        refuses an instance it does not know for any other."""
        asked = request.query.get("authorization_endpoint", "")
        if not asked:
            raise _invalid_request(Reason.FIELD_REQUIRED, "authorization_endpoint is required")
        public = self._public_for(request)
        ours = {h.lower() for h in (urlsplit(public).hostname, _host_of(request)) if h}
        answer = entra.instance_discovery(asked, ours, public)
        if answer is None:
            raise OAuthError(400, "invalid_instance", Reason.AUTHORITY_UNKNOWN, "Unknown or invalid instance.")
        return _json(answer, max_age=3600)

    async def authorize(self, request: web.Request) -> web.Response:
        await self._tenant(request)
        raise OAuthError(
            400, "unsupported_response_type", Reason.FIELD_INVALID,
            "this authority serves the client-credentials grant only (POST to the token endpoint);"
            " interactive sign-in is not served",
        )  # fmt: skip

    async def jwks(self, request: web.Request) -> web.Response:
        await self._tenant(request)
        keys = [json.loads(k.public_jwk) for k in await self._keys.published()]
        return _json({"keys": keys}, max_age=KEYS_MAX_AGE)

    async def token(self, request: web.Request) -> web.Response:
        tenant_id = await self._tenant(request)
        asked = await TokenRequest.read(request, tenant_id)
        issued = await self._issuer.client_credentials(
            asked.tenant_id, asked.client_id, asked.client_secret, asked.audience
        )
        body = {
            "token_type": "Bearer",
            "expires_in": issued.expires_in,
            "ext_expires_in": issued.expires_in,
            "access_token": issued.token,
        }
        return _json(body, no_store=True)


def _host_of(request: web.Request) -> str:
    """The host the client named, lower-cased ("" for a Host header yarl cannot read, such as
    one whose port is beyond 65535)."""
    try:
        return (request.url.host or "").lower()
    except ValueError:
        return ""


async def _read_body(request: web.Request) -> None:
    """Read (and keep) the request's body within BODY_SECONDS, refusing one too large."""
    if not request.can_read_body:
        return
    try:
        async with asyncio.timeout(BODY_SECONDS):
            await request.read()
    except TimeoutError:
        raise OAuthError(
            408,
            "invalid_request",
            Reason.REQUEST_TOO_SLOW,
            f"the request's body did not arrive within {BODY_SECONDS} s",
        ) from None
    except web.HTTPRequestEntityTooLarge:
        raise OAuthError(
            413, "invalid_request", Reason.REQUEST_TOO_LARGE, f"a token request is at most {MAX_BODY_BYTES} bytes"
        ) from None
    except web.RequestPayloadError:  # (a body its Content-Encoding or chunking does not describe)
        raise OAuthError(
            400, "invalid_request", Reason.REQUEST_MALFORMED, "the request's body cannot be read as its headers say"
        ) from None


def _json(body: Mapping[str, object], *, status: int = 200, max_age: int = 0, no_store: bool = False) -> web.Response:
    response = web.Response(text=json.dumps(body), status=status, content_type="application/json")
    if no_store:  # RFC 6749 5.1: tokens and refusals are never cached
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
    elif max_age:
        response.headers["Cache-Control"] = f"public, max-age={max_age}"
    return response


async def start_http(
    front: OidcFront, host: str, port: int, tls: TlsConfig, limits: ConnectionLimits | None = None
) -> RunningHttp:
    """Listen on host:port (0: a free port): see rpckit.http_listener.serve_http."""
    return await serve_http(front.app(), host, port, tls, listener="identity https", limits=limits,
                            what="OpenID Connect and the token endpoint")  # fmt: skip
