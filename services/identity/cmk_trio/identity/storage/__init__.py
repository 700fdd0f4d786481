"""What the identity service needs of its storage, as Protocols: the reads, and a unit of
work for the writes that must commit together (a change and the event announcing it).
`open_store` opens the engine a location names: a SQLite file's path, or a
postgresql:// URL; both pass tests/identity/test_storage.py.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from datetime import datetime
from pathlib import Path
from typing import Protocol

from cmk_trio.identity.model import (
    ClientSecret,
    Event,
    EventType,
    Principal,
    PrincipalKind,
    ResourceGroup,
    Role,
    RoleAssignment,
    SignInFailures,
    SigningKey,
    Subscription,
    Tenant,
)
from cmk_trio.identity.storage.sql import SqlIdentityStore
from cmk_trio.rpckit.storage import Store


class IdentityUnitOfWork(Protocol):
    """The writes of one transaction: all of them commit, or none."""

    async def sign_in_failures(self, client: tuple[str, str]) -> SignInFailures | None:
        """The failed sign-ins of (tenant id, client id) as this transaction sees them."""
        ...

    async def put_sign_in_failures(self, client: tuple[str, str], failures: SignInFailures | None) -> None:
        """Replace them (None: forget them)."""
        ...

    async def delete_sign_in_failures_before(self, when: datetime) -> None:
        """Forget the failures whose window began before `when`."""
        ...

    async def insert_tenant(self, tenant: Tenant) -> None: ...

    async def update_tenant_name(self, tenant_id: str, display_name: str) -> None: ...

    async def insert_subscription(self, sub: Subscription) -> None: ...

    async def transfer_subscription(self, subscription_id: str, tenant_id: str, when: datetime) -> int:
        """Move the subscription and drop its role assignments; returns how many were dropped."""
        ...

    async def insert_principal(self, p: Principal) -> None: ...

    async def update_principal(self, object_id: str, *, display_name: str, enabled: bool, when: datetime) -> None: ...

    async def delete_principal(self, object_id: str) -> None:
        """Remove a principal with its secrets and role assignments."""
        ...

    async def insert_secret(self, s: ClientSecret) -> None: ...

    async def count_secrets(self, object_id: str) -> int:
        """How many client secrets the principal holds (expired ones too)."""
        ...

    async def delete_secret(self, object_id: str, secret_id: str) -> bool:
        """Remove a client secret; False if the principal has none of that id."""
        ...

    async def insert_role_assignment(self, ra: RoleAssignment, subscription_id: str) -> None: ...

    async def delete_role_assignment(self, role_assignment_id: str) -> None: ...

    async def insert_resource_group(self, group: ResourceGroup) -> None: ...

    async def update_resource_group_tags(
        self, subscription_id: str, name: str, tags: dict[str, str], when: datetime
    ) -> None: ...

    async def delete_resource_group(self, subscription_id: str, name: str) -> bool:
        """Remove a group (by its name, in any case); False if there was none."""
        ...

    async def insert_signing_key(self, key: SigningKey) -> None: ...

    async def retire_active_keys(self, retire_time: datetime) -> None:
        """Make the active key a retiring one, served until `retire_time`."""
        ...

    async def delete_retired_keys(self, now: datetime) -> None:
        """Drop retiring keys whose time is over at `now`."""
        ...

    async def delete_signing_key(self, kid: str) -> bool:
        """Withdraw a key (active or retiring) for good; False if there is none of that kid."""
        ...

    async def append_event(self, event_type: EventType, when: datetime, **fields: str) -> None:
        """Append an event with the next sequence number, without gaps."""
        ...


class IdentityStore(Store, Protocol):
    """The identity service's reads, and `unit_of_work()` for its writes."""

    def unit_of_work(self) -> AbstractAsyncContextManager[IdentityUnitOfWork]: ...

    async def get_tenant(self, tenant_id: str) -> Tenant | None: ...

    async def list_tenants(self, *, after: str | None, limit: int, only: str | None = None) -> list[Tenant]:
        """Tenants by id after `after` (only the tenant `only`, when given)."""
        ...

    async def get_subscription(self, subscription_id: str) -> Subscription | None: ...

    async def list_subscriptions(
        self, *, tenant_id: str | None, after: str | None, limit: int
    ) -> list[Subscription]: ...

    async def get_principal(self, object_id: str) -> Principal | None: ...

    async def principal_by_client_id(self, tenant_id: str, client_id: str) -> Principal | None: ...

    async def managed_identity_for(self, resource_id: str) -> Principal | None:
        """The system-assigned managed identity of a resource (ids compare without case)."""
        ...

    async def managed_identities_under(self, prefix: str) -> list[Principal]:
        """Managed identities of resources whose id starts with `prefix` (case-insensitive)."""
        ...

    async def operator(self) -> Principal | None:
        """The platform operator, once bootstrap has made it."""
        ...

    async def list_principals(
        self, *, tenant_id: str, kind: PrincipalKind | None, after: str | None, limit: int
    ) -> list[Principal]: ...

    async def secrets_of(
        self, object_id: str, *, after: str | None = None, limit: int = 1000
    ) -> list[ClientSecret]: ...

    async def secret_of(self, object_id: str, secret_id: str) -> ClientSecret | None:
        """The principal's client secret of that id (None if it holds none of that id)."""
        ...

    async def unnamed_secrets_of(self, object_id: str, *, limit: int) -> list[ClientSecret]:
        """The principal's client secrets that name no id (see ClientSecret.named)."""
        ...

    async def find_role_assignment(self, principal_id: str, role: Role, scope: str) -> RoleAssignment | None: ...

    async def get_role_assignment(self, role_assignment_id: str) -> RoleAssignment | None: ...

    async def role_assignments_of(self, principal_id: str) -> list[RoleAssignment]: ...

    async def list_role_assignments(
        self, *, tenant_id: str | None, principal_id: str | None, after: str | None, limit: int
    ) -> list[RoleAssignment]: ...

    async def role_assignments_in(self, subscription_id: str) -> list[RoleAssignment]:
        """Every role assignment on the subscription or below."""
        ...

    async def get_resource_group(self, subscription_id: str, name: str) -> ResourceGroup | None:
        """The subscription's group of that name, compared case-insensitively."""
        ...

    async def list_resource_groups(self, subscription_id: str, *, after: str | None, limit: int) -> list[ResourceGroup]:
        """The subscription's groups in the order of their lower-cased names, after `after` (one of those)."""
        ...

    async def signing_keys(self, *, now: datetime) -> list[SigningKey]:
        """The active key first, then retiring keys still served at `now`."""
        ...

    async def count_signing_keys(self) -> int: ...

    async def events_after(self, sequence: int, limit: int = 500) -> list[Event]:
        """Events with a sequence number above `sequence`, oldest first."""
        ...

    async def last_sequence(self) -> int: ...


async def open_store(location: str | Path, *, must_exist: bool = False) -> IdentityStore:
    """The identity service's store at `location` (a SQLite file, or a postgresql:// URL),
    migrated to this program's schema (`must_exist`: refuse an empty PostgreSQL schema)."""
    return await SqlIdentityStore.open(location, must_exist=must_exist)
