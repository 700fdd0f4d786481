"""The control plane: vaults and their access policies, authorised by role assignments in
the identity service (Reader to read, Contributor to change, as in Azure)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import timedelta
from typing import TypeVar

from cmk_trio.keyvault import errors
from cmk_trio.keyvault.callers import PURGER, Recorder
from cmk_trio.keyvault.model import AccessPolicy, EventType, KeyPermission, SecretPermission, Vault
from cmk_trio.keyvault.storage import KeyVaultStore
from cmk_trio.platform.access import Access, Authorizer, require_role
from cmk_trio.platform.key_names import vault_name
from cmk_trio.rpckit import validation
from cmk_trio.rpckit.clock import Clock
from cmk_trio.rpckit.errors import invalid_field
from cmk_trio.rpckit.events import ChangeNotifier
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.tokens import OPERATOR_ROLE, VerifiedToken
from cmk_trio.rpckit.validation import require_uuid

MAX_ACCESS_POLICIES = 1024
MIN_RETENTION_DAYS, MAX_RETENTION_DAYS = 7, 90
EVERY_PERMISSION = frozenset(p for p in KeyPermission if p is not KeyPermission.ALL)
EVERY_SECRET_PERMISSION = frozenset(p for p in SecretPermission if p is not SecretPermission.ALL)


P = TypeVar("P", KeyPermission, SecretPermission)


def permissions_of(field: str, names: Iterable[str], kind: type[P]) -> frozenset[P]:
    """Permission names (on keys, or on secrets) as the real service spells them; an unknown
    one is refused."""
    found: set[P] = set()
    by_lower = {p.value.lower(): p for p in kind}
    for name in names:
        permission = by_lower.get(name.lower()) if isinstance(name, str) else None
        if permission is None:
            what = "key" if kind is KeyPermission else "secret"
            raise invalid_field(
                field,
                Reason.PERMISSION_UNKNOWN,
                f"unknown {what} permission {name[:40]!r}; use: {', '.join(p.value for p in kind)}",
            )
        found.add(permission)
    return frozenset(found)


SKUS = ("standard", "premium")
PolicyInput = tuple[str, str, Iterable[str], Iterable[str]]
"""An access policy entry as a request gives it: tenant id, object id, key and secret permissions."""


def sku_of(field: str, value: str) -> str:
    """Azure's pricing tier of a vault, "standard" or "premium" (any case)."""
    if value.lower() not in SKUS:
        raise invalid_field(field, Reason.FIELD_INVALID, f"must be one of {', '.join(SKUS)}")
    return value.lower()


def policies_of(field: str, entries: Iterable[PolicyInput], vault_tenant: str) -> tuple[AccessPolicy, ...]:
    """A whole list of access policy entries, checked together: each for a principal of the
    vault's tenant, one per object id, at most MAX_ACCESS_POLICIES; an entry that grants
    nothing is left out (the vault keeps no empty entries)."""
    found: dict[str, AccessPolicy] = {}
    for i, (tenant_id, object_id, keys, secrets) in enumerate(entries):
        if i >= MAX_ACCESS_POLICIES:
            raise errors.FailedPrecondition(
                Reason.ACCESS_POLICY_LIMIT, f"a vault holds at most {MAX_ACCESS_POLICIES} access policy entries"
            )
        tenant_id = require_uuid(f"{field}[{i}].tenant_id", tenant_id)
        object_id = require_uuid(f"{field}[{i}].object_id", object_id)
        if tenant_id != vault_tenant:
            raise errors.FailedPrecondition(
                Reason.ACCESS_POLICY_TENANT_MISMATCH,
                f"access policy entries must be for principals of the vault's tenant {vault_tenant}",
                metadata={"vault_tenant_id": vault_tenant},
            )
        if object_id in found:
            raise invalid_field(f"{field}[{i}].object_id", Reason.FIELD_INVALID, "names a principal listed before")
        entry = AccessPolicy(
            tenant_id,
            object_id,
            permissions_of(f"{field}[{i}].key_permissions", keys, KeyPermission),
            permissions_of(f"{field}[{i}].secret_permissions", secrets, SecretPermission),
        )
        found[object_id] = entry
    return tuple(p for p in found.values() if not p.empty)


def _changed(
    old: frozenset[P], adding: frozenset[P], removing: frozenset[P], every: frozenset[P], all_of: P
) -> frozenset[P]:
    """An entry's permissions of one kind after an add and a remove ("all" spelled out when
    something is taken from it)."""
    current = every if all_of in old and removing else old
    result = (current | adding) - removing
    return frozenset({all_of}) if all_of in adding else result


class Vaults:
    """Vault lifecycle and access policies."""

    def __init__(
        self,
        store: KeyVaultStore,
        clock: Clock,
        authorizer: Authorizer,
        notifier: ChangeNotifier,
        on_purge: Callable[[str], None] = lambda _name: None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.authorizer = authorizer
        self.notifier = notifier
        self._on_purge = on_purge  # drops what other parts cached about a purged vault

    async def require(self, caller: VerifiedToken, scope: str, access: Access) -> None:
        await require_role(self.authorizer, caller, scope, access)

    async def require_on(self, caller: VerifiedToken, vault: Vault, access: Access) -> None:
        """`access` on the vault; a caller who may not even read it is told what a missing
        vault's caller is told (no one learns what exists in another tenant)."""
        hidden = errors.vault_not_found(vault.vault_name) if not vault.deleted else _no_deleted_vault(vault.vault_name)
        await require_role(self.authorizer, caller, vault.resource_id, access, hidden=hidden)

    async def _live(self, name: str) -> Vault:
        vault = await self.store.get_vault(name)
        if vault is None or vault.deleted:
            raise errors.vault_not_found(name)
        return vault

    async def _deleted(self, name: str) -> Vault:
        vault = await self.store.get_vault(name)
        if vault is None or not vault.deleted:
            raise _no_deleted_vault(name)
        return vault

    # --- vaults -----------------------------------------------------------------------

    async def create(
        self,
        caller: VerifiedToken,
        *,
        name: str,
        subscription_id: str,
        resource_group: str,
        location: str,
        soft_delete: bool | None,
        retention_days: int,
        purge_protection: bool,
        sku: str = "",
        tags: Mapping[str, str] | None = None,
        tenant_id: str = "",
        access_policies: Iterable[PolicyInput] | None = None,
    ) -> Vault:
        """A new vault of the caller's tenant. Its access policies are `access_policies` when
        given (the whole list, checked together), else one entry for the caller with every
        permission."""
        name = vault_name("vault.vault_name", name)
        sku = sku_of("vault.sku", sku) if sku else "standard"
        tags = validation.arm_tags("vault.tags", tags or {})
        creator = AccessPolicy(caller.tenant_id, caller.object_id, EVERY_PERMISSION, EVERY_SECRET_PERMISSION)
        policies = (
            (creator,)
            if access_policies is None
            else policies_of("vault.access_policies", access_policies, caller.tenant_id)
        )
        subscription_id = require_uuid("vault.subscription_id", subscription_id)
        resource_group = validation.resource_group("vault.resource_group", resource_group)
        location = validation.location("vault.location", location)
        retention = retention_days or MAX_RETENTION_DAYS
        if not MIN_RETENTION_DAYS <= retention <= MAX_RETENTION_DAYS:
            raise invalid_field(
                "vault.soft_delete_retention_days", Reason.RETENTION_DAYS_INVALID, "must be between 7 and 90 days"
            )
        soft = True if soft_delete is None else soft_delete
        if purge_protection and not soft:
            raise errors.FailedPrecondition(
                Reason.PURGE_PROTECTION_NEEDS_SOFT_DELETE, "purge protection needs soft-delete to be on"
            )
        scope = f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}"
        await self.require(caller, scope, Access.WRITE)
        if tenant_id and tenant_id.lower() != caller.tenant_id:  # (after the role: it tells the caller's tenant)
            must = f"must be the tenant of the creator's token, {caller.tenant_id}"
            raise invalid_field("vault.tenant_id", Reason.FIELD_INVALID, must)
        existing = await self.store.get_vault(name)
        if existing is not None:
            hint = (
                "; a soft-deleted vault holds it: recover it, or purge it to free the name" if existing.deleted else ""
            )
            raise errors.AlreadyExists(
                Reason.VAULT_NAME_TAKEN,
                f"the vault name {name} is already in use{hint}",
                metadata={"vault": name, "deleted": str(existing.deleted).lower()},
            )
        now = self.clock.now()
        vault = Vault(
            vault_name=name,
            tenant_id=caller.tenant_id,
            subscription_id=subscription_id,
            resource_group=resource_group,
            location=location,
            soft_delete=soft,
            retention_days=retention,
            purge_protection=purge_protection,
            create_time=now,
            update_time=now,
            access_policies=policies,
            vault_id=str(uuid.uuid4()),
            sku=sku,
            tags=tags,
        )
        async with self.store.unit_of_work() as uow:
            await uow.insert_vault(vault)
        await self.notifier.notify()  # every write announces itself: readers cache by it
        return vault

    async def get(self, caller: VerifiedToken, name: str) -> Vault:
        vault = await self._live(vault_name("name", name))
        await self.require_on(caller, vault, Access.READ)
        return vault

    async def list_vaults(
        self, caller: VerifiedToken, subscription_id: str, *, deleted: bool, after: str | None, limit: int
    ) -> list[Vault]:
        subscription_id = require_uuid("subscription_id", subscription_id)
        await self.require(caller, f"/subscriptions/{subscription_id}", Access.READ)
        return await self.store.list_vaults(subscription_id=subscription_id, deleted=deleted, after=after, limit=limit)

    async def update(
        self,
        caller: VerifiedToken,
        name: str,
        *,
        soft_delete: bool | None,
        purge_protection: bool | None,
        sku: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> Vault:
        """Turn soft-delete or purge protection on (never off), set the pricing tier, replace the tags."""
        new_sku = None if sku is None else sku_of("vault.sku", sku)
        new_tags = None if tags is None else validation.arm_tags("vault.tags", tags)
        vault = await self._live(vault_name("vault.name", name))
        await self.require_on(caller, vault, Access.WRITE)
        soft = vault.soft_delete if soft_delete is None else soft_delete
        purge = vault.purge_protection if purge_protection is None else purge_protection
        if vault.soft_delete and not soft:
            raise errors.FailedPrecondition(
                Reason.SOFT_DELETE_IRREVERSIBLE, "soft-delete, once on, cannot be turned off"
            )
        if vault.purge_protection and not purge:
            raise errors.FailedPrecondition(
                Reason.PURGE_PROTECTION_IRREVERSIBLE, "purge protection, once on, cannot be turned off"
            )
        if purge and not soft:
            raise errors.FailedPrecondition(
                Reason.PURGE_PROTECTION_NEEDS_SOFT_DELETE, "purge protection needs soft-delete to be on"
            )
        now = self.clock.now()
        sku_now = vault.sku if new_sku is None else new_sku
        tags_now = vault.tags if new_tags is None else new_tags
        async with self.store.unit_of_work() as uow:
            await uow.update_vault_flags(vault.vault_name, soft_delete=soft, purge_protection=purge, when=now)
            if (sku_now, tags_now) != (vault.sku, vault.tags):
                await uow.update_vault_labels(vault.vault_name, sku=sku_now, tags=tags_now, when=now)
        await self.notifier.notify()
        return replace(vault, soft_delete=soft, purge_protection=purge, sku=sku_now, tags=tags_now, update_time=now)

    async def delete(self, caller: VerifiedToken, name: str) -> None:
        vault = await self._live(vault_name("name", name))
        await self.require_on(caller, vault, Access.WRITE)
        now = self.clock.now()
        async with self.store.unit_of_work() as uow:
            if vault.soft_delete:
                purge_at = now + timedelta(days=vault.retention_days)
                await uow.mark_vault_deleted(vault.vault_name, now, purge_at)
                await uow.append_event(EventType.VAULT_DELETED, now, vault_name=vault.vault_name)
            else:
                await uow.delete_vault(vault.vault_name)
                await uow.append_event(EventType.VAULT_PURGED, now, vault_name=vault.vault_name)
        if not vault.soft_delete:
            self._on_purge(vault.vault_name)
        await self.notifier.notify()

    async def recover(self, caller: VerifiedToken, name: str) -> Vault:
        vault = await self._deleted(vault_name("name", name))
        await self.require_on(caller, vault, Access.WRITE)
        now = self.clock.now()
        async with self.store.unit_of_work() as uow:
            await uow.mark_vault_deleted(vault.vault_name, None, None)
            await uow.append_event(EventType.VAULT_RECOVERED, now, vault_name=vault.vault_name)
        await self.notifier.notify()
        return replace(vault, delete_time=None, purge_time=None)

    async def purge(self, caller: VerifiedToken, name: str) -> None:
        vault = await self._deleted(vault_name("name", name))
        await self.require_on(caller, vault, Access.WRITE)
        now = self.clock.now()
        if vault.purge_protection and vault.purge_time is not None and now < vault.purge_time:
            raise errors.with_akv(
                errors.FailedPrecondition(
                    Reason.PURGE_PROTECTED,
                    f"purge protection is on for vault {vault.vault_name}: it cannot be purged before "
                    f"{vault.purge_time.isoformat()}, when the service purges it by itself",
                    metadata={"vault": vault.vault_name, "purge_time": vault.purge_time.isoformat()},
                ),
                "Forbidden",
            )
        await self._purge(vault.vault_name)

    async def _purge(self, name: str) -> None:
        async with self.store.unit_of_work() as uow:
            await uow.delete_vault(name)
            await uow.append_event(EventType.VAULT_PURGED, self.clock.now(), vault_name=name)
        self._on_purge(name)
        await self.notifier.notify()

    # --- access policies --------------------------------------------------------------

    async def set_policy(
        self,
        caller: VerifiedToken,
        name: str,
        tenant_id: str,
        object_id: str,
        permissions: Iterable[str],
        secret_permissions: Iterable[str] = (),
    ) -> Vault:
        """Replace a principal's entry: its permissions on keys and on secrets."""
        keys = permissions_of("access_policy.key_permissions", permissions, KeyPermission)
        secrets = permissions_of("access_policy.secret_permissions", secret_permissions, SecretPermission)
        return await self._change_policy(
            caller, name, tenant_id, object_id, lambda old: AccessPolicy(old.tenant_id, old.object_id, keys, secrets)
        )

    async def update_policy(
        self,
        caller: VerifiedToken,
        name: str,
        tenant_id: str,
        object_id: str,
        add: Iterable[str],
        remove: Iterable[str],
        add_secret: Iterable[str] = (),
        remove_secret: Iterable[str] = (),
    ) -> Vault:
        adding = permissions_of("add_permissions", add, KeyPermission)
        removing = permissions_of("remove_permissions", remove, KeyPermission)
        adding_secret = permissions_of("add_secret_permissions", add_secret, SecretPermission)
        removing_secret = permissions_of("remove_secret_permissions", remove_secret, SecretPermission)

        def change(old: AccessPolicy) -> AccessPolicy:
            return AccessPolicy(
                old.tenant_id,
                old.object_id,
                _changed(old.permissions, adding, removing, EVERY_PERMISSION, KeyPermission.ALL),
                _changed(old.secret_permissions, adding_secret, removing_secret, EVERY_SECRET_PERMISSION,
                         SecretPermission.ALL),
            )  # fmt: skip

        return await self._change_policy(caller, name, tenant_id, object_id, change)

    async def remove_policy(self, caller: VerifiedToken, name: str, object_id: str) -> Vault:
        object_id = require_uuid("object_id", object_id)
        vault = await self._live(vault_name("name", name))
        await self.require_on(caller, vault, Access.GRANT)
        if vault.policy_of(object_id) is None:
            raise errors.NotFound(
                Reason.ACCESS_POLICY_NOT_FOUND, f"vault {vault.vault_name} has no access policy entry for {object_id}"
            )
        now = self.clock.now()
        async with self.store.unit_of_work() as uow:
            await uow.delete_policy(vault.vault_name, object_id)
            await uow.append_event(
                EventType.ACCESS_POLICY_CHANGED, now, vault_name=vault.vault_name, object_id=object_id
            )
        await self.notifier.notify()
        return await self._live(vault.vault_name)

    async def replace_policies(self, caller: VerifiedToken, name: str, entries: Iterable[PolicyInput]) -> Vault:
        """Make the vault's entries exactly `entries`, all or nothing; each principal whose entry
        changes is announced (ACCESS_POLICY_CHANGED), so that its cached grants go at once."""
        vault = await self._live(vault_name("name", name))
        await self.require_on(caller, vault, Access.GRANT)
        policies = policies_of("access_policies", entries, vault.tenant_id)
        before = {p.object_id: p for p in vault.access_policies}
        after = {p.object_id: p for p in policies}
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        now = self.clock.now()
        async with self.store.unit_of_work() as uow:
            await uow.delete_policies(vault.vault_name)
            for policy in policies:
                await uow.put_policy(vault.vault_name, policy)
            for object_id in changed:
                await uow.append_event(
                    EventType.ACCESS_POLICY_CHANGED, now, vault_name=vault.vault_name, object_id=object_id
                )
        await self.notifier.notify()
        return await self._live(vault.vault_name)

    async def name_available(self, name: str) -> tuple[bool, Reason | None, str]:
        """Whether a vault could be made under `name` now, and why not."""
        try:
            name = vault_name("vault_name", name)
        except errors.InvalidArgument as refused:
            return False, Reason.VAULT_NAME_INVALID, refused.message
        existing = await self.store.get_vault(name)
        if existing is None:
            return True, None, ""
        held = " by a soft-deleted vault: recover it, or purge it to free the name" if existing.deleted else ""
        return False, Reason.VAULT_NAME_TAKEN, f"the vault name {name} is already in use{held}"

    async def _change_policy(
        self,
        caller: VerifiedToken,
        name: str,
        tenant_id: str,
        object_id: str,
        change: Callable[[AccessPolicy], AccessPolicy],
    ) -> Vault:
        tenant_id = require_uuid("access_policy.tenant_id", tenant_id)
        object_id = require_uuid("access_policy.object_id", object_id)
        vault = await self._live(vault_name("name", name))
        await self.require_on(caller, vault, Access.GRANT)
        if tenant_id != vault.tenant_id:
            raise errors.FailedPrecondition(
                Reason.ACCESS_POLICY_TENANT_MISMATCH,
                f"access policy entries must be for principals of the vault's tenant {vault.tenant_id}",
                metadata={"vault_tenant_id": vault.tenant_id},
            )
        now = self.clock.now()
        # The change is computed from the entry as the unit of work sees it, so concurrent
        # changes of one entry (an add here, a remove there) each build on the one before.
        async with self.store.unit_of_work() as uow:
            existing = await uow.get_policy(vault.vault_name, object_id)
            if existing is None and await uow.count_policies(vault.vault_name) >= MAX_ACCESS_POLICIES:
                raise errors.FailedPrecondition(
                    Reason.ACCESS_POLICY_LIMIT, f"a vault holds at most {MAX_ACCESS_POLICIES} access policy entries"
                )
            new = change(existing or AccessPolicy(tenant_id, object_id, frozenset()))
            if not new.empty:
                await uow.put_policy(vault.vault_name, replace(new, tenant_id=tenant_id))
            else:
                await uow.delete_policy(vault.vault_name, object_id)
            await uow.append_event(
                EventType.ACCESS_POLICY_CHANGED, now, vault_name=vault.vault_name, object_id=object_id
            )
        await self.notifier.notify()
        return await self._live(vault.vault_name)

    # --- who reads the audit log ------------------------------------------------------

    async def require_audit_reader(self, caller: VerifiedToken, vault: str) -> Vault | None:
        """The operator reads every vault's records (None: no incarnation to keep to, every
        vault that had the name); anyone else only those of the vault that holds the name
        now (`vault`, not empty), on which they hold Reader or more: that vault is returned,
        and its records are all they see, not those of an earlier vault of the name."""
        if OPERATOR_ROLE in caller.roles:
            return None
        if not vault:
            raise errors.PermissionDenied(
                Reason.OPERATOR_REQUIRED, "only the platform operator may read the audit records of every vault"
            )
        found = await self.store.get_vault(vault)
        if found is None:
            raise errors.vault_not_found(vault)
        # Live or soft-deleted, to a caller who may not read it the vault is simply not there.
        await require_role(
            self.authorizer, caller, found.resource_id, Access.READ, hidden=errors.vault_not_found(vault)
        )
        return found

    # --- the purger -------------------------------------------------------------------

    async def purge_due(self, recorder: Recorder) -> list[str]:
        """Purge every deleted vault whose purge date has come, each purge audited with it;
        returns their names."""
        due = await self.store.vaults_due_for_purge(self.clock.now())
        for name in due:
            async with recorder.system_call("PurgeDeletedVault", request_id=PURGER, vault_name=name):
                await self._purge(name)
        return due


def _no_deleted_vault(name: str) -> errors.NotFound:
    return errors.NotFound(
        Reason.DELETED_VAULT_NOT_FOUND, f"there is no deleted vault named {name}", metadata={"vault": name}
    )
