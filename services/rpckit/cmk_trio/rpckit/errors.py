"""The canonical error bases. Domain code raises these (or a service's subclasses); one
interceptor turns them into a gRPC status with `google.rpc.ErrorInfo`.

Nothing here knows about gRPC: an exception carries a stable reason, a message for a person
and structured fields, never a status code (the mapping lives in `rpckit.status`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cmk_trio.rpckit.reasons import Reason


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad field of a request: its path ("principal.display_name") and what is wrong."""

    field: str
    description: str


class ServiceError(Exception):
    """Base of every error a service returns on purpose.

    `message` is shown to the caller, so it must never hold a secret; `metadata` carries the
    structured facts (resource names, limits) that a program can act on.
    """

    def __init__(
        self,
        reason: Reason,
        message: str,
        *,
        metadata: Mapping[str, str] | None = None,
        field_violations: Iterable[FieldViolation] = (),
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.metadata: dict[str, str] = dict(metadata or {})
        self.field_violations: tuple[FieldViolation, ...] = tuple(field_violations)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason.value}: {self.message})"


class InvalidArgument(ServiceError):
    """The request is malformed; retrying it unchanged fails again."""


class Unauthenticated(ServiceError):
    """The caller's credentials are missing, invalid or revoked."""


class PermissionDenied(ServiceError):
    """The caller is known but may not do this."""


class NotFound(ServiceError):
    """The named resource does not exist (or the caller may not know that it does)."""


class AlreadyExists(ServiceError):
    """A resource with that name or identity exists already."""


class FailedPrecondition(ServiceError):
    """The system is not in a state that allows this; something must change first."""


class Aborted(ServiceError):
    """A concurrency conflict (stale etag); read again and retry."""


class ResourceExhausted(ServiceError):
    """A quota or limit is reached."""


class Unavailable(ServiceError):
    """A dependency is down; the call may be retried.

    `retry_now=False` when answering took the whole time a dependency was given and it said
    nothing (a paused container, a network that drops packets): a client's automatic retry
    would come with what is left of the same deadline, wait as long, and end in
    DEADLINE_EXCEEDED, which hides the cause. The status then carries gRPC's server pushback
    "do not retry" (gRFC A6), which gRPC's own retries obey; the caller may still retry."""

    def __init__(
        self,
        reason: Reason,
        message: str,
        *,
        metadata: Mapping[str, str] | None = None,
        field_violations: Iterable[FieldViolation] = (),
        retry_now: bool = True,
    ) -> None:
        super().__init__(reason, message, metadata=metadata, field_violations=field_violations)
        self.retry_now = retry_now


def invalid_field(field: str, reason: Reason, description: str) -> InvalidArgument:
    """An InvalidArgument for one field, with a message that names it."""
    return InvalidArgument(
        reason,
        f"{field}: {description}",
        metadata={"field": field},
        field_violations=[FieldViolation(field, description)],
    )
