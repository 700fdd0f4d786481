"""Who may call what beyond the vault's own roles and policies: the platform operator and
the platform services, known by the roles their tokens carry; and the service itself, whose
own work (purges, rotation policies) is recorded like a caller's."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol

from cmk_trio.keyvault import errors
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.tokens import OPERATOR_ROLE, PLATFORM_ROLE, VerifiedToken


def require_operator(caller: VerifiedToken, action: str = "do this") -> None:
    """Refuse unless the caller is the platform operator."""
    if OPERATOR_ROLE not in caller.roles:
        raise errors.PermissionDenied(Reason.OPERATOR_REQUIRED, f"only the platform operator may {action}")


def require_event_reader(caller: VerifiedToken) -> None:
    """The event stream tells of every vault: only platform services and the operator read it."""
    if not ({OPERATOR_ROLE, PLATFORM_ROLE} & caller.roles):
        raise errors.PermissionDenied(
            Reason.PLATFORM_PRINCIPAL_REQUIRED,
            "only platform services and the operator may read the event stream",
        )


PURGER = "purger"
"""The request id of the purger's records."""


class Recorder(Protocol):
    """Records work the service does by itself in the audit log, with the change it makes."""

    def system_call(
        self, operation: str, *, request_id: str, vault_name: str = "", key_name: str = ""
    ) -> AbstractAsyncContextManager[object]: ...
