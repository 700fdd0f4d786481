"""The identity service's domain objects, free of gRPC and SQL."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum


class PrincipalKind(IntEnum):
    """Numbers match the proto enum."""

    USER = 1
    SERVICE_PRINCIPAL = 2
    MANAGED_IDENTITY = 3


class Role(IntEnum):
    """Built-in roles; a higher number includes the lower ones."""

    READER = 1
    CONTRIBUTOR = 2
    OWNER = 3


class Action(IntEnum):
    """What CheckAccess is asked about, and the least role that allows it."""

    READ = 1
    WRITE = 2
    MANAGE_ACCESS = 3

    @property
    def least_role(self) -> Role:
        return {Action.READ: Role.READER, Action.WRITE: Role.CONTRIBUTOR, Action.MANAGE_ACCESS: Role.OWNER}[self]


class EventType(IntEnum):
    """Numbers match the proto enum."""

    PRINCIPAL_DISABLED = 1
    PRINCIPAL_ENABLED = 2
    PRINCIPAL_DELETED = 3
    SUBSCRIPTION_TRANSFERRED = 4
    SIGNING_KEY_ROTATED = 5
    PRINCIPAL_CREATED = 6
    ROLE_ASSIGNMENTS_CHANGED = 7
    HEARTBEAT = 8
    """Not stored: what an idle stream sends to say it is alive (sequence 0)."""
    SIGNING_KEY_REVOKED = 9


@dataclass(frozen=True, slots=True)
class Tenant:
    tenant_id: str
    display_name: str
    platform: bool
    create_time: datetime


@dataclass(frozen=True, slots=True)
class Subscription:
    subscription_id: str
    tenant_id: str
    display_name: str
    create_time: datetime
    transfer_time: datetime | None


@dataclass(frozen=True, slots=True)
class ResourceGroup:
    """A resource group of a subscription. Its name keeps the case it was made with; names
    compare case-insensitively. Its tenant is its subscription's."""

    subscription_id: str
    name: str
    location: str
    tags: dict[str, str]
    create_time: datetime
    update_time: datetime | None

    @property
    def resource_id(self) -> str:
        return f"/subscriptions/{self.subscription_id}/resourceGroups/{self.name}"


@dataclass(frozen=True, slots=True)
class Principal:
    object_id: str
    tenant_id: str
    kind: PrincipalKind
    display_name: str
    client_id: str
    enabled: bool
    resource_id: str
    owner_object_id: str
    platform_service: str
    tenant_admin: bool
    operator: bool
    create_time: datetime
    update_time: datetime


@dataclass(frozen=True, slots=True)
class ClientSecret:
    secret_id: str
    object_id: str
    display_name: str
    create_time: datetime
    expire_time: datetime
    hash: str = field(repr=False)
    named: bool = True
    """Whether the secret names its own id (every secret made since; not those made before,
    nor an operator secret set in configuration in another form)."""


@dataclass(frozen=True, slots=True)
class RoleAssignment:
    role_assignment_id: str
    principal_id: str
    role: Role
    scope: str
    tenant_id: str
    create_time: datetime
    created_by: str


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    public_jwk: str
    active: bool
    create_time: datetime
    retire_time: datetime | None
    sealed_private_key: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Event:
    sequence: int
    type: EventType
    time: datetime
    tenant_id: str = ""
    principal_id: str = ""
    subscription_id: str = ""
    new_tenant_id: str = ""
    kid: str = ""
    scope: str = ""


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str = field(repr=False)
    expire_time: datetime
    expires_in: int


@dataclass(frozen=True, slots=True)
class NewSecret:
    """A secret just added: the stored record, and its value, shown this once."""

    secret: ClientSecret
    value: str = field(repr=False)
    client_id: str


@dataclass(frozen=True)
class SignInFailures:
    """A client id's failed slow checks within the current window (sign_ins.py counts them)."""

    first: datetime
    last: datetime
    count: int = 1
