"""Resource groups: Azure Resource Manager's named containers of a subscription's resources,
kept by the directory beside the subscriptions and role assignments they belong with.

Who may do what follows Azure Resource Manager: any role on a group or above reads it,
Contributor or Owner creates, retags and deletes it, and the administrator of the
subscription's tenant and the operator may do everything. Authorization comes before
existence, so a caller without the role is refused (ROLE_REQUIRED) whether or not the group
exists, and learns nothing of which names are taken; to a principal of another tenant the
subscription itself does not exist (SUBSCRIPTION_NOT_FOUND).
"""

from __future__ import annotations

from dataclasses import replace

from cmk_trio.identity import errors
from cmk_trio.identity.directory_rules import Collaborators, require_same_tenant
from cmk_trio.identity.model import Action, EventType, Principal, ResourceGroup, Subscription
from cmk_trio.identity.role_assignments import RoleAssignments
from cmk_trio.identity.scopes import is_under
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.validation import arm_tags, location


def group_id(subscription_id: str, name: str) -> str:
    return f"/subscriptions/{subscription_id}/resourceGroups/{name}"


def _missing(subscription_id: str, name: str) -> errors.NotFound:
    return errors.not_found(Reason.RESOURCE_GROUP_NOT_FOUND, "resource group", group_id(subscription_id, name))


class ResourceGroups:
    """Create, read, list, retag and delete resource groups; deleting one removes every role
    assignment on it or below (each announced by a ROLE_ASSIGNMENTS_CHANGED event)."""

    def __init__(self, parts: Collaborators, roles: RoleAssignments) -> None:
        self._store, self._clock, self._notifier = parts.store, parts.clock, parts.notifier
        self._lookups, self._roles = parts.lookups, roles

    async def _authorize(self, actor: Principal, subscription_id: str, scope: str, action: Action) -> Subscription:
        """The subscription, once `actor` may do `action` on `scope` in it."""
        sub = await self._lookups.subscription(subscription_id)
        require_same_tenant(
            actor, sub.tenant_id, errors.not_found(Reason.SUBSCRIPTION_NOT_FOUND, "subscription", subscription_id)
        )
        if not await self._roles.holds(actor, scope, action):
            least = action.least_role.name
            raise errors.PermissionDenied(
                Reason.ROLE_REQUIRED,
                f"{'reading' if action is Action.READ else 'changing'} {scope} needs the "
                f"{least.title()} role on it or above",
                metadata={"scope": scope, "role": least},
            )
        return sub

    async def create(
        self, actor: Principal, subscription_id: str, name: str, where: str, tags: dict[str, str]
    ) -> tuple[ResourceGroup, str]:
        """The new group and its subscription's tenant."""
        where = location("resource_group.location", where.lower().replace(" ", ""))
        tags = arm_tags("resource_group.tags", tags)
        sub = await self._authorize(actor, subscription_id, group_id(subscription_id, name), Action.WRITE)
        existing = await self._store.get_resource_group(subscription_id, name)
        if existing is not None:
            raise errors.AlreadyExists(
                Reason.RESOURCE_GROUP_EXISTS,
                f"the subscription already has a resource group named {existing.name} (names compare ignoring case)",
            )
        group = ResourceGroup(subscription_id, name, where, tags, self._clock.now(), None)
        async with self._store.unit_of_work() as uow:
            await uow.insert_resource_group(group)
        return group, sub.tenant_id

    async def get(self, actor: Principal, subscription_id: str, name: str) -> tuple[ResourceGroup, str]:
        sub = await self._authorize(actor, subscription_id, group_id(subscription_id, name), Action.READ)
        group = await self._store.get_resource_group(subscription_id, name)
        if group is None:
            raise _missing(subscription_id, name)
        return group, sub.tenant_id

    async def list(
        self, actor: Principal, subscription_id: str, *, after: str | None, limit: int
    ) -> tuple[list[ResourceGroup], str]:
        """The subscription's groups that `actor` may read (all of them with a role on the
        subscription), a page at a time, and its tenant."""
        sub = await self._lookups.subscription(subscription_id)
        require_same_tenant(
            actor, sub.tenant_id, errors.not_found(Reason.SUBSCRIPTION_NOT_FOUND, "subscription", subscription_id)
        )
        found: list[ResourceGroup] = []
        cursor = after
        while len(found) < limit:
            batch = await self._store.list_resource_groups(subscription_id, after=cursor, limit=limit)
            for group in batch:
                if await self._roles.holds(actor, group.resource_id, Action.READ):
                    found.append(group)
            if len(batch) < limit:
                break
            cursor = batch[-1].name
        return found[:limit], sub.tenant_id

    async def set_tags(
        self, actor: Principal, subscription_id: str, name: str, tags: dict[str, str]
    ) -> tuple[ResourceGroup, str]:
        tags = arm_tags("resource_group.tags", tags)
        sub = await self._authorize(actor, subscription_id, group_id(subscription_id, name), Action.WRITE)
        group = await self._store.get_resource_group(subscription_id, name)
        if group is None:
            raise _missing(subscription_id, name)
        now = self._clock.now()
        async with self._store.unit_of_work() as uow:
            await uow.update_resource_group_tags(subscription_id, name, tags, now)
        return replace(group, tags=tags, update_time=now), sub.tenant_id

    async def delete(self, actor: Principal, subscription_id: str, name: str) -> None:
        """Delete the group and every role assignment on it or below, together."""
        scope = group_id(subscription_id, name)
        sub = await self._authorize(actor, subscription_id, scope, Action.WRITE)
        if await self._store.get_resource_group(subscription_id, name) is None:
            raise _missing(subscription_id, name)
        under = [a for a in await self._store.role_assignments_in(subscription_id) if is_under(a.scope, scope)]
        now = self._clock.now()
        async with self._store.unit_of_work() as uow:
            if not await uow.delete_resource_group(subscription_id, name):
                raise _missing(subscription_id, name)  # deleted meanwhile: nothing of this unit is kept
            for assignment in under:
                await uow.delete_role_assignment(assignment.role_assignment_id)
                await uow.append_event(
                    EventType.ROLE_ASSIGNMENTS_CHANGED,
                    now,
                    tenant_id=sub.tenant_id,
                    principal_id=assignment.principal_id,
                    subscription_id=subscription_id,
                    scope=assignment.scope,
                )
        if under:
            await self._notifier.notify()
