"""What every part of the directory shares: the rules about who is acting, and the lookups
that refuse what does not exist (or what, to the one acting, must look as if it did not)."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field

from cmk_trio.identity import errors
from cmk_trio.identity.crypto import RandomBytes
from cmk_trio.identity.model import (
    Principal,
    Subscription,
    Tenant,
)
from cmk_trio.identity.storage import IdentityStore
from cmk_trio.rpckit.clock import Clock
from cmk_trio.rpckit.errors import ServiceError
from cmk_trio.rpckit.events import ChangeNotifier
from cmk_trio.rpckit.reasons import Reason


def new_id(random: RandomBytes) -> str:
    """A new object id: a random UUID (version 4) from `random`."""
    return str(uuid.UUID(bytes=random(16), version=4))


# --- who is acting ------------------------------------------------------------------------


def require_operator(actor: Principal, action: str) -> None:
    if not actor.operator:
        raise errors.operator_required(action)


def require_same_tenant(actor: Principal, tenant_id: str, hidden: ServiceError | None = None) -> None:
    """A principal sees only its own tenant: anything of another tenant is, to it, what
    a missing thing is (`hidden`, or the tenant not found), so no one learns what exists
    in another tenant."""
    if not actor.operator and actor.tenant_id != tenant_id:
        raise hidden or errors.not_found(Reason.TENANT_NOT_FOUND, "tenant", tenant_id)


def require_admin(actor: Principal, tenant_id: str, action: str) -> None:
    require_same_tenant(actor, tenant_id)
    if not actor.operator and not actor.tenant_admin:
        raise errors.tenant_admin_required(action, tenant_id)


# --- lookups ------------------------------------------------------------------------------


class Lookups:
    """Reads of the directory that refuse, each with its own reason, what is not there."""

    def __init__(self, store: IdentityStore) -> None:
        self._store = store

    async def actor(self, object_id: str, tenant_id: str) -> Principal:
        """The principal behind a verified token; refused if it is gone, disabled or moved.

        This is checked against the database on every call, so the identity service itself
        never trusts a token of a principal that was disabled a moment ago.
        """
        principal = await self._store.get_principal(object_id)
        if principal is None or principal.tenant_id != tenant_id:
            raise errors.Unauthenticated(Reason.TOKEN_REVOKED, "the token's principal no longer exists")
        if not principal.enabled:
            raise errors.Unauthenticated(Reason.TOKEN_REVOKED, "the token's principal is disabled")
        return principal

    async def tenant(self, tenant_id: str) -> Tenant:
        tenant = await self._store.get_tenant(tenant_id)
        if tenant is None:
            raise errors.not_found(Reason.TENANT_NOT_FOUND, "tenant", tenant_id)
        return tenant

    async def subscription(self, subscription_id: str) -> Subscription:
        sub = await self._store.get_subscription(subscription_id)
        if sub is None:
            raise errors.not_found(Reason.SUBSCRIPTION_NOT_FOUND, "subscription", subscription_id)
        return sub

    async def principal(self, tenant_id: str, object_id: str) -> Principal:
        principal = await self._store.get_principal(object_id)
        if principal is None or principal.tenant_id != tenant_id:
            raise errors.not_found(
                Reason.PRINCIPAL_NOT_FOUND, "principal", f"tenants/{tenant_id}/principals/{object_id}"
            )
        return principal


@dataclass(frozen=True)
class Collaborators:
    """What the directory's parts that change it share: its store, clock and change
    notifier, the lookups, and the randomness new ids come from."""

    store: IdentityStore
    clock: Clock
    notifier: ChangeNotifier
    lookups: Lookups
    random: RandomBytes = field(default=os.urandom)
