"""Role assignments and CheckAccess: who may grant a role on a scope, and whether a
principal holds one allowing an action there."""

from __future__ import annotations

from cmk_trio.identity import errors
from cmk_trio.identity.directory_rules import Collaborators, new_id, require_same_tenant
from cmk_trio.identity.model import (
    Action,
    EventType,
    Principal,
    Role,
    RoleAssignment,
)
from cmk_trio.identity.scopes import is_under, parse_scope
from cmk_trio.rpckit.errors import ServiceError
from cmk_trio.rpckit.reasons import Reason


class RoleAssignments:
    """Role assignments and CheckAccess: who may grant a role on a scope, and whether a
    principal holds one allowing an action there."""

    def __init__(self, parts: Collaborators) -> None:
        self._store, self._clock, self._notifier = parts.store, parts.clock, parts.notifier
        self._lookups, self._random = parts.lookups, parts.random

    # --- role assignments -------------------------------------------------------------

    async def _may_manage_access(self, actor: Principal, tenant_id: str, scope: str, hidden: ServiceError) -> None:
        """Owner on the scope (or a tenant administrator, or the operator); to another tenant,
        what it names is `hidden`: what a missing one answers."""
        require_same_tenant(actor, tenant_id, hidden)
        if actor.operator or actor.tenant_admin:
            return
        if await self._granting(actor, scope, Action.MANAGE_ACCESS) is None:
            raise errors.PermissionDenied(
                Reason.ROLE_REQUIRED,
                f"granting roles on {scope} needs the Owner role on it (or a tenant administrator)",
                metadata={"scope": scope, "role": "OWNER"},
            )

    async def create_role_assignment(
        self, actor: Principal, principal_id: str, role: Role, scope: str, role_assignment_id: str | None = None
    ) -> RoleAssignment:
        """Grant `role` on `scope`; the assignment's id is `role_assignment_id` when the caller
        chose one (as Azure Resource Manager's clients do), checked only once the caller may
        grant there, so that no one learns which ids are taken elsewhere."""
        scope, subscription_id = parse_scope("role_assignment.scope", scope)
        sub = await self._lookups.subscription(subscription_id)
        missing = errors.not_found(Reason.SUBSCRIPTION_NOT_FOUND, "subscription", subscription_id)
        await self._may_manage_access(actor, sub.tenant_id, scope, missing)
        principal = await self._lookups.principal(sub.tenant_id, principal_id)
        if await self._store.find_role_assignment(principal_id, role, scope) is not None:
            raise errors.AlreadyExists(
                Reason.ROLE_ASSIGNMENT_EXISTS,
                f"{principal_id} already has the {role.name.title()} role on {scope}",
            )
        if role_assignment_id is not None and await self._store.get_role_assignment(role_assignment_id) is not None:
            raise errors.AlreadyExists(
                Reason.ROLE_ASSIGNMENT_EXISTS, f"a role assignment with the id {role_assignment_id} exists"
            )
        assignment = RoleAssignment(
            role_assignment_id or new_id(self._random),
            principal.object_id,
            role,
            scope,
            sub.tenant_id,
            self._clock.now(),
            actor.object_id,
        )
        async with self._store.unit_of_work() as uow:
            await uow.insert_role_assignment(assignment, subscription_id)
            await uow.append_event(
                EventType.ROLE_ASSIGNMENTS_CHANGED,
                assignment.create_time,
                tenant_id=sub.tenant_id,
                principal_id=principal_id,
                subscription_id=subscription_id,
                scope=scope,
            )
        await self._notifier.notify()
        return assignment

    async def _role_assignment(self, role_assignment_id: str) -> RoleAssignment:
        found = await self._store.get_role_assignment(role_assignment_id)
        if found is None:
            raise errors.not_found(
                Reason.ROLE_ASSIGNMENT_NOT_FOUND, "role assignment", f"roleAssignments/{role_assignment_id}"
            )
        return found

    async def get_role_assignment(self, actor: Principal, role_assignment_id: str) -> RoleAssignment:
        found = await self._role_assignment(role_assignment_id)
        hidden = errors.not_found(
            Reason.ROLE_ASSIGNMENT_NOT_FOUND, "role assignment", f"roleAssignments/{role_assignment_id}"
        )
        require_same_tenant(actor, found.tenant_id, hidden)
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
            batch = await self._store.list_role_assignments(
                tenant_id=tenant_id, principal_id=principal_id, after=cursor, limit=limit
            )
            found += [a for a in batch if scope is None or is_under(scope, a.scope)]
            if len(batch) < limit:
                break
            cursor = batch[-1].role_assignment_id
        return found[:limit]

    async def delete_role_assignment(self, actor: Principal, role_assignment_id: str) -> None:
        found = await self._role_assignment(role_assignment_id)
        missing = errors.not_found(
            Reason.ROLE_ASSIGNMENT_NOT_FOUND, "role assignment", f"roleAssignments/{role_assignment_id}"
        )
        await self._may_manage_access(actor, found.tenant_id, found.scope, missing)
        _, subscription_id = parse_scope("scope", found.scope)
        async with self._store.unit_of_work() as uow:
            await uow.delete_role_assignment(role_assignment_id)
            await uow.append_event(
                EventType.ROLE_ASSIGNMENTS_CHANGED,
                self._clock.now(),
                tenant_id=found.tenant_id,
                principal_id=found.principal_id,
                subscription_id=subscription_id,
                scope=found.scope,
            )
        await self._notifier.notify()

    async def holds(self, actor: Principal, scope: str, action: Action) -> bool:
        """Whether `actor` may do `action` on the canonical `scope`: the operator and the
        administrator of the scope's tenant always, anyone else through a role assignment on
        it or above."""
        if actor.operator or actor.tenant_admin:
            return True
        return await self._granting(actor, scope, action) is not None

    async def _granting(self, principal: Principal, scope: str, action: Action) -> RoleAssignment | None:
        """The strongest assignment of `principal` on `scope` or above that allows `action`."""
        best: RoleAssignment | None = None
        for assignment in await self._store.role_assignments_of(principal.object_id):
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
        target = await self._store.get_principal(target_id)
        if target is None:
            raise errors.not_found(Reason.PRINCIPAL_NOT_FOUND, "principal", target_id)
        sub = await self._store.get_subscription(subscription_id)
        if not target.enabled or sub is None or sub.tenant_id != target.tenant_id:
            return None
        return await self._granting(target, scope, action)
