"""Bearer-token authentication for servers: the interceptor validates the token of every
call (but the public ones) and leaves the caller in a contextvar for the servicer."""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Mapping
from contextlib import AbstractContextManager

import grpc

from cmk_trio.rpckit.errors import ServiceError, Unauthenticated
from cmk_trio.rpckit.observe import note_caller
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.tokens import TokenValidator, VerifiedToken
from cmk_trio.rpckit.types import Context, Continuation, Handler, Message, Stream, Unary, WrapCache, bound, rewrap

_caller: contextvars.ContextVar[VerifiedToken | None] = contextvars.ContextVar("cmk_caller", default=None)


def current_caller() -> VerifiedToken:
    """The verified token of the call being served. Raises if the call was not authenticated,
    so a servicer that forgets its method is public fails closed."""
    caller = _caller.get()
    if caller is None:
        raise Unauthenticated(Reason.TOKEN_MISSING, "this call needs a bearer token")
    return caller


def verified_caller() -> VerifiedToken | None:
    """The verified token of the call being served, or None for a call that was not
    authenticated (a public method): for code that counts calls, not for code that
    authorises them (which uses `current_caller`)."""
    return _caller.get()


def serving_as(token: VerifiedToken) -> AbstractContextManager[VerifiedToken | None]:
    """`token` as the caller of the call being served, for the length of the block: what the
    AuthInterceptor does for a gRPC call, for a door that authenticates its own (HTTPS)."""
    return bound(_caller, token)


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    """The token of an "authorization: Bearer <token>" metadata entry."""
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            break
    raise Unauthenticated(
        Reason.TOKEN_MISSING,
        'this call needs "authorization: Bearer <token>" metadata',
    )


Audience = str | frozenset[str]
"""What a method's tokens must be for: one audience, or any of a set."""

OnRefused = Callable[[str, ServiceError | None], Awaitable[None]]
"""Told of every refused authentication: the full method name and the refusal (None when the
validation itself failed unexpectedly, which refuses the call as INTERNAL)."""


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Validates the caller's token for `audience` on every method not in `public_methods`.

    Must sit inside the ErrorInterceptor, so that its refusals are mapped like any other.
    A service that records refusals (the key vault's audit log) passes `on_refused`; the
    refusal is answered only after it returns, and if it raises, that error is the answer.
    """

    def __init__(
        self,
        validator: TokenValidator,
        audience: str | Mapping[str, Audience],
        public_methods: Collection[str],
        *,
        on_refused: OnRefused | None = None,
    ) -> None:
        """`audience` is one audience for every method, or a map from a full method name
        ("/cmk.identity.v1.IdentityService/GetSubscription"), a service name
        ("cmk.speech.v1.ApplicationService") or "" (every other method) to the audience, or the
        set of audiences, a token must be for; the most specific key wins."""
        self._validator = validator
        self._audiences = {"": audience} if isinstance(audience, str) else dict(audience)
        self._public = frozenset(public_methods)
        self._on_refused = on_refused
        self._wrapped = WrapCache()

    async def intercept_service(
        self,
        continuation: Continuation,
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method in self._public:
            return handler
        if handler_call_details.method.startswith(("/grpc.health.", "/grpc.reflection.")):
            return handler
        method = handler_call_details.method
        audience = self._audience_of(method)

        def unary(inner: Unary) -> Unary:
            async def authenticated(request: Message, context: Context) -> Message:
                token = await self._authenticate(context, method, audience)
                with bound(_caller, token):
                    return await inner(request, context)

            return authenticated

        def stream(inner: Stream) -> Stream:
            async def authenticated(request: Message, context: Context) -> AsyncIterator[Message]:
                token = await self._authenticate(context, method, audience)
                with bound(_caller, token):
                    async for response in inner(request, context):
                        yield response

            return authenticated

        return self._wrapped.get(method, handler, lambda: rewrap(handler, unary, stream))

    def _audience_of(self, method: str) -> Audience:
        service = method.lstrip("/").split("/", 1)[0]
        audience = self._audiences.get(method) or self._audiences.get(service) or self._audiences.get("")
        if audience is None:  # a service nobody mapped: no token can be right for it
            raise RuntimeError(f"no audience configured for {service}")
        return audience

    async def _authenticate(self, context: Context, method: str, audience: Audience) -> VerifiedToken:
        try:
            token = bearer_token(context.invocation_metadata())
            verified = await self._validator.validate(token, audience=audience)
        except ServiceError as refusal:
            if self._on_refused is not None:
                await self._on_refused(method, refusal)
            raise
        except Exception:
            if self._on_refused is not None:
                await self._on_refused(method, None)
            raise
        note_caller(verified.object_id, verified.tenant_id)  # the call's log lines say who called
        return verified
