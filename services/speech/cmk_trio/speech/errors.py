"""Errors of the speech service: the canonical bases with this service's reasons."""

from __future__ import annotations

from cmk_trio.rpckit.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ServiceError,
    Unauthenticated,
    Unavailable,
    invalid_field,
)
from cmk_trio.rpckit.reasons import Reason

DOMAIN = "speech.cmk.dev"
"""The ErrorInfo domain of every error this service sends."""


def operator_required(action: str) -> PermissionDenied:
    return PermissionDenied(Reason.OPERATOR_REQUIRED, f"only the platform operator {action}")


def resource_not_found(resource_id: str) -> NotFound:
    return NotFound(
        Reason.SPEECH_RESOURCE_NOT_FOUND,
        f"speech resource {resource_id} does not exist",
        metadata={"resource_id": resource_id},
    )


def subscription_not_found(subscription_id: str) -> NotFound:
    return NotFound(Reason.SUBSCRIPTION_NOT_FOUND, f"subscription {subscription_id} does not exist")


__all__ = [
    "DOMAIN",
    "Aborted",
    "AlreadyExists",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ServiceError",
    "Unauthenticated",
    "Unavailable",
    "invalid_field",
    "operator_required",
    "resource_not_found",
    "subscription_not_found",
]
