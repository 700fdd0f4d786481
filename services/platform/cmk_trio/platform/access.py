"""Role-based access as the directory decides it, for the services that ask it: what a call
needs on its scope (the directory's Action enum) and the one refusal when the caller lacks it."""

from __future__ import annotations

from enum import IntEnum
from typing import Protocol

from cmk_trio.proto.identity.v1 import resources_pb2 as res
from cmk_trio.rpckit.errors import PermissionDenied, ServiceError
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.tokens import VerifiedToken


class Access(IntEnum):
    """What a control-plane call needs on its scope; the numbers are the directory's Action."""

    READ = res.READ
    WRITE = res.WRITE
    MANAGE_ACCESS = res.MANAGE_ACCESS
    READ_SECRETS = res.WRITE
    """Reading a resource's secrets (keys, configuration): Contributor, as the real
    platform's listKeys action, which the Reader role lacks. (An alias of WRITE.)"""
    GRANT = res.MANAGE_ACCESS
    """Changing who may use a vault's keys (its access policies): Owner. Stricter than Azure,
    where a Contributor may add itself to a vault's access policies. (An alias of MANAGE_ACCESS.)"""

    @property
    def least_role(self) -> str:
        """The built-in role that grants it (and every role above)."""
        return {Access.READ: "Reader", Access.WRITE: "Contributor", Access.MANAGE_ACCESS: "Owner"}[self]


class Authorizer(Protocol):
    """Answers whether a principal holds a role allowing `access` on `scope`."""

    async def allowed(self, principal_id: str, scope: str, access: Access) -> bool: ...


async def require_role(
    authorizer: Authorizer, caller: VerifiedToken, scope: str, access: Access, *, hidden: ServiceError | None = None
) -> None:
    """Refuse with ROLE_REQUIRED unless the caller holds a role allowing `access` on `scope`.

    `hidden` is the error a missing object of that scope gets: a caller who may not even
    read it gets exactly that, so that no one learns what exists where they have no role
    (ROLE_REQUIRED named the scope, another tenant's subscription id included)."""
    if await authorizer.allowed(caller.object_id, scope, access):
        return
    if hidden is not None and (
        access is Access.READ or not await authorizer.allowed(caller.object_id, scope, Access.READ)
    ):
        raise hidden
    role = access.least_role
    raise PermissionDenied(
        Reason.ROLE_REQUIRED,
        f"this needs the {role} role (or higher) on {scope}",
        metadata={"scope": scope, "role": role.upper()},
    )
