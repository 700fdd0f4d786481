"""The audit record of every call: who, what, on which vault and key, allowed or denied and
why, written before the call answers (if it cannot be written, the call fails closed).

Authentication is the AuthInterceptor's; a refused token reaches `refused`, everything after
it runs inside `call`, which the servicers open first in every method (a test walks every
RPC of the key vault and checks its record).

A call that changes something has its record written inside the change's own unit of work
(the store's commit hook), so that no change exists that was never audited, and the record
names what only the change knows (CreateKey's new version id). A call that changes nothing
(a read, a refusal) has its record written when it ends, before it answers. Work the service
does by itself (rotation policies) is recorded the same way, through `system_call`."""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from cmk_trio.keyvault.api.convert import vault_of
from cmk_trio.keyvault.audit import AuditLog
from cmk_trio.keyvault.model import AuditEntry, KeyVersion
from cmk_trio.keyvault.storage import KeyVaultStore, KeyVaultUnitOfWork
from cmk_trio.platform.key_names import KeyRef
from cmk_trio.rpckit.auth import current_caller
from cmk_trio.rpckit.clock import Clock
from cmk_trio.rpckit.errors import ServiceError
from cmk_trio.rpckit.observe import current_request_id
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.storage import ReadCache
from cmk_trio.rpckit.tokens import VerifiedToken
from cmk_trio.rpckit.types import bound

REFUSAL_WINDOW = timedelta(minutes=1)
"""How long the refusals of one kind are counted into one record."""
SYSTEM_CLIENT = "keyvault"
"""The client id of the records of what the service does by itself."""


NAMES_TO_BE = frozenset({"CreateVault", "CheckVaultNameAvailability"})
"""Operations whose vault name is one to be (a refused create's, a name asked about), which
may be no vault name at all: their records name no vault incarnation."""


@dataclass
class CallScope:
    """What the audit record of one call says; filled in as the call learns it."""

    operation: str
    caller: VerifiedToken | None
    vault_name: str = ""
    key_name: str = ""
    key_version: str = ""
    request_id: str = ""
    system: bool = False
    """Work of the service itself, not a caller's."""
    written: bool = False
    """The record was committed with the call's change."""
    _pending: bool = False

    def name(self, ref: KeyRef) -> None:
        self.vault_name, self.key_name = ref.vault_name, ref.key_name
        self.key_version = ref.version or ""

    def vault(self, name: str, field: str = "name") -> str:
        """The vault a request names (vaults/{vault} or the bare name), recorded."""
        self.vault_name = vault_of(name, field)
        return self.vault_name

    @property
    def authenticated(self) -> VerifiedToken:
        """The caller of an authenticated call (a system call has none)."""
        if self.caller is None:
            raise RuntimeError("a system call has no caller")
        return self.caller


_scope: contextvars.ContextVar[CallScope | None] = contextvars.ContextVar("keyvault_call_scope", default=None)


class AuditTrail:
    """Writes the audit record of each call, allowed, denied or failed."""

    def __init__(self, audit: AuditLog, clock: Clock, store: KeyVaultStore) -> None:
        self._audit = audit
        self._clock = clock
        self._store = store
        # Which vault incarnation holds a name, read once per commit (the hot path, an
        # unwrap, commits nothing and pays a dictionary lookup).
        self._vault_ids: ReadCache = ReadCache(lambda: store.generation)
        self._refusals: dict[tuple[str, str, str], tuple[datetime, int]] = {}
        """Unauthenticated refusals by kind: when the kind's window began, and how many more
        came in it (not yet written)."""

    def watch(self) -> None:
        """Record each call's change in the change's own unit of work."""
        self._store.add_commit_hooks(before=self._before_commit, after=self._after_commit)

    @asynccontextmanager
    async def call(self, operation: str) -> AsyncIterator[CallScope]:
        """The body of an authenticated call; its record is written with its change, or when
        the block ends."""
        async with self._scoped(CallScope(operation, current_caller(), request_id=current_request_id() or "")) as s:
            yield s

    @asynccontextmanager
    async def system_call(
        self, operation: str, *, request_id: str, vault_name: str = "", key_name: str = ""
    ) -> AsyncIterator[CallScope]:
        """Work the service does by itself (no caller), recorded like a call."""
        scope = CallScope(operation, None, vault_name, key_name, request_id=request_id, system=True)
        async with self._scoped(scope) as s:
            yield s

    @asynccontextmanager
    async def _scoped(self, scope: CallScope) -> AsyncIterator[CallScope]:
        try:
            with bound(_scope, scope):
                yield scope
        except ServiceError as exc:
            if not scope.written:
                await self._audit.append(self._entry(scope, "denied", exc.reason.value, await self._vault_id(scope)))
            raise
        except Exception:
            if not scope.written:
                await self._audit.append(
                    self._entry(scope, "error", Reason.INTERNAL.value, await self._vault_id(scope))
                )
            raise
        if not scope.written:
            await self._audit.append(self._entry(scope, "allowed", "", await self._vault_id(scope)))

    async def _vault_id(self, scope: CallScope) -> str:
        """The incarnation of the vault the call named, if one holds the name."""
        if not scope.vault_name or scope.operation in NAMES_TO_BE or "\x00" in scope.vault_name:
            return ""  # a name to be, not the vault holding it (and NUL, which no vault name has)
        found = await self._vault_ids.get(
            ("vault_id", scope.vault_name), lambda: self._store.vault_id(scope.vault_name)
        )
        return found or ""

    async def refused(self, method: str, refusal: ServiceError | None) -> None:
        """The record of a call whose token was refused (the AuthInterceptor's hook); None
        is a validation that failed unexpectedly, recorded as an error.

        Anyone can make such calls, so they are recorded in aggregate: the first of each
        kind (method, result, reason) in a window is written at once, the others are counted
        and written as one record (with their count) when the window is over: at the next
        refusal of that kind, or when the service flushes them (housekeeping, stopping)."""
        scope = CallScope(method.rsplit("/", 1)[-1], None, request_id=current_request_id() or "")
        result, reason = ("error", Reason.INTERNAL.value) if refusal is None else ("denied", refusal.reason.value)
        kind = (scope.operation, result, reason)
        now = self._clock.now()
        counted = self._refusals.get(kind)
        if counted is not None and now - counted[0] < REFUSAL_WINDOW:
            self._refusals[kind] = (counted[0], counted[1] + 1)
            return
        self._refusals[kind] = (now, 0)  # before any await: the refusals meanwhile count in the new window
        if counted is not None and counted[1]:
            aggregate = CallScope(scope.operation, None, request_id="aggregate")
            await self._audit.append(replace(self._entry(aggregate, result, reason, ""), count=counted[1]))
        await self._audit.append(self._entry(scope, result, reason, ""))

    async def flush_refusals(self) -> None:
        """Write the counted refusals of every window now (housekeeping, stopping)."""
        counted, self._refusals = self._refusals, {}
        for (operation, result, reason), (_, count) in counted.items():
            if count:
                scope = CallScope(operation, None, request_id="aggregate")
                await self._audit.append(replace(self._entry(scope, result, reason, ""), count=count))

    async def _before_commit(self, uow: KeyVaultUnitOfWork) -> None:
        scope = _scope.get()
        if scope is None or scope.written:
            return  # not a call's change (the audit writer itself), or already recorded
        for version in uow.inserted_versions[-1:]:
            name = version.key_name if isinstance(version, KeyVersion) else version.secret_name
            scope.vault_name, scope.key_name, scope.key_version = version.vault_name, name, version.version
        vault_id = (await uow.vault_id(scope.vault_name) or "") if scope.vault_name else ""
        await self._audit.append_within(uow, [self._entry(scope, "allowed", "", vault_id)])
        scope._pending = True

    async def _after_commit(self) -> None:
        scope = _scope.get()
        if scope is not None and scope._pending:
            scope.written, scope._pending = True, False
            await self._audit.appended.notify()

    def _entry(self, scope: CallScope, result: str, reason: str, vault_id: str) -> AuditEntry:
        caller = scope.caller
        return AuditEntry(
            time=self._clock.now(),
            request_id=scope.request_id,
            caller_object_id=caller.object_id if caller else "",
            tenant_id=caller.tenant_id if caller else "",
            client_id=caller.client_id if caller else (SYSTEM_CLIENT if scope.system else ""),
            resource_id=caller.resource_id if caller else "",
            operation=scope.operation,
            # Names as the request gave them, a refused one too: one with NUL, which PostgreSQL's
            # text cannot hold, had the record refused by the database and the call with it.
            vault_name=_storable(scope.vault_name),
            key_name=_storable(scope.key_name),
            key_version=_storable(scope.key_version),
            result=result,
            reason=reason,
            vault_id=vault_id,
        )


def _storable(text: str) -> str:
    """`text` with each NUL shown as U+FFFD (what a record keeps of a name a caller sent)."""
    return text.replace("\x00", "\ufffd")
