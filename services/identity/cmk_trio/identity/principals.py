"""Principals (users, service principals) and managed identities: who may make, change
and delete them."""

from __future__ import annotations

from dataclasses import replace

from cmk_trio.identity import errors
from cmk_trio.identity.directory_rules import (
    Collaborators,
    new_id,
    require_admin,
    require_operator,
    require_same_tenant,
)
from cmk_trio.identity.model import (
    EventType,
    Principal,
    PrincipalKind,
)
from cmk_trio.identity.scopes import RESOURCE_PROVIDERS, parse_resource_id, provider_of
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.validation import display_name

MAX_PLATFORM_SERVICE = 64


class Principals:
    """Principals (users, service principals) and managed identities: who may make, change
    and delete them."""

    def __init__(self, parts: Collaborators) -> None:
        self._store, self._clock, self._notifier = parts.store, parts.clock, parts.notifier
        self._lookups, self._random = parts.lookups, parts.random

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
        require_admin(actor, tenant_id, "create principals")
        name = display_name("principal.display_name", name)
        if kind is PrincipalKind.MANAGED_IDENTITY:
            raise errors.FailedPrecondition(
                Reason.PRINCIPAL_KIND_NOT_ALLOWED,
                "managed identities are created by the platform service that owns the resource "
                "(CreateManagedIdentity), not directly",
            )
        if platform_service:
            require_operator(actor, "create platform principals")
            display_name("principal.platform_service", platform_service, limit=MAX_PLATFORM_SERVICE)
            if kind is not PrincipalKind.SERVICE_PRINCIPAL:
                raise errors.FailedPrecondition(
                    Reason.PRINCIPAL_KIND_NOT_ALLOWED, "only a service principal can act as a platform service"
                )
        await self._lookups.tenant(tenant_id)
        principal = self.new_principal(
            tenant_id, kind, name, tenant_admin=tenant_admin, platform_service=platform_service
        )
        async with self._store.unit_of_work() as uow:
            await uow.insert_principal(principal)
            await uow.append_event(
                EventType.PRINCIPAL_CREATED,
                principal.create_time,
                tenant_id=tenant_id,
                principal_id=principal.object_id,
            )
        await self._notifier.notify()
        return principal

    def new_principal(
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
        """A new principal, not stored yet (bootstrap stores the operator with its tenant)."""
        now = self._clock.now()
        return Principal(
            object_id=new_id(self._random),
            tenant_id=tenant_id,
            kind=kind,
            display_name=name,
            client_id=client_id or new_id(self._random),
            enabled=True,
            resource_id=resource_id,
            owner_object_id=owner_object_id,
            platform_service=platform_service,
            tenant_admin=tenant_admin or operator,
            operator=operator,
            create_time=now,
            update_time=now,
        )

    async def get_principal(self, actor: Principal, tenant_id: str, object_id: str) -> Principal:
        require_same_tenant(actor, tenant_id)
        return await self._lookups.principal(tenant_id, object_id)

    async def list_principals(
        self, actor: Principal, tenant_id: str, kind: PrincipalKind | None, *, after: str | None, limit: int
    ) -> list[Principal]:
        require_same_tenant(actor, tenant_id)
        await self._lookups.tenant(tenant_id)
        return await self._store.list_principals(tenant_id=tenant_id, kind=kind, after=after, limit=limit)

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
        if not actor.platform_service:  # (a platform service changes the identities it owns, in any tenant)
            require_same_tenant(actor, tenant_id)
        principal = await self._lookups.principal(tenant_id, object_id)
        owner = principal.kind is PrincipalKind.MANAGED_IDENTITY and principal.owner_object_id == actor.object_id
        if not owner:
            require_admin(actor, tenant_id, "change principals")
        if name is not None:
            name = display_name("principal.display_name", name)
        if enabled is False and principal.operator:
            raise errors.FailedPrecondition(Reason.OPERATOR_PROTECTED, "the platform operator cannot be disabled")
        new_name = principal.display_name if name is None else name
        new_enabled = principal.enabled if enabled is None else enabled
        now = self._clock.now()
        async with self._store.unit_of_work() as uow:
            await uow.update_principal(object_id, display_name=new_name, enabled=new_enabled, when=now)
            if new_enabled != principal.enabled:
                event = EventType.PRINCIPAL_ENABLED if new_enabled else EventType.PRINCIPAL_DISABLED
                await uow.append_event(event, now, tenant_id=tenant_id, principal_id=object_id)
        await self._notifier.notify()
        return replace(principal, display_name=new_name, enabled=new_enabled, update_time=now)

    async def delete_principal(self, actor: Principal, tenant_id: str, object_id: str) -> None:
        """Delete a user or service principal with its secrets and role assignments."""
        require_same_tenant(actor, tenant_id)
        principal = await self._lookups.principal(tenant_id, object_id)
        require_admin(actor, tenant_id, "delete principals")
        if principal.operator:
            raise errors.FailedPrecondition(Reason.OPERATOR_PROTECTED, "the platform operator cannot be deleted")
        if principal.kind is PrincipalKind.MANAGED_IDENTITY:
            raise errors.FailedPrecondition(
                Reason.PRINCIPAL_KIND_NOT_ALLOWED,
                "a managed identity is deleted by the platform service that owns its resource",
            )
        await self._delete(principal)

    async def _delete(self, principal: Principal) -> None:
        async with self._store.unit_of_work() as uow:
            await uow.delete_principal(principal.object_id)
            await uow.append_event(
                EventType.PRINCIPAL_DELETED,
                self._clock.now(),
                tenant_id=principal.tenant_id,
                principal_id=principal.object_id,
            )
        await self._notifier.notify()

    # --- managed identities -----------------------------------------------------------

    async def create_managed_identity(self, actor: Principal, tenant_id: str, resource_id: str, name: str) -> Principal:
        """A system-assigned identity for a resource, owned by the calling platform service.

        Idempotent for its owner, as enabling a system-assigned identity is in Azure: if the
        resource has one that this platform service made (in this tenant), that one is the
        answer. So a platform service that crashed between this call and recording its
        answer finds the identity again on its next attempt, instead of being refused
        MANAGED_IDENTITY_EXISTS for good."""
        if not actor.platform_service:
            raise errors.PermissionDenied(
                Reason.PLATFORM_PRINCIPAL_REQUIRED,
                "only a platform service principal may create managed identities",
            )
        resource_id, subscription_id = parse_resource_id("resource_id", resource_id)
        provider = RESOURCE_PROVIDERS.get(actor.platform_service, "")
        if provider.lower() != provider_of(resource_id).lower():
            raise errors.PermissionDenied(
                Reason.PROVIDER_NOT_OWNED,
                f"the platform service {actor.platform_service!r} makes managed identities only for resources of "
                f"its own resource provider ({provider or 'none'})",
                metadata={"platform_service": actor.platform_service},
            )
        name = display_name("display_name", name or resource_id.rsplit("/", 1)[-1])
        await self._lookups.tenant(tenant_id)
        sub = await self._lookups.subscription(subscription_id)
        if sub.tenant_id != tenant_id:
            raise errors.FailedPrecondition(
                Reason.RESOURCE_NOT_IN_TENANT,
                f"the resource's subscription {subscription_id} belongs to another tenant than {tenant_id}",
                metadata={"subscription_id": subscription_id, "tenant_id": tenant_id},
            )
        existing = await self._store.managed_identity_for(resource_id)
        if existing is not None and existing.owner_object_id == actor.object_id and existing.tenant_id == tenant_id:
            return existing
        if existing is not None:
            raise errors.AlreadyExists(
                Reason.MANAGED_IDENTITY_EXISTS,
                "this resource already has a system-assigned managed identity",
                metadata={"resource_id": resource_id},
            )
        principal = self.new_principal(
            tenant_id, PrincipalKind.MANAGED_IDENTITY, name, resource_id=resource_id, owner_object_id=actor.object_id
        )
        async with self._store.unit_of_work() as uow:
            await uow.insert_principal(principal)
            await uow.append_event(
                EventType.PRINCIPAL_CREATED,
                principal.create_time,
                tenant_id=tenant_id,
                principal_id=principal.object_id,
            )
        await self._notifier.notify()
        return principal

    async def owned_managed_identity(self, actor: Principal, tenant_id: str, object_id: str) -> Principal:
        """The managed identity, if the actor is the platform principal that owns it. To anyone
        but a platform service, another tenant's identities are not there (what exists in
        another tenant, and of which kind, is no one else's to learn)."""
        if not actor.platform_service:
            require_same_tenant(actor, tenant_id)
        principal = await self._lookups.principal(tenant_id, object_id)
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
