"""Errors of the identity service: the canonical bases with this service's reasons."""

from __future__ import annotations

from cmk_trio.rpckit.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from cmk_trio.rpckit.reasons import Reason

DOMAIN = "identity.cmk.dev"
"""The ErrorInfo domain of every error this service sends."""


def not_found(reason: Reason, what: str, name: str) -> NotFound:
    return NotFound(reason, f"{what} {name} does not exist", metadata={"name": name})


def operator_required(action: str) -> PermissionDenied:
    return PermissionDenied(Reason.OPERATOR_REQUIRED, f"only the platform operator may {action}")


def tenant_admin_required(action: str, tenant_id: str) -> PermissionDenied:
    return PermissionDenied(
        Reason.TENANT_ADMIN_REQUIRED,
        f"only a tenant administrator of {tenant_id} (or the operator) may {action}",
        metadata={"tenant_id": tenant_id},
    )


def invalid_client() -> Unauthenticated:
    # One reason and message for an unknown client and a wrong secret, so that a caller
    # cannot learn which client ids exist.
    return Unauthenticated(
        Reason.INVALID_CLIENT_CREDENTIALS,
        "invalid client credentials: check the tenant, client id and secret",
    )


__all__ = [
    "DOMAIN",
    "AlreadyExists",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "Unauthenticated",
    "invalid_client",
    "not_found",
    "operator_required",
    "tenant_admin_required",
]
