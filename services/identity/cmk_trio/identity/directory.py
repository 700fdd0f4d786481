"""The directory: tenants, subscriptions, principals, client secrets, role assignments and
managed identities, with the rules of who may change what.

Every method takes the acting principal first. The operator may do everything; a tenant
administrator manages its own tenant; a platform principal (one with `platform_service`)
manages the managed identities of the resources its service hosts; an Owner of a scope may
grant roles under it.
"""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import timedelta

from cmk_trio.identity import directory_rules, errors
from cmk_trio.identity.client_secrets import MAX_SECRET_DAYS, ClientSecrets
from cmk_trio.identity.crypto import RandomBytes, VerifiedSecretMemo, secret_id_of
from cmk_trio.identity.directory_rules import Collaborators, Lookups, new_id, require_admin, require_same_tenant
from cmk_trio.identity.model import (
    ClientSecret,
    Event,
    EventType,
    NewSecret,
    Principal,
    PrincipalKind,
    Subscription,
    Tenant,
)
from cmk_trio.identity.principals import Principals
from cmk_trio.identity.resource_groups import ResourceGroups
from cmk_trio.identity.role_assignments import RoleAssignments
from cmk_trio.identity.sign_ins import SecretChecks
from cmk_trio.identity.storage import IdentityStore
from cmk_trio.rpckit.clock import Clock
from cmk_trio.rpckit.events import ChangeNotifier
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.validation import display_name


class Directory:
    """The directory's operations and their authorization rules: tenants, subscriptions,
    the event stream and bootstrap here; principals and managed identities, client secrets,
    role assignments and resource groups in the parts it holds (`principals`, `secrets`,
    `role_assignments`, `resource_groups`),
    which share its collaborators and its `lookups`."""

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
        self.lookups = Lookups(store)
        parts = Collaborators(store, clock, notifier, self.lookups, random)
        self.principals = Principals(parts)
        self.secrets = ClientSecrets(store, clock, checks, memo, self.lookups, random=random)
        self.role_assignments = RoleAssignments(parts)
        self.resource_groups = ResourceGroups(parts, self.role_assignments)

    # --- who is acting ----------------------------------------------------------------

    async def actor(self, object_id: str, tenant_id: str) -> Principal:
        """The principal behind a verified token (Lookups.actor: refused if it is gone,
        disabled or moved)."""
        return await self.lookups.actor(object_id, tenant_id)

    @staticmethod
    def require_operator(actor: Principal, action: str) -> None:
        """Refuse (OPERATOR_REQUIRED) anyone but the platform operator."""
        directory_rules.require_operator(actor, action)

    # --- tenants ----------------------------------------------------------------------

    async def create_tenant(self, actor: Principal, name: str, *, platform: bool = False) -> Tenant:
        directory_rules.require_operator(actor, "create tenants")
        return await self._create_tenant(display_name("tenant.display_name", name), platform=platform)

    async def _create_tenant(self, name: str, *, platform: bool) -> Tenant:
        tenant = Tenant(new_id(self._random), name, platform, self.clock.now())
        async with self.store.unit_of_work() as uow:
            await uow.insert_tenant(tenant)
        return tenant

    async def get_tenant(self, actor: Principal, tenant_id: str) -> Tenant:
        require_same_tenant(actor, tenant_id)
        return await self.lookups.tenant(tenant_id)

    async def list_tenants(self, actor: Principal, *, after: str | None, limit: int) -> list[Tenant]:
        only = None if actor.operator else actor.tenant_id
        return await self.store.list_tenants(after=after, limit=limit, only=only)

    async def rename_tenant(self, actor: Principal, tenant_id: str, name: str) -> Tenant:
        require_admin(actor, tenant_id, "rename the tenant")
        name = display_name("tenant.display_name", name)
        tenant = await self.lookups.tenant(tenant_id)
        async with self.store.unit_of_work() as uow:
            await uow.update_tenant_name(tenant_id, name)
        return replace(tenant, display_name=name)

    # --- subscriptions ----------------------------------------------------------------

    async def create_subscription(self, actor: Principal, tenant_id: str, name: str) -> Subscription:
        directory_rules.require_operator(actor, "create subscriptions")
        name = display_name("subscription.display_name", name)
        await self.lookups.tenant(tenant_id)
        sub = Subscription(new_id(self._random), tenant_id, name, self.clock.now(), None)
        async with self.store.unit_of_work() as uow:
            await uow.insert_subscription(sub)
        return sub

    async def get_subscription(self, actor: Principal, subscription_id: str) -> Subscription:
        """A subscription, for principals of its tenant, the operator, and platform services
        (which need to know the tenant a subscription belongs to now)."""
        sub = await self.lookups.subscription(subscription_id)
        if not actor.platform_service:
            hidden = errors.not_found(Reason.SUBSCRIPTION_NOT_FOUND, "subscription", subscription_id)
            require_same_tenant(actor, sub.tenant_id, hidden)
        return sub

    async def list_subscriptions(
        self, actor: Principal, tenant_id: str | None, *, after: str | None, limit: int
    ) -> list[Subscription]:
        if tenant_id is not None:
            require_same_tenant(actor, tenant_id)
        elif not actor.operator:
            tenant_id = actor.tenant_id
        return await self.store.list_subscriptions(tenant_id=tenant_id, after=after, limit=limit)

    async def transfer_subscription(
        self, actor: Principal, subscription_id: str, target_tenant_id: str
    ) -> Subscription:
        """Move a subscription to another tenant. As in Azure, its role assignments are
        removed, and the system-assigned managed identities of its resources are not
        transferred: they are deleted in the old tenant (each with a PRINCIPAL_DELETED event)."""
        directory_rules.require_operator(actor, "transfer subscriptions")
        sub = await self.lookups.subscription(subscription_id)
        await self.lookups.tenant(target_tenant_id)
        if sub.tenant_id == target_tenant_id:
            raise errors.FailedPrecondition(
                Reason.SUBSCRIPTION_ALREADY_IN_TENANT,
                f"subscription {subscription_id} already belongs to tenant {target_tenant_id}",
            )
        now = self.clock.now()
        identities = await self.store.managed_identities_under(f"/subscriptions/{subscription_id}/")
        async with self.store.unit_of_work() as uow:
            await uow.transfer_subscription(subscription_id, target_tenant_id, now)
            for identity in identities:
                await uow.delete_principal(identity.object_id)
                await uow.append_event(
                    EventType.PRINCIPAL_DELETED, now, tenant_id=identity.tenant_id, principal_id=identity.object_id
                )
            await uow.append_event(
                EventType.SUBSCRIPTION_TRANSFERRED,
                now,
                tenant_id=sub.tenant_id,
                subscription_id=subscription_id,
                new_tenant_id=target_tenant_id,
            )
        await self.notifier.notify()
        return replace(sub, tenant_id=target_tenant_id, transfer_time=now)

    # --- events -----------------------------------------------------------------------

    def require_event_reader(self, actor: Principal) -> None:
        if not (actor.operator or actor.platform_service):
            raise errors.PermissionDenied(
                Reason.PLATFORM_PRINCIPAL_REQUIRED, "only platform services and the operator may read the event stream"
            )

    async def check_cursor(self, sequence: int) -> None:
        """Refuse a watch cursor that is negative or beyond the newest event."""
        if sequence < 0:
            raise errors.InvalidArgument(Reason.FIELD_INVALID, "after_sequence must not be negative")
        last = await self.store.last_sequence()
        if sequence > last:
            raise errors.FailedPrecondition(
                Reason.EVENT_CURSOR_AHEAD,
                f"the cursor {sequence} is beyond the newest event {last}; the directory was reset: start from 0",
                metadata={"last_sequence": str(last)},
            )

    # --- bootstrap --------------------------------------------------------------------

    async def bootstrap_operator(
        self, *, client_id: str | None = None, client_secret: str | None = None
    ) -> tuple[Principal, NewSecret | None]:
        """The platform operator, made on first start in a platform tenant of its own.

        Returns the operator and, only when this call made it with a generated secret, that
        secret (to be shown once). With `client_id` and `client_secret` from configuration,
        the operator is made with those and nothing is returned to show.
        """
        existing = await self.store.operator()
        if existing is not None:
            return existing, None
        tenant = Tenant(new_id(self._random), "Platform", True, self.clock.now())
        operator = self.principals.new_principal(
            tenant.tenant_id,
            PrincipalKind.SERVICE_PRINCIPAL,
            "Platform operator",
            operator=True,
            client_id=client_id,
        )
        if client_secret is not None:
            salt = self._random(16)
            digest = await self.checks.hash(client_secret, salt, owner=(tenant.tenant_id, operator.object_id))
            now = self.clock.now()
            # A configured secret of our own form (copied from another installation, say) keeps
            # the id it names; any other is the operator's one secret that names none.
            named_id = secret_id_of(client_secret)
            record = ClientSecret(
                named_id or new_id(self._random),
                operator.object_id,
                "configured",
                now,
                now + timedelta(days=MAX_SECRET_DAYS),
                digest,
                named=named_id is not None,
            )
            shown = None
        else:
            generated = await self.secrets.new_secret(operator, "bootstrap", MAX_SECRET_DAYS)
            record, shown = generated.secret, generated
        async with self.store.unit_of_work() as uow:
            await uow.insert_tenant(tenant)
            await uow.insert_principal(operator)
            await uow.insert_secret(record)
        return operator, shown

    async def events_after(self, sequence: int, limit: int = 500) -> list[Event]:
        """Committed events after `sequence`, oldest first."""
        return await self.store.events_after(sequence, limit)
