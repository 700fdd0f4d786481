"""Errors of the key vault service. Where the real service has an error code for the same
situation, it travels in the ErrorInfo metadata as `akv_error`, so that a person who knows
Azure Key Vault recognises it."""

from __future__ import annotations

from cmk_trio.rpckit.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ServiceError,
    Unauthenticated,
    Unavailable,
)
from cmk_trio.rpckit.reasons import Reason

DOMAIN = "keyvault.cmk.dev"
"""The ErrorInfo domain of every error this service sends."""


def with_akv(error: ServiceError, akv_error: str) -> ServiceError:
    """Attach the real service's error code to an error."""
    error.metadata["akv_error"] = akv_error
    return error


def vault_not_found(name: str) -> NotFound:
    return NotFound(Reason.VAULT_NOT_FOUND, f"vault {name} does not exist (or is deleted)", metadata={"vault": name})


def forbidden_by_policy(object_id: str, permission: str, vault: str, kind: str = "keys") -> PermissionDenied:
    """`kind`: "keys" or "secrets", the permission's half of the access policy."""
    error = PermissionDenied(
        Reason.FORBIDDEN_BY_POLICY,
        f"the caller {object_id} does not have {kind} {permission} permission on key vault {vault}; "
        "an access policy entry granting it is needed",
        metadata={"object_id": object_id, "permission": permission, "vault": vault, "on": kind},
    )
    with_akv(error, "ForbiddenByPolicy")
    return error


__all__ = [
    "DOMAIN",
    "AlreadyExists",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ServiceError",
    "Unauthenticated",
    "Unavailable",
    "forbidden_by_policy",
    "vault_not_found",
    "with_akv",
]
