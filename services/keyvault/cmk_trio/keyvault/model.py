"""The key vault's domain objects, free of gRPC and SQL."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum, StrEnum


class KeyPermission(StrEnum):
    """Key permissions of an access policy, by their real names."""

    ALL = "all"
    GET = "get"
    LIST = "list"
    CREATE = "create"
    UPDATE = "update"
    IMPORT = "import"
    DELETE = "delete"
    RECOVER = "recover"
    BACKUP = "backup"
    RESTORE = "restore"
    PURGE = "purge"
    ENCRYPT = "encrypt"
    DECRYPT = "decrypt"
    WRAP_KEY = "wrapKey"
    UNWRAP_KEY = "unwrapKey"
    SIGN = "sign"
    VERIFY = "verify"
    ROTATE = "rotate"
    RELEASE = "release"
    GET_ROTATION_POLICY = "getrotationpolicy"
    SET_ROTATION_POLICY = "setrotationpolicy"


class SecretPermission(StrEnum):
    """Secret permissions of an access policy, by their real names."""

    ALL = "all"
    GET = "get"
    LIST = "list"
    SET = "set"
    DELETE = "delete"
    BACKUP = "backup"
    RESTORE = "restore"
    RECOVER = "recover"
    PURGE = "purge"


Permission = KeyPermission | SecretPermission
"""What a data-plane call needs: a permission on keys, or one on secrets."""


class KeyOperation(StrEnum):
    """What a key version may be used for, by the JWK key_ops names."""

    ENCRYPT = "encrypt"
    DECRYPT = "decrypt"
    WRAP_KEY = "wrapKey"
    UNWRAP_KEY = "unwrapKey"
    SIGN = "sign"
    VERIFY = "verify"


ALL_KEY_OPERATIONS = tuple(KeyOperation)


class RecoveryLevel(StrEnum):
    """As the real service reports a key's recoverability."""

    PURGEABLE = "Purgeable"
    RECOVERABLE_PURGEABLE = "Recoverable+Purgeable"
    RECOVERABLE = "Recoverable"


class EventType(IntEnum):
    """Kinds of key vault events (numbers match the proto enum)."""

    ACCESS_POLICY_CHANGED = 1
    KEY_CREATED = 2
    KEY_ROTATED = 3
    KEY_UPDATED = 4
    KEY_DELETED = 5
    KEY_RECOVERED = 6
    KEY_PURGED = 7
    VAULT_DELETED = 8
    VAULT_RECOVERED = 9
    VAULT_PURGED = 10
    KEY_NEAR_EXPIRY = 11
    HEARTBEAT = 12
    """Not stored: what the stream sends once caught up and when idle (sequence 0)."""


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    tenant_id: str
    object_id: str
    permissions: frozenset[KeyPermission]
    """On keys (the name predates secrets)."""
    secret_permissions: frozenset[SecretPermission] = frozenset()

    def grants(self, permission: Permission) -> bool:
        if isinstance(permission, SecretPermission):
            return SecretPermission.ALL in self.secret_permissions or permission in self.secret_permissions
        return KeyPermission.ALL in self.permissions or permission in self.permissions

    @property
    def empty(self) -> bool:
        return not self.permissions and not self.secret_permissions


@dataclass(frozen=True, slots=True)
class Vault:
    vault_name: str
    tenant_id: str
    subscription_id: str
    resource_group: str
    location: str
    soft_delete: bool
    retention_days: int
    purge_protection: bool
    create_time: datetime
    update_time: datetime
    delete_time: datetime | None = None
    purge_time: datetime | None = None
    access_policies: tuple[AccessPolicy, ...] = ()
    vault_id: str = ""
    """This incarnation of the name: a vault purged and made again under the same name is
    another vault, with records of its own (empty only for an unsaved vault)."""
    sku: str = "standard"
    """Azure's pricing tier, "standard" or "premium" (both software keys here)."""
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def deleted(self) -> bool:
        return self.delete_time is not None

    @property
    def recovery_level(self) -> RecoveryLevel:
        if not self.soft_delete:
            return RecoveryLevel.PURGEABLE
        return RecoveryLevel.RECOVERABLE if self.purge_protection else RecoveryLevel.RECOVERABLE_PURGEABLE

    @property
    def resource_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.KeyVault/vaults/{self.vault_name}"
        )

    def policy_of(self, object_id: str) -> AccessPolicy | None:
        return next((p for p in self.access_policies if p.object_id == object_id), None)


@dataclass(frozen=True, slots=True)
class KeyVersion:
    vault_name: str
    key_name: str
    version: str
    key_size: int
    key_ops: tuple[KeyOperation, ...]
    enabled: bool
    not_before: datetime | None
    expires: datetime | None
    tags: dict[str, str]
    create_time: datetime
    update_time: datetime
    public_jwk: str
    sealed_private_key: bytes = field(repr=False)
    curve: str = ""
    """An EC key's curve ("P-256", "P-384", "P-521"; its key_size is the curve's bits); empty
    for RSA."""

    @property
    def key_type(self) -> str:
        return "EC" if self.curve else "RSA"


@dataclass(frozen=True, slots=True)
class Secret:
    """A secret: its name and, when soft-deleted, when it was deleted and will be purged."""

    vault_name: str
    secret_name: str
    create_time: datetime
    delete_time: datetime | None = None
    purge_time: datetime | None = None

    @property
    def deleted(self) -> bool:
        return self.delete_time is not None


@dataclass(frozen=True, slots=True)
class SecretVersion:
    """One version of a secret; its value sealed under the service's master key."""

    vault_name: str
    secret_name: str
    version: str
    content_type: str
    enabled: bool
    not_before: datetime | None
    expires: datetime | None
    tags: dict[str, str]
    create_time: datetime
    update_time: datetime
    sealed_value: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Key:
    """A key: its name and, when soft-deleted, when it was deleted and will be purged."""

    vault_name: str
    key_name: str
    create_time: datetime
    delete_time: datetime | None = None
    purge_time: datetime | None = None

    @property
    def deleted(self) -> bool:
        return self.delete_time is not None


@dataclass(frozen=True, slots=True)
class Event:
    sequence: int
    type: EventType
    time: datetime
    vault_name: str = ""
    key_name: str = ""
    version: str = ""
    object_id: str = ""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """What one call did. `result` is "allowed" or "denied"; `reason` the stable reason of
    a refusal (empty when allowed)."""

    time: datetime
    request_id: str
    caller_object_id: str
    tenant_id: str
    client_id: str
    resource_id: str
    operation: str
    vault_name: str
    key_name: str
    key_version: str
    result: str
    reason: str
    vault_id: str = ""
    """The vault incarnation the record belongs to ("" when the call named no vault that
    existed, and in records written before vaults had ids)."""
    count: int = 1
    """How many calls the record stands for: calls refused before any token was verified
    are recorded in aggregate (the first of each kind at once, the rest counted)."""

    def canonical(self) -> dict[str, str | int]:
        """The fields the MAC covers, in declaration order, the time as ISO 8601. The vault
        id only when there is one and the count only when it is not 1, so the records written
        before they existed verify as they were written (blanking or adding either breaks
        the MAC). Built by hand: dataclasses.asdict deep-copies, and this runs for every call."""
        fields: dict[str, str | int] = {
            "time": self.time.isoformat(timespec="microseconds"),
            "request_id": self.request_id,
            "caller_object_id": self.caller_object_id,
            "tenant_id": self.tenant_id,
            "client_id": self.client_id,
            "resource_id": self.resource_id,
            "operation": self.operation,
            "vault_name": self.vault_name,
            "key_name": self.key_name,
            "key_version": self.key_version,
            "result": self.result,
            "reason": self.reason,
        }
        if self.vault_id:
            fields["vault_id"] = self.vault_id
        if self.count != 1:
            fields["count"] = self.count
        return fields


@dataclass(frozen=True, slots=True)
class AuditRecord:
    sequence: int
    entry: AuditEntry
    mac: bytes


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement: the log held `count` records, the last with MAC `head`."""

    count: int
    head: bytes
    time: str
    signature: bytes

    def message(self) -> bytes:
        return f"cmk-audit-checkpoint\n{self.count}\n{self.head.hex()}\n{self.time}".encode()

    def to_json(self) -> str:
        return json.dumps(
            {
                "count": self.count,
                "head": self.head.hex(),
                "time": self.time,
                "signature": base64.b64encode(self.signature).decode(),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Checkpoint:
        data = json.loads(text)
        return cls(
            int(data["count"]), bytes.fromhex(data["head"]), str(data["time"]), base64.b64decode(data["signature"])
        )


@dataclass(frozen=True, slots=True)
class StoredRotationPolicy:
    """A key's rotation policy as stored: the policy's JSON (parsed by the rotation module),
    when it was set, and the version whose near-expiry was last announced."""

    vault_name: str
    key_name: str
    policy_json: str
    update_time: datetime
    notified_version: str = ""
