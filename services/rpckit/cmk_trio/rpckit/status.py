"""The one place that maps domain errors to gRPC status codes with rich details, and back.

Server side: `ErrorInterceptor` wraps every handler; a `ServiceError` becomes its status
code plus `google.rpc.ErrorInfo` (and `BadRequest` field violations); anything else becomes
INTERNAL with a generic message, its traceback going only to the server's log.

Client side: `error_from_rpc` turns a `grpc.aio.AioRpcError` back into the typed error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from cmk_trio.rpckit import errors
from cmk_trio.rpckit.channels import MAX_MESSAGE_BYTES
from cmk_trio.rpckit.observe import REQUEST_ID_HEADER, current_call, current_request_id
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.types import (
    Context,
    Continuation,
    Deserializer,
    Handler,
    Message,
    Stream,
    Unary,
    WrapCache,
    rewrap,
)

log = logging.getLogger(__name__)

# Most specific first: the first base the exception is an instance of wins.
CODES: tuple[tuple[type[errors.ServiceError], grpc.StatusCode], ...] = (
    (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.Aborted, grpc.StatusCode.ABORTED),
    (errors.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
)
_ERROR_FOR_CODE = {code: cls for cls, code in CODES}


def status_code_of(error: errors.ServiceError) -> grpc.StatusCode:
    """The status code a domain error is sent with."""
    for cls, code in CODES:
        if isinstance(error, cls):
            return code
    return grpc.StatusCode.INTERNAL


def to_status(error: errors.ServiceError, domain: str) -> grpc.Status:
    """A `grpc.Status` carrying the error's code, message, ErrorInfo and field violations."""
    code = status_code_of(error)
    details = []
    info = error_details_pb2.ErrorInfo(reason=error.reason.value, domain=domain)
    info.metadata.update(error.metadata)
    details.append(info)
    if error.field_violations:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                for v in error.field_violations
            ]
        )
        details.append(bad)
    packed = []
    for detail in details:
        any_detail = any_pb2.Any()
        any_detail.Pack(detail)
        packed.append(any_detail)
    proto = status_pb2.Status(code=code.value[0], message=error.message, details=packed)
    return rpc_status.to_status(proto)


def internal_status(domain: str) -> grpc.Status:
    """The status for an unexpected exception: no detail of it reaches the wire."""
    info = error_details_pb2.ErrorInfo(reason=Reason.INTERNAL.value, domain=domain)
    any_detail = any_pb2.Any()
    any_detail.Pack(info)
    proto = status_pb2.Status(
        code=code_pb2.INTERNAL,
        message="internal error; the server logged the details",
        details=[any_detail],
    )
    return rpc_status.to_status(proto)


def error_info_of(rpc_error: grpc.aio.AioRpcError | grpc.RpcError) -> error_details_pb2.ErrorInfo | None:
    """The ErrorInfo inside a failed call's status, if there is one (none when the status
    details do not match the call's code: gRPC replaced the status, e.g. metadata too large)."""
    try:
        status = rpc_status.from_call(rpc_error)  # type: ignore[arg-type]
    except ValueError:
        return None
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    return None


def error_from_rpc(rpc_error: grpc.aio.AioRpcError) -> errors.ServiceError:
    """The typed error for a failed call; unknown reasons and codes become INTERNAL/Unavailable."""
    code = rpc_error.code()
    info = error_info_of(rpc_error)
    message = rpc_error.details() or code.name
    cls = _ERROR_FOR_CODE.get(code)
    if cls is None:
        cls = errors.Unavailable if code == grpc.StatusCode.DEADLINE_EXCEEDED else errors.ServiceError
    if info is None:
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return cls(
                Reason.DEADLINE_EXCEEDED, "the call did not finish within its deadline; retry, or allow it longer"
            )
        reason = Reason.DEPENDENCY_UNAVAILABLE if cls is errors.Unavailable else Reason.INTERNAL
        return cls(reason, message)
    metadata = dict(info.metadata)
    metadata.setdefault("domain", info.domain)
    try:
        reason = Reason(info.reason)
    except ValueError:  # a newer server's reason: keep it for the person reading
        reason = Reason.INTERNAL
        metadata.setdefault("wire_reason", info.reason)
    return cls(reason, message, metadata=metadata)


RETRY_PUSHBACK_HEADER = "grpc-retry-pushback-ms"
"""gRPC's server pushback (gRFC A6): a negative value tells the client's retries to stop."""


def _with_request_id(status: grpc.Status, *extra: tuple[str, str]) -> grpc.Status:
    """The status with the call's request id (and `extra` pairs) beside its details in the
    trailing metadata (which the status replaces as a whole)."""
    request_id = current_request_id()
    pairs = (*extra, (REQUEST_ID_HEADER, request_id)) if request_id is not None else extra
    if not pairs:
        return status
    return _Status(status.code, status.details, (*tuple(status.trailing_metadata or ()), *pairs))


@dataclass(frozen=True)
class _Status(grpc.Status):
    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...]


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Applies the error mapping to every unary and server-streaming handler.

    Servicers raise; they never call `context.abort` themselves.
    """

    def __init__(self, domain: str, throttle: Throttle | None = None) -> None:
        self._domain = domain
        self._throttle = throttle or Throttle()
        self._wrapped = WrapCache()

    async def intercept_service(
        self,
        continuation: Continuation,
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        return self._wrapped.get(
            method,
            handler,
            lambda: rewrap(
                handler,
                lambda inner: self._wrap_unary(inner, method),
                lambda inner: self._wrap_stream(inner, method),
                _tolerant,
            ),
        )

    async def _abort(self, context: Context, exc: BaseException, method: str) -> None:
        """Answer with the error's status; log it, at most so often per kind (a flood of bad
        calls must not become a flood of log lines)."""
        facts = current_call()
        if isinstance(exc, errors.ServiceError):
            if facts is not None:
                facts.refusal_reason = exc.reason.value  # (counted by reason in the metrics)
            held = self._throttle.allow((method, exc.reason.value))
            if held is not None:
                extra = {"method": method, "reason": exc.reason.value, "code": status_code_of(exc).name}
                log.info("call refused", extra={**extra, "suppressed_before": held} if held else extra)
            no_retry = isinstance(exc, errors.Unavailable) and not exc.retry_now
            pushback = ((RETRY_PUSHBACK_HEADER, "-1"),) if no_retry else ()
            await context.abort_with_status(_with_request_id(to_status(exc, self._domain), *pushback))
        if facts is not None:
            facts.refusal_reason = Reason.INTERNAL.value
        held = self._throttle.allow((method, "INTERNAL"))
        if held is not None:
            log.error("unexpected error in %s", method, exc_info=exc, extra={"suppressed_before": held})
        await context.abort_with_status(_with_request_id(internal_status(self._domain)))

    def _wrap_unary(self, behavior: Unary, method: str) -> Unary:
        async def wrapped(request: Message, context: Context) -> Message:
            try:
                if isinstance(request, Unreadable):
                    raise request.refusal()
                return await behavior(request, context)
            except grpc.aio.AbortError:
                raise  # context.abort() unwinds the handler this way; let it pass
            except Exception as exc:
                await self._abort(context, exc, method)

        return wrapped

    def _wrap_stream(self, behavior: Stream, method: str) -> Stream:
        async def wrapped(request: Message, context: Context) -> AsyncIterator[Message]:
            try:
                if isinstance(request, Unreadable):
                    raise request.refusal()
                async for response in behavior(request, context):
                    yield response
            except grpc.aio.AbortError:
                raise  # context.abort() unwinds the handler this way; let it pass
            except Exception as exc:
                await self._abort(context, exc, method)

        return wrapped


@dataclass(frozen=True)
class Unreadable:
    """What a handler is given instead of a request whose bytes could not be read (gRPC would
    answer a deserializer's exception with UNKNOWN "Unexpected DecodeError" and a traceback)."""

    reason: Reason
    message: str

    def refusal(self) -> errors.InvalidArgument:
        return errors.InvalidArgument(self.reason, self.message)


def _tolerant(deserialize: Deserializer) -> Deserializer:
    def read(raw: bytes) -> Message:
        if len(raw) > MAX_MESSAGE_BYTES:
            return Unreadable(
                Reason.REQUEST_TOO_LARGE, f"the request is {len(raw)} bytes; a request may be {MAX_MESSAGE_BYTES}"
            )
        try:
            return deserialize(raw)
        except Exception:  # DecodeError, or protobuf's own nesting limit
            return Unreadable(Reason.REQUEST_MALFORMED, "the request bytes are not a valid message of this method")

    return read


@dataclass
class _Window:
    start: float
    let_through: int = 1
    held: int = 0


class Throttle:
    """Lets at most `per_window` log lines of each kind through per `window` seconds; the
    ones held back are counted, and the next line let through says how many."""

    def __init__(self, per_window: int = 10, window: float = 60.0, now: Callable[[], float] = time.monotonic) -> None:
        self._per_window = per_window
        self._window = window
        self._now = now
        self._kinds: dict[tuple[str, str], _Window] = {}

    def allow(self, kind: tuple[str, str]) -> int | None:
        """None to hold the line back; else how many of its kind were held back before it."""
        now = self._now()
        current = self._kinds.get(kind)
        if current is None or now - current.start >= self._window:
            self._kinds[kind] = _Window(now)
            return current.held if current is not None else 0
        if current.let_through < self._per_window:
            current.let_through += 1
            held, current.held = current.held, 0
            return held
        current.held += 1
        return None
