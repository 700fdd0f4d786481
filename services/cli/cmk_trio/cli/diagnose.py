"""One clear line instead of gRPC's words when the CLI reaches the wrong thing: an endpoint
that is another service ("Method not found!"), a TLS service called without TLS ("Socket
closed") or a plain one called with it ("WRONG_VERSION_NUMBER"); over TLS, another service is
told by its certificate, which names it. An interceptor on the CLI's
channels, which knows the endpoint it dials and whether it speaks TLS."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from cmk_trio.rpckit import errors
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.status import error_info_of

WHERE = {
    "cmk.identity.": ("identity", "--endpoint"),
    "cmk.keyvault.": ("key vault", "--keyvault-endpoint"),
    "cmk.speech.": ("speech", "--speech-endpoint"),
}
CLOSED_AT_ONCE = ("Socket closed", "Connection reset", "connection reset")
NOT_TLS = ("WRONG_VERSION_NUMBER", "Tls handshake failed", "TSI_PROTOCOL_FAILURE")
UNTRUSTED = ("CERTIFICATE_VERIFY_FAILED", "certificate verify failed")
NOT_THAT_SERVICE = ("Hostname Verification Check failed",)
"""A certificate of the right CA that does not name the service the CLI meant to call."""


def explain(
    exc: grpc.aio.AioRpcError, method: str, endpoint: str, tls: bool, *, answered: bool = False
) -> errors.ServiceError | None:
    """The clear error for a failure that is the caller's aim, not the service's refusal.
    `answered`: the endpoint has answered a call on this channel before, so TLS or not is
    right, and a connection closed now is the service going away (a replica killed, a
    restart): gRPC's own UNAVAILABLE, which the client retries where it is safe."""
    if error_info_of(exc) is not None:
        return None  # the service answered with its own reason
    details = exc.details() or ""
    service = method.lstrip("/").split("/", 1)[0]
    what, flag = next((w for prefix, w in WHERE.items() if service.startswith(prefix)), ("the", "--endpoint"))
    if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
        return errors.FailedPrecondition(
            Reason.ENDPOINT_WRONG_SERVICE,
            f"{endpoint} is not the {what} service (it does not serve {service}): check {flag}",
            metadata={"endpoint": endpoint, "method": method},
        )
    if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN) or answered:
        return None
    if tls and any(s in details for s in NOT_THAT_SERVICE):
        return errors.FailedPrecondition(
            Reason.ENDPOINT_WRONG_SERVICE,
            f"{endpoint} is not the {what} service (its certificate names another): check {flag}",
            metadata={"endpoint": endpoint, "method": method},
        )
    if not tls and any(s in details for s in CLOSED_AT_ONCE):
        message = (
            f"{endpoint} closed the connection without answering: it most likely wants TLS; give --tls-dir"
            " (cmk up keeps its certificates in DATA_DIR/tls)"
        )
    elif tls and any(s in details for s in NOT_TLS):
        message = f"{endpoint} does not speak TLS (cmk up --insecure serves plain TCP): sign in without --tls-dir"
    elif tls and any(s in details for s in UNTRUSTED):
        message = f"{endpoint}'s certificate is not from the CA in --tls-dir: give the services' own PKI directory"
    else:
        return None
    return errors.Unavailable(Reason.ENDPOINT_TLS_MISMATCH, message, metadata={"endpoint": endpoint})


class EndpointDiagnosis(grpc.aio.UnaryUnaryClientInterceptor):
    """Turns the failures `explain` recognises into its clear errors."""

    def __init__(self, endpoint: str, tls: bool) -> None:
        self._endpoint = endpoint
        self._tls = tls
        self._answered = False

    async def intercept_unary_unary(
        self,
        # grpc's interceptor interface, for calls of any method: their messages are the method's own
        continuation: Callable[..., Awaitable[Any]],
        client_call_details: Any,  # (grpc's, as above)
        request: Any,  # (grpc's, as above)
    ) -> Any:  # (grpc's, as above)
        call = await continuation(client_call_details, request)
        try:
            await call
        except grpc.aio.AioRpcError as exc:
            method = client_call_details.method
            method = method.decode() if isinstance(method, bytes) else str(method)
            clear = explain(exc, method, self._endpoint, self._tls, answered=self._answered)
            if error_info_of(exc) is not None:
                self._answered = True  # (a refusal of the service's own: it was reached)
            if clear is not None:
                raise clear from None
            raise
        self._answered = True
        return call
