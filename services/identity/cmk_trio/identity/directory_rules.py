"""What every part of the directory shares: its collaborators, who is acting, and the
lookups that refuse what does not exist."""

from __future__ import annotations

import os
import uuid

from cmk_trio.identity import errors
from cmk_trio.identity.crypto import RandomBytes, VerifiedSecretMemo
from cmk_trio.identity.model import (
    Principal,
    Subscription,
    Tenant,
)
from cmk_trio.identity.sign_ins import SecretChecks
from cmk_trio.identity.storage import IdentityStore
from cmk_trio.rpckit.clock import Clock
from cmk_trio.rpckit.errors import ServiceError
from cmk_trio.rpckit.events import ChangeNotifier
from cmk_trio.rpckit.reasons import Reason

DEFAULT_SECRET_DAYS = 365
MAX_SECRET_DAYS = 730
MAX_PLATFORM_SERVICE = 64


class DirectoryBase:
    """The directory's collaborators and the rules about the acting principal."""

    def __init__(
        self,
        store: IdentityStore,
        clock: Clock,
        *,
        checks: SecretChecks,
        notifier: ChangeNotifier,
        memo: VerifiedSecretMemo,
        random: RandomBytes = os.urandom,
    ) -> None:
        self.store = store
        self.clock = clock
        self.checks = checks
        self.notifier = notifier
        self.memo = memo
        self._random = random

    def _new_id(self) -> str:
        return str(uuid.UUID(bytes=self._random(16), version=4))

    # --- who is acting ----------------------------------------------------------------

    async def actor(self, object_id: str, tenant_id: str) -> Principal:
        """The principal behind a verified token; refused if it is gone, disabled or moved.

        This is checked against the database on every call, so the identity service itself
        never trusts a token of a principal that was disabled a moment ago.
        """
        principal = await self.store.get_principal(object_id)
        if principal is None or principal.tenant_id != tenant_id:
            raise errors.Unauthenticated(Reason.TOKEN_REVOKED, "the token's principal no longer exists")
        if not principal.enabled:
            raise errors.Unauthenticated(Reason.TOKEN_REVOKED, "the token's principal is disabled")
        return principal

    @staticmethod
    def require_operator(actor: Principal, action: str) -> None:
        if not actor.operator:
            raise errors.operator_required(action)

    @staticmethod
    def _require_same_tenant(actor: Principal, tenant_id: str, hidden: ServiceError | None = None) -> None:
        """A principal sees only its own tenant: anything of another tenant is, to it, what
        a missing thing is (`hidden`, or the tenant not found), so no one learns what exists
        in another tenant."""
        if not actor.operator and actor.tenant_id != tenant_id:
            raise hidden or errors.not_found(Reason.TENANT_NOT_FOUND, "tenant", tenant_id)

    @classmethod
    def _require_admin(cls, actor: Principal, tenant_id: str, action: str) -> None:
        cls._require_same_tenant(actor, tenant_id)
        if not actor.operator and not actor.tenant_admin:
            raise errors.tenant_admin_required(action, tenant_id)

    async def _notify(self) -> None:
        await self.notifier.notify()

    # --- lookups --------------------------------------------------------------------

    async def _tenant(self, tenant_id: str) -> Tenant:
        tenant = await self.store.get_tenant(tenant_id)
        if tenant is None:
            raise errors.not_found(Reason.TENANT_NOT_FOUND, "tenant", tenant_id)
        return tenant

    async def _subscription(self, subscription_id: str) -> Subscription:
        sub = await self.store.get_subscription(subscription_id)
        if sub is None:
            raise errors.not_found(Reason.SUBSCRIPTION_NOT_FOUND, "subscription", subscription_id)
        return sub

    async def _principal(self, tenant_id: str, object_id: str) -> Principal:
        principal = await self.store.get_principal(object_id)
        if principal is None or principal.tenant_id != tenant_id:
            raise errors.not_found(
                Reason.PRINCIPAL_NOT_FOUND, "principal", f"tenants/{tenant_id}/principals/{object_id}"
            )
        return principal
