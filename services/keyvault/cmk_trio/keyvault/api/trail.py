"""The audit record of every call: who, what, on which vault and key, allowed or denied and
why, written before the call answers (if it cannot be written, the call fails closed).

Authentication is the AuthInterceptor's; a refused token reaches `refused`, everything after
it runs inside `call`, which the servicers open first in every method (a test walks every
RPC of the key vault and checks its record)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from cmk_trio.client.key_names import KeyRef
from cmk_trio.keyvault.api.convert import vault_of
from cmk_trio.keyvault.audit import AuditLog
from cmk_trio.keyvault.model import AuditEntry
from cmk_trio.rpckit.auth import current_caller
from cmk_trio.rpckit.clock import Clock
from cmk_trio.rpckit.errors import ServiceError
from cmk_trio.rpckit.observe import current_request_id
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.tokens import VerifiedToken


@dataclass
class CallScope:
    """What the audit record of one call says; filled in as the call learns it."""

    caller: VerifiedToken
    vault_name: str = ""
    key_name: str = ""
    key_version: str = ""

    def name(self, ref: KeyRef) -> None:
        self.vault_name, self.key_name = ref.vault_name, ref.key_name
        self.key_version = ref.version or ""

    def vault(self, name: str, field: str = "name") -> str:
        """The vault a request names (vaults/{vault} or the bare name), recorded."""
        self.vault_name = vault_of(name, field)
        return self.vault_name


class AuditTrail:
    """Writes the audit record of each call, allowed, denied or failed."""

    def __init__(self, audit: AuditLog, clock: Clock) -> None:
        self._audit = audit
        self._clock = clock

    @asynccontextmanager
    async def call(self, operation: str) -> AsyncIterator[CallScope]:
        """The body of an authenticated call; its record is written when the block ends."""
        scope = CallScope(current_caller())
        try:
            yield scope
        except ServiceError as exc:
            await self._append(operation, scope, "denied", exc.reason.value)
            raise
        except Exception:
            await self._append(operation, scope, "error", Reason.INTERNAL.value)
            raise
        await self._append(operation, scope, "allowed", "")

    async def refused(self, method: str, refusal: ServiceError | None) -> None:
        """The record of a call whose token was refused (the AuthInterceptor's hook); None
        is a validation that failed unexpectedly, recorded as an error."""
        operation = method.rsplit("/", 1)[-1]
        if refusal is None:
            await self._append(operation, None, "error", Reason.INTERNAL.value)
        else:
            await self._append(operation, None, "denied", refusal.reason.value)

    async def _append(self, operation: str, scope: CallScope | None, result: str, reason: str) -> None:
        caller = scope.caller if scope else None
        await self._audit.append(
            AuditEntry(
                time=self._clock.now(),
                request_id=current_request_id() or "",
                caller_object_id=caller.object_id if caller else "",
                tenant_id=caller.tenant_id if caller else "",
                client_id=caller.client_id if caller else "",
                resource_id=caller.resource_id if caller else "",
                operation=operation,
                vault_name=scope.vault_name if scope else "",
                key_name=scope.key_name if scope else "",
                key_version=scope.key_version if scope else "",
                result=result,
                reason=reason,
            )
        )
