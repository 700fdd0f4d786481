"""The directory: tenants, subscriptions, principals, client secrets, role assignments and
managed identities, with the rules of who may change what.

Every method takes the acting principal first. The operator may do everything; a tenant
administrator manages its own tenant; a platform principal (one with `platform_service`)
manages the managed identities of the resources its service hosts; an Owner of a scope may
grant roles under it.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import replace
from datetime import timedelta

from cmk_trio.identity import errors
from cmk_trio.identity.crypto import RandomBytes, SecretHasher, VerifiedSecretMemo, new_client_secret
from cmk_trio.identity.model import (
    Action,
    ClientSecret,
    Event,
    EventType,
    NewSecret,
    Principal,
    PrincipalKind,
    Role,
    RoleAssignment,
    Subscription,
    Tenant,
)
from cmk_trio.identity.scopes import is_under, parse_resource_id, parse_scope
from cmk_trio.identity.storage import IdentityStore
from cmk_trio.rpckit.clock import Clock
from cmk_trio.rpckit.events import ChangeNotifier
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.validation import display_name, int_range

DEFAULT_SECRET_DAYS = 365
MAX_SECRET_DAYS = 730
MAX_PLATFORM_SERVICE = 64


class Directory:
    """The directory's operations and their authorization rules."""

    def __init__(
        self,
        store: IdentityStore,
        clock: Clock,
        *,
        hasher: SecretHasher,
        notifier: ChangeNotifier,
        memo: VerifiedSecretMemo,
        random: RandomBytes = os.urandom,
    ) -> None:
        self.store = store
        self.clock = clock
        self.hasher = hasher
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
    def _require_same_tenant(actor: Principal, tenant_id: str) -> None:
        if not actor.operator and actor.tenant_id != tenant_id:
            raise errors.cross_tenant(tenant_id)

    @classmethod
    def _require_admin(cls, actor: Principal, tenant_id: str, action: str) -> None:
        cls._require_same_tenant(actor, tenant_id)
        if not actor.operator and not actor.tenant_admin:
            raise errors.tenant_admin_required(action, tenant_id)

    async def _notify(self) -> None:
        await self.notifier.notify()

    # --- tenants ----------------------------------------------------------------------

    async def create_tenant(self, actor: Principal, name: str, *, platform: bool = False) -> Tenant:
        self.require_operator(actor, "create tenants")
        return await self._create_tenant(display_name("tenant.display_name", name), platform=platform)

    async def _create_tenant(self, name: str, *, platform: bool) -> Tenant:
        tenant = Tenant(self._new_id(), name, platform, self.clock.now())
        async with self.store.unit_of_work() as uow:
            await uow.insert_tenant(tenant)
        return tenant

    async def get_tenant(self, actor: Principal, tenant_id: str) -> Tenant:
        self._require_same_tenant(actor, tenant_id)
        return await self._tenant(tenant_id)

    async def _tenant(self, tenant_id: str) -> Tenant:
        tenant = await self.store.get_tenant(tenant_id)
        if tenant is None:
            raise errors.not_found(Reason.TENANT_NOT_FOUND, "tenant", tenant_id)
        return tenant

    async def list_tenants(self, actor: Principal, *, after: str | None, limit: int) -> list[Tenant]:
        only = None if actor.operator else actor.tenant_id
        return await self.store.list_tenants(after=after, limit=limit, only=only)

    async def rename_tenant(self, actor: Principal, tenant_id: str, name: str) -> Tenant:
        self._require_admin(actor, tenant_id, "rename the tenant")
        name = display_name("tenant.display_name", name)
        tenant = await self._tenant(tenant_id)
        async with self.store.unit_of_work() as uow:
            await uow.update_tenant_name(tenant_id, name)
        return replace(tenant, display_name=name)

    # --- subscriptions ----------------------------------------------------------------

    async def create_subscription(self, actor: Principal, tenant_id: str, name: str) -> Subscription:
        self.require_operator(actor, "create subscriptions")
        name = display_name("subscription.display_name", name)
        await self._tenant(tenant_id)
        sub = Subscription(self._new_id(), tenant_id, name, self.clock.now(), None)
        async with self.store.unit_of_work() as uow:
            await uow.insert_subscription(sub)
        return sub

    async def _subscription(self, subscription_id: str) -> Subscription:
        sub = await self.store.get_subscription(subscription_id)
        if sub is None:
            raise errors.not_found(Reason.SUBSCRIPTION_NOT_FOUND, "subscription", subscription_id)
        return sub

    async def get_subscription(self, actor: Principal, subscription_id: str) -> Subscription:
        """A subscription, for principals of its tenant, the operator, and platform services
        (which need to know the tenant a subscription belongs to now)."""
        sub = await self._subscription(subscription_id)
        if not actor.platform_service:
            self._require_same_tenant(actor, sub.tenant_id)
        return sub

    async def list_subscriptions(
        self, actor: Principal, tenant_id: str | None, *, after: str | None, limit: int
    ) -> list[Subscription]:
        if tenant_id is not None:
            self._require_same_tenant(actor, tenant_id)
        elif not actor.operator:
            tenant_id = actor.tenant_id
        return await self.store.list_subscriptions(tenant_id=tenant_id, after=after, limit=limit)

    async def transfer_subscription(
        self, actor: Principal, subscription_id: str, target_tenant_id: str
    ) -> Subscription:
        """Move a subscription to another tenant. As in Azure, its role assignments are
        removed, and the system-assigned managed identities of its resources are not
        transferred: they are deleted in the old tenant (each with a PRINCIPAL_DELETED event)."""
        self.require_operator(actor, "transfer subscriptions")
        sub = await self._subscription(subscription_id)
        await self._tenant(target_tenant_id)
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
        await self._notify()
        return replace(sub, tenant_id=target_tenant_id, transfer_time=now)

    # --- principals -------------------------------------------------------------------

    async def create_principal(
        self,
        actor: Principal,
        tenant_id: str,
        *,
        kind: PrincipalKind,
        name: str,
        tenant_admin: bool = False,
        platform_service: str = "",
    ) -> Principal:
        """A new user or service principal, without a credential yet."""
        self._require_admin(actor, tenant_id, "create principals")
        name = display_name("principal.display_name", name)
        if kind is PrincipalKind.MANAGED_IDENTITY:
            raise errors.FailedPrecondition(
                Reason.PRINCIPAL_KIND_NOT_ALLOWED,
                "managed identities are created by the platform service that owns the resource "
                "(CreateManagedIdentity), not directly",
            )
        if platform_service:
            self.require_operator(actor, "create platform principals")
            display_name("principal.platform_service", platform_service, limit=MAX_PLATFORM_SERVICE)
            if kind is not PrincipalKind.SERVICE_PRINCIPAL:
                raise errors.FailedPrecondition(
                    Reason.PRINCIPAL_KIND_NOT_ALLOWED, "only a service principal can act as a platform service"
                )
        await self._tenant(tenant_id)
        principal = self._new_principal(
            tenant_id, kind, name, tenant_admin=tenant_admin, platform_service=platform_service
        )
        async with self.store.unit_of_work() as uow:
            await uow.insert_principal(principal)
            await uow.append_event(
                EventType.PRINCIPAL_CREATED,
                principal.create_time,
                tenant_id=tenant_id,
                principal_id=principal.object_id,
            )
        await self._notify()
        return principal

    def _new_principal(
        self,
        tenant_id: str,
        kind: PrincipalKind,
        name: str,
        *,
        tenant_admin: bool = False,
        platform_service: str = "",
        operator: bool = False,
        resource_id: str = "",
        owner_object_id: str = "",
        client_id: str | None = None,
    ) -> Principal:
        now = self.clock.now()
        return Principal(
            object_id=self._new_id(),
            tenant_id=tenant_id,
            kind=kind,
            display_name=name,
            client_id=client_id or self._new_id(),
            enabled=True,
            resource_id=resource_id,
            owner_object_id=owner_object_id,
            platform_service=platform_service,
            tenant_admin=tenant_admin or operator,
            operator=operator,
            create_time=now,
            update_time=now,
        )

    async def _principal(self, tenant_id: str, object_id: str) -> Principal:
        principal = await self.store.get_principal(object_id)
        if principal is None or principal.tenant_id != tenant_id:
            raise errors.not_found(
                Reason.PRINCIPAL_NOT_FOUND, "principal", f"tenants/{tenant_id}/principals/{object_id}"
            )
        return principal

    async def get_principal(self, actor: Principal, tenant_id: str, object_id: str) -> Principal:
        self._require_same_tenant(actor, tenant_id)
        return await self._principal(tenant_id, object_id)

    async def list_principals(
        self, actor: Principal, tenant_id: str, kind: PrincipalKind | None, *, after: str | None, limit: int
    ) -> list[Principal]:
        self._require_same_tenant(actor, tenant_id)
        await self._tenant(tenant_id)
        return await self.store.list_principals(tenant_id=tenant_id, kind=kind, after=after, limit=limit)

    async def update_principal(
        self,
        actor: Principal,
        tenant_id: str,
        object_id: str,
        *,
        name: str | None = None,
        enabled: bool | None = None,
    ) -> Principal:
        """Rename, enable or disable a principal; disabling announces PRINCIPAL_DISABLED."""
        principal = await self._principal(tenant_id, object_id)
        owner = principal.kind is PrincipalKind.MANAGED_IDENTITY and principal.owner_object_id == actor.object_id
        if not owner:
            self._require_admin(actor, tenant_id, "change principals")
        if name is not None:
            name = display_name("principal.display_name", name)
        if enabled is False and principal.operator:
            raise errors.FailedPrecondition(Reason.OPERATOR_PROTECTED, "the platform operator cannot be disabled")
        new_name = principal.display_name if name is None else name
        new_enabled = principal.enabled if enabled is None else enabled
        now = self.clock.now()
        async with self.store.unit_of_work() as uow:
            await uow.update_principal(object_id, display_name=new_name, enabled=new_enabled, when=now)
            if new_enabled != principal.enabled:
                event = EventType.PRINCIPAL_ENABLED if new_enabled else EventType.PRINCIPAL_DISABLED
                await uow.append_event(event, now, tenant_id=tenant_id, principal_id=object_id)
        await self._notify()
        return replace(principal, display_name=new_name, enabled=new_enabled, update_time=now)

    async def delete_principal(self, actor: Principal, tenant_id: str, object_id: str) -> None:
        """Delete a user or service principal with its secrets and role assignments."""
        principal = await self._principal(tenant_id, object_id)
        self._require_admin(actor, tenant_id, "delete principals")
        if principal.operator:
            raise errors.FailedPrecondition(Reason.OPERATOR_PROTECTED, "the platform operator cannot be deleted")
        if principal.kind is PrincipalKind.MANAGED_IDENTITY:
            raise errors.FailedPrecondition(
                Reason.PRINCIPAL_KIND_NOT_ALLOWED,
                "a managed identity is deleted by the platform service that owns its resource",
            )
        await self._delete(principal)

    async def _delete(self, principal: Principal) -> None:
        async with self.store.unit_of_work() as uow:
            await uow.delete_principal(principal.object_id)
            await uow.append_event(
                EventType.PRINCIPAL_DELETED,
                self.clock.now(),
                tenant_id=principal.tenant_id,
                principal_id=principal.object_id,
            )
        await self._notify()

    # --- managed identities -----------------------------------------------------------

    async def create_managed_identity(self, actor: Principal, tenant_id: str, resource_id: str, name: str) -> Principal:
        """A system-assigned identity for a resource, owned by the calling platform service."""
        if not actor.platform_service:
            raise errors.PermissionDenied(
                Reason.PLATFORM_PRINCIPAL_REQUIRED,
                "only a platform service principal may create managed identities",
            )
        resource_id, subscription_id = parse_resource_id("resource_id", resource_id)
        name = display_name("display_name", name or resource_id.rsplit("/", 1)[-1])
        await self._tenant(tenant_id)
        sub = await self._subscription(subscription_id)
        if sub.tenant_id != tenant_id:
            raise errors.FailedPrecondition(
                Reason.RESOURCE_NOT_IN_TENANT,
                f"the resource's subscription {subscription_id} belongs to another tenant than {tenant_id}",
                metadata={"subscription_id": subscription_id, "tenant_id": tenant_id},
            )
        if await self.store.managed_identity_for(resource_id) is not None:
            raise errors.AlreadyExists(
                Reason.MANAGED_IDENTITY_EXISTS,
                "this resource already has a system-assigned managed identity",
                metadata={"resource_id": resource_id},
            )
        principal = self._new_principal(
            tenant_id, PrincipalKind.MANAGED_IDENTITY, name, resource_id=resource_id, owner_object_id=actor.object_id
        )
        async with self.store.unit_of_work() as uow:
            await uow.insert_principal(principal)
            await uow.append_event(
                EventType.PRINCIPAL_CREATED,
                principal.create_time,
                tenant_id=tenant_id,
                principal_id=principal.object_id,
            )
        await self._notify()
        return principal

    async def owned_managed_identity(self, actor: Principal, tenant_id: str, object_id: str) -> Principal:
        """The managed identity, if the actor is the platform principal that owns it."""
        principal = await self._principal(tenant_id, object_id)
        if principal.kind is not PrincipalKind.MANAGED_IDENTITY:
            raise errors.FailedPrecondition(
                Reason.PRINCIPAL_KIND_NOT_ALLOWED, "this principal is not a managed identity"
            )
        if principal.owner_object_id != actor.object_id:
            raise errors.PermissionDenied(
                Reason.MANAGED_IDENTITY_NOT_OWNED,
                "only the platform service that owns this managed identity may use or delete it",
                metadata={"object_id": object_id},
            )
        return principal

    async def delete_managed_identity(self, actor: Principal, tenant_id: str, object_id: str) -> None:
        principal = await self.owned_managed_identity(actor, tenant_id, object_id)
        await self._delete(principal)

    # --- client secrets ---------------------------------------------------------------

    async def _new_secret(self, principal: Principal, label: str, days: int) -> NewSecret:
        value = new_client_secret(self._random)
        salt = self._random(16)
        # scrypt takes tens of milliseconds and releases the GIL: keep it off the event loop.
        digest = await asyncio.to_thread(self.hasher.hash, value, lambda _n: salt)
        now = self.clock.now()
        record = ClientSecret(
            secret_id=self._new_id(),
            object_id=principal.object_id,
            display_name=label,
            create_time=now,
            expire_time=now + timedelta(days=days),
            hash=digest,
        )
        return NewSecret(record, value, principal.client_id)

    async def _secret_holder(self, actor: Principal, tenant_id: str, object_id: str, action: str) -> Principal:
        principal = await self._principal(tenant_id, object_id)
        if actor.object_id != object_id:
            self._require_admin(actor, tenant_id, action)
        if principal.kind is PrincipalKind.MANAGED_IDENTITY:
            raise errors.FailedPrecondition(
                Reason.PRINCIPAL_KIND_NOT_ALLOWED,
                "managed identities have no client secrets; the platform obtains their tokens",
            )
        return principal

    async def add_client_secret(
        self, actor: Principal, tenant_id: str, object_id: str, label: str, days: int
    ) -> NewSecret:
        label = display_name("display_name", label, required=False)
        days = int_range("lifetime_days", days, 1, MAX_SECRET_DAYS, DEFAULT_SECRET_DAYS)
        principal = await self._secret_holder(actor, tenant_id, object_id, "add client secrets")
        secret = await self._new_secret(principal, label, days)
        async with self.store.unit_of_work() as uow:
            await uow.insert_secret(secret.secret)
        return secret

    async def list_client_secrets(
        self, actor: Principal, tenant_id: str, object_id: str, *, after: str | None, limit: int
    ) -> list[ClientSecret]:
        await self._secret_holder(actor, tenant_id, object_id, "list client secrets")
        return await self.store.secrets_of(object_id, after=after, limit=limit)

    async def delete_client_secret(self, actor: Principal, tenant_id: str, object_id: str, secret_id: str) -> None:
        await self._secret_holder(actor, tenant_id, object_id, "delete client secrets")
        async with self.store.unit_of_work() as uow:
            deleted = await uow.delete_secret(object_id, secret_id)
        self.memo.forget(secret_id)
        if not deleted:
            raise errors.not_found(
                Reason.CLIENT_SECRET_NOT_FOUND,
                "client secret",
                f"tenants/{tenant_id}/principals/{object_id}/secrets/{secret_id}",
            )

    # --- role assignments -------------------------------------------------------------

    async def _may_manage_access(self, actor: Principal, tenant_id: str, scope: str) -> None:
        self._require_same_tenant(actor, tenant_id)
        if actor.operator or actor.tenant_admin:
            return
        if await self._granting(actor, scope, Action.MANAGE_ACCESS) is None:
            raise errors.PermissionDenied(
                Reason.ROLE_REQUIRED,
                f"granting roles on {scope} needs the Owner role on it (or a tenant administrator)",
                metadata={"scope": scope, "role": "OWNER"},
            )

    async def create_role_assignment(
        self, actor: Principal, principal_id: str, role: Role, scope: str
    ) -> RoleAssignment:
        scope, subscription_id = parse_scope("role_assignment.scope", scope)
        sub = await self._subscription(subscription_id)
        await self._may_manage_access(actor, sub.tenant_id, scope)
        principal = await self._principal(sub.tenant_id, principal_id)
        if await self.store.find_role_assignment(principal_id, role, scope) is not None:
            raise errors.AlreadyExists(
                Reason.ROLE_ASSIGNMENT_EXISTS,
                f"{principal_id} already has the {role.name.title()} role on {scope}",
            )
        assignment = RoleAssignment(
            self._new_id(), principal.object_id, role, scope, sub.tenant_id, self.clock.now(), actor.object_id
        )
        async with self.store.unit_of_work() as uow:
            await uow.insert_role_assignment(assignment, subscription_id)
            await uow.append_event(
                EventType.ROLE_ASSIGNMENTS_CHANGED,
                assignment.create_time,
                tenant_id=sub.tenant_id,
                principal_id=principal_id,
                subscription_id=subscription_id,
                scope=scope,
            )
        await self._notify()
        return assignment

    async def _role_assignment(self, role_assignment_id: str) -> RoleAssignment:
        found = await self.store.get_role_assignment(role_assignment_id)
        if found is None:
            raise errors.not_found(
                Reason.ROLE_ASSIGNMENT_NOT_FOUND, "role assignment", f"roleAssignments/{role_assignment_id}"
            )
        return found

    async def get_role_assignment(self, actor: Principal, role_assignment_id: str) -> RoleAssignment:
        found = await self._role_assignment(role_assignment_id)
        self._require_same_tenant(actor, found.tenant_id)
        return found

    async def list_role_assignments(
        self, actor: Principal, principal_id: str | None, scope: str | None, *, after: str | None, limit: int
    ) -> list[RoleAssignment]:
        tenant_id = None if actor.operator else actor.tenant_id
        if scope is not None:
            scope, _ = parse_scope("scope", scope)
        found: list[RoleAssignment] = []
        cursor = after
        # Filter by scope after reading, page by page, so a page is full unless it is the last.
        while len(found) < limit:
            batch = await self.store.list_role_assignments(
                tenant_id=tenant_id, principal_id=principal_id, after=cursor, limit=limit
            )
            found += [a for a in batch if scope is None or is_under(scope, a.scope)]
            if len(batch) < limit:
                break
            cursor = batch[-1].role_assignment_id
        return found[:limit]

    async def delete_role_assignment(self, actor: Principal, role_assignment_id: str) -> None:
        found = await self._role_assignment(role_assignment_id)
        await self._may_manage_access(actor, found.tenant_id, found.scope)
        _, subscription_id = parse_scope("scope", found.scope)
        async with self.store.unit_of_work() as uow:
            await uow.delete_role_assignment(role_assignment_id)
            await uow.append_event(
                EventType.ROLE_ASSIGNMENTS_CHANGED,
                self.clock.now(),
                tenant_id=found.tenant_id,
                principal_id=found.principal_id,
                subscription_id=subscription_id,
                scope=found.scope,
            )
        await self._notify()

    async def _granting(self, principal: Principal, scope: str, action: Action) -> RoleAssignment | None:
        """The strongest assignment of `principal` on `scope` or above that allows `action`."""
        best: RoleAssignment | None = None
        for assignment in await self.store.role_assignments_of(principal.object_id):
            if assignment.role >= action.least_role and is_under(scope, assignment.scope):
                if best is None or assignment.role > best.role:
                    best = assignment
        return best

    async def check_access(
        self, actor: Principal, principal_id: str | None, scope: str, action: Action
    ) -> RoleAssignment | None:
        """The assignment that lets the principal do `action` on `scope`, or None.

        A disabled principal, or one whose tenant no longer owns the scope's subscription,
        is allowed nothing.
        """
        scope, subscription_id = parse_scope("scope", scope)
        target_id = principal_id or actor.object_id
        if target_id != actor.object_id and not (actor.operator or actor.platform_service):
            raise errors.PermissionDenied(
                Reason.PLATFORM_PRINCIPAL_REQUIRED,
                "only platform services and the operator may check another principal's access",
            )
        target = await self.store.get_principal(target_id)
        if target is None:
            raise errors.not_found(Reason.PRINCIPAL_NOT_FOUND, "principal", target_id)
        sub = await self.store.get_subscription(subscription_id)
        if not target.enabled or sub is None or sub.tenant_id != target.tenant_id:
            return None
        return await self._granting(target, scope, action)

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
        tenant = Tenant(self._new_id(), "Platform", True, self.clock.now())
        operator = self._new_principal(
            tenant.tenant_id,
            PrincipalKind.SERVICE_PRINCIPAL,
            "Platform operator",
            operator=True,
            client_id=client_id,
        )
        if client_secret is not None:
            salt = self._random(16)
            digest = await asyncio.to_thread(self.hasher.hash, client_secret, lambda _n: salt)
            now = self.clock.now()
            record = ClientSecret(
                self._new_id(), operator.object_id, "configured", now, now + timedelta(days=MAX_SECRET_DAYS), digest
            )
            shown = None
        else:
            generated = await self._new_secret(operator, "bootstrap", MAX_SECRET_DAYS)
            record, shown = generated.secret, generated
        async with self.store.unit_of_work() as uow:
            await uow.insert_tenant(tenant)
            await uow.insert_principal(operator)
            await uow.insert_secret(record)
        return operator, shown

    async def events_after(self, sequence: int, limit: int = 500) -> list[Event]:
        """Committed events after `sequence`, oldest first."""
        return await self.store.events_after(sequence, limit)
