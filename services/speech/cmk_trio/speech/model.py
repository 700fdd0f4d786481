"""The speech service's domain objects, free of gRPC and SQL."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

CMK_EARLIEST_CREATION = datetime(2020, 6, 27, tzinfo=UTC)
"""The seed: customer-managed keys are only available to resources created after 27 June 2020."""


class Tier(StrEnum):
    F0 = "F0"
    S0 = "S0"


class KeySource(StrEnum):
    MICROSOFT = "Microsoft.CognitiveServices"
    CUSTOMER = "Microsoft.KeyVault"


class ApprovalState(StrEnum):
    REQUESTED = "requested"
    APPROVED = "approved"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class SpeechResource:
    """A speech resource and its encryption settings. `wrapped_data_key` is the data key
    wrapped by `wrapping_key` (a ring version for Microsoft-managed keys, a key identifier
    for customer-managed ones)."""

    resource_id: str
    uid: str
    """Immutable, unlike the resource id (which a move changes): what ciphertexts are bound to."""
    subscription_id: str
    resource_group: str
    account_name: str
    location: str
    tier: Tier
    create_time: datetime
    tenant_id: str
    key_source: KeySource
    wrapping_key: str
    wrapped_data_key: bytes = field(repr=False)
    identity_principal_id: str = ""
    identity_tenant_id: str = ""
    key_uri: str = ""
    follow_latest: bool = False
    generation: int = 0
    """The stored row's version: every stored change adds one, and a change computed from a
    read commits only while the row is still at the generation that was read."""


@dataclass(frozen=True, slots=True)
class Application:
    resource_id: str
    application_id: str
    display_name: str
    version: int
    sealed_configuration: bytes = field(repr=False)
    create_time: datetime = field(default_factory=lambda: datetime.now(UTC))
    update_time: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def etag(self) -> str:
        return f'"{self.version}"'


@dataclass(frozen=True, slots=True)
class SealedLuisKeys:
    resource_id: str
    version: int
    sealed: bytes = field(repr=False)
    update_time: datetime


@dataclass(frozen=True, slots=True)
class CmkApproval:
    subscription_id: str
    state: ApprovalState
    request_time: datetime
    requested_by: str
    decision_time: datetime | None = None
    note: str = ""


def resource_key(resource_id: str) -> str:
    """Azure resource ids compare case-insensitively; this is the form compared and cached."""
    return resource_id.lower()


class StepKind(StrEnum):
    """The changes that call the directory or the key vault before they are recorded here."""

    ENABLE_CMK = "enable_cmk"
    """Undone when it did not finish: a managed identity it made is deleted."""
    ASSIGN_IDENTITY = "assign_identity"
    """Finished when it did not: the identity the directory made is recorded."""


@dataclass(frozen=True, slots=True)
class PendingStep:
    """The intent of a change that calls another service before it is recorded here: stored
    before the first remote call, removed in the transaction that records the change (or
    once its remote steps are undone). One left behind by a crash is finished or undone by
    the service itself, at its next start."""

    step_id: int
    kind: StepKind
    resource_uid: str
    resource_id: str
    """The resource's id when the step began (the managed identity is named after it)."""
    tenant_id: str
    new_identity: bool
    """The resource had no managed identity: the step may make one in the directory."""
    vault_name: str
    start_time: datetime
    owner: str = ""
    """The replica (its store's `instance`) that took the step: while it runs, the step is
    its own and no other replica undoes it."""
