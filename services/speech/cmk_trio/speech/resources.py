"""Speech resources and CMK approvals: the control plane, authorised by role assignments in
the identity service. Creation always uses the Microsoft-managed key, as the seed says."""

from __future__ import annotations

import os
import uuid
from dataclasses import replace
from datetime import datetime
from typing import Protocol

from cmk_trio.platform.access import Access, Authorizer, require_role
from cmk_trio.rpckit import validation
from cmk_trio.rpckit.clock import Clock
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.storage import ReadCache
from cmk_trio.rpckit.tokens import OPERATOR_ROLE, VerifiedToken
from cmk_trio.rpckit.validation import display_name, require_uuid
from cmk_trio.speech import errors, names
from cmk_trio.speech.envelope import CannotDecrypt, DataKey, MasterKeyRing, RandomBytes
from cmk_trio.speech.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, invalid_field
from cmk_trio.speech.model import (
    CMK_EARLIEST_CREATION,
    ApprovalState,
    CmkApproval,
    KeySource,
    SpeechResource,
    Tier,
    resource_key,
)
from cmk_trio.speech.storage import SpeechStore

MAX_NOTE = 1000


class Subscriptions(Protocol):
    """Where the speech service learns which tenant a subscription belongs to now."""

    async def tenant_of(self, subscription_id: str) -> str | None: ...


def check_eligibility(resource: SpeechResource, approval: CmkApproval | None) -> None:
    """The seed's rules for customer-managed keys; each refusal says what to do."""
    if resource.create_time < CMK_EARLIEST_CREATION:
        raise FailedPrecondition(
            Reason.CMK_RESOURCE_TOO_OLD,
            "customer-managed keys are only available to resources created after 27 June 2020; "
            "create a new Speech resource to use them",
            metadata={"create_time": resource.create_time.isoformat()},
        )
    if resource.tier is not Tier.S0:
        raise FailedPrecondition(
            Reason.CMK_TIER_NOT_SUPPORTED,
            f"customer-managed keys need the S0 pricing tier, and this resource is {resource.tier.value}; "
            "create a new Speech resource with the S0 tier",
        )
    if approval is None or approval.state is not ApprovalState.APPROVED or approval.decision_time is None:
        raise FailedPrecondition(
            Reason.CMK_NOT_APPROVED,
            f"subscription {resource.subscription_id} is not approved for customer-managed keys; request approval "
            "(cmk speech cmk-approval request), and once approved create a new Speech resource",
            metadata={"subscription_id": resource.subscription_id, "state": approval.state.value if approval else ""},
        )
    if approval.decision_time > resource.create_time:
        raise FailedPrecondition(
            Reason.CMK_APPROVED_AFTER_CREATION,
            "the subscription was approved for customer-managed keys after this resource was created; "
            "create a new Speech resource to use them",
            metadata={"approved": approval.decision_time.isoformat(), "created": resource.create_time.isoformat()},
        )


class Resources:
    """Speech resources and CMK approvals."""

    def __init__(
        self,
        store: SpeechStore,
        clock: Clock,
        authorizer: Authorizer,
        subscriptions: Subscriptions,
        ring: MasterKeyRing,
        *,
        auto_approve: bool = False,
        random: RandomBytes = os.urandom,
    ) -> None:
        self.store = store
        self.clock = clock
        self.authorizer = authorizer
        self.subscriptions = subscriptions
        self.ring = ring
        self.auto_approve = auto_approve
        self._random = random
        # Resources read once per commit of this service's database (every write of it goes
        # through a transaction there), so a hot path does not pay a database hop per call.
        self._reads = ReadCache(lambda: store.generation)

    async def require(self, caller: VerifiedToken, scope: str, access: Access) -> None:
        await require_role(self.authorizer, caller, scope, access)

    async def require_on(self, caller: VerifiedToken, resource: SpeechResource, access: Access) -> None:
        """`access` on the resource; a caller who may not even read it is told what a
        missing resource's caller is told (no one learns what exists in another tenant)."""
        hidden = errors.resource_not_found(resource.resource_id)
        await require_role(self.authorizer, caller, resource.resource_id, access, hidden=hidden)

    async def get_resource(self, resource_id: str) -> SpeechResource:
        found = await self._reads.get(
            ("resource", resource_key(resource_id)), lambda: self.store.get_resource(resource_id)
        )
        if found is None:
            raise errors.resource_not_found(resource_id)
        return found

    # --- resources --------------------------------------------------------------------

    async def create(
        self,
        caller: VerifiedToken,
        *,
        subscription_id: str,
        resource_group: str,
        account_name: str,
        location: str,
        tier: str,
        customer_managed: bool = False,
        backdate: datetime | None = None,
    ) -> SpeechResource:
        if customer_managed:
            raise InvalidArgument(
                Reason.CMK_AT_CREATION,
                "customer-managed keys cannot be enabled when a resource is created; create it (Microsoft-managed "
                "keys), then set its encryption to customer-managed",
            )
        subscription_id = require_uuid("resource.subscription_id", subscription_id)
        resource_group = validation.resource_group("resource.resource_group", resource_group)
        account_name = names.account_name("resource.account_name", account_name)
        location = validation.location("resource.location", location)
        if tier not in (Tier.F0.value, Tier.S0.value):
            raise invalid_field("resource.pricing_tier", Reason.ENUM_UNKNOWN, "must be F0 or S0")
        if backdate is not None and OPERATOR_ROLE not in caller.roles:
            raise errors.operator_required("may backdate a resource")
        if backdate is None:
            await self.require(
                caller, f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}", Access.WRITE
            )
        # else: the operator, acting for the platform, may place a backdated resource anywhere.
        tenant_id = await self.subscriptions.tenant_of(subscription_id)
        if tenant_id is None:
            raise errors.subscription_not_found(subscription_id)
        resource_id = names.make_resource_id(subscription_id, resource_group, account_name)
        if await self.store.get_resource(resource_id) is not None:
            raise AlreadyExists(
                Reason.SPEECH_RESOURCE_EXISTS, f"speech resource {resource_id} exists already",
                metadata={"resource_id": resource_id},
            )  # fmt: skip
        data_key = DataKey.generate(self._random)
        uid = str(uuid.UUID(bytes=self._random(16), version=4))
        version, wrapped = self.ring.wrap(data_key, uid, self._random)
        resource = SpeechResource(
            resource_id=resource_id,
            uid=uid,
            subscription_id=subscription_id,
            resource_group=resource_group,
            account_name=account_name,
            location=location,
            tier=Tier(tier),
            create_time=backdate or self.clock.now(),
            tenant_id=tenant_id,
            key_source=KeySource.MICROSOFT,
            wrapping_key=version,
            wrapped_data_key=wrapped,
        )
        async with self.store.unit_of_work() as uow:
            await uow.insert_resource(resource)
        return resource

    async def get(self, caller: VerifiedToken, resource_id: str) -> SpeechResource:
        resource = await self.get_resource(names.parse_resource_id("name", resource_id))
        await self.require_on(caller, resource, Access.READ)
        return resource

    async def list_resources(
        self, caller: VerifiedToken, subscription_id: str, *, after: str | None, limit: int
    ) -> list[SpeechResource]:
        subscription_id = require_uuid("subscription_id", subscription_id)
        await self.require(caller, f"/subscriptions/{subscription_id}", Access.READ)
        return await self.store.list_resources(subscription_id, after=after, limit=limit)

    async def delete(self, resource: SpeechResource) -> None:
        """Delete a resource row and its data (the caller has checked the right to)."""
        async with self.store.unit_of_work() as uow:
            await uow.delete_resource(resource.uid)

    async def unopened_by_ring(self) -> str | None:
        """The id of a resource whose data key the master key ring cannot unwrap (a ring
        file that does not belong with this database), or None when it opens one data key
        of every ring version the database uses."""
        for resource_id in await self.store.microsoft_managed_per_ring_version():
            resource = await self.get_resource(resource_id)
            try:
                self.ring.unwrap(resource.wrapping_key, resource.wrapped_data_key, resource.uid)
            except CannotDecrypt:
                return resource_id
        return None

    async def rewrap_to_current_ring(self) -> int:
        """Rewrap every Microsoft-managed data key still wrapped by an older ring version to
        the current one (after a ring rotation); the data itself is untouched. Returns how
        many were rewrapped. Each write is conditional on the resource as read: one that
        changed meanwhile keeps its change (and is rewrapped at the next start, if still old)."""
        done = 0
        for resource_id in await self.store.microsoft_managed_not_wrapped_by(self.ring.current):
            resource = await self.get_resource(resource_id)
            data_key = self.ring.unwrap(resource.wrapping_key, resource.wrapped_data_key, resource.uid)
            version, wrapped = self.ring.wrap(data_key, resource.uid, self._random)
            async with self.store.unit_of_work() as uow:
                stored = await uow.update_resource(replace(resource, wrapping_key=version, wrapped_data_key=wrapped))
            done += stored
        return done

    # --- CMK approvals ----------------------------------------------------------------

    async def request_approval(self, caller: VerifiedToken, subscription_id: str, note: str) -> CmkApproval:
        subscription_id = require_uuid("subscription_id", subscription_id)
        note = display_name("note", note, required=False, limit=MAX_NOTE)
        await self.require(caller, f"/subscriptions/{subscription_id}", Access.MANAGE_ACCESS)
        existing = await self.store.get_approval(subscription_id)
        if existing is not None and existing.state is ApprovalState.APPROVED:
            return existing
        now = self.clock.now()
        approval = CmkApproval(subscription_id, ApprovalState.REQUESTED, now, caller.object_id, None, note)
        if self.auto_approve:  # a development option: the operator's answer, at once
            approval = CmkApproval(subscription_id, ApprovalState.APPROVED, now, caller.object_id, now, "auto-approved")
        async with self.store.unit_of_work() as uow:
            await uow.put_approval(approval)
        return approval

    async def decide(self, caller: VerifiedToken, subscription_id: str, approve: bool, note: str) -> CmkApproval:
        subscription_id = require_uuid("subscription_id", subscription_id)
        note = display_name("note", note, required=False, limit=MAX_NOTE)
        if OPERATOR_ROLE not in caller.roles:
            raise errors.operator_required("decides CMK requests")
        existing = await self.store.get_approval(subscription_id)
        if existing is None:
            raise NotFound(Reason.APPROVAL_NOT_FOUND, f"subscription {subscription_id} has not requested CMK")
        if existing.state is not ApprovalState.REQUESTED:
            raise FailedPrecondition(
                Reason.APPROVAL_ALREADY_DECIDED,
                f"the request of subscription {subscription_id} is already {existing.state.value}; "
                "a new request is needed to decide again",
            )
        state = ApprovalState.APPROVED if approve else ApprovalState.REJECTED
        decided = CmkApproval(
            subscription_id,
            state,
            existing.request_time,
            existing.requested_by,
            self.clock.now(),
            note or existing.note,
        )
        async with self.store.unit_of_work() as uow:
            await uow.put_approval(decided)
        return decided

    async def get_approval(self, caller: VerifiedToken, subscription_id: str) -> CmkApproval:
        subscription_id = require_uuid("subscription_id", subscription_id)
        if OPERATOR_ROLE not in caller.roles:
            await self.require(caller, f"/subscriptions/{subscription_id}", Access.READ)
        found = await self.store.get_approval(subscription_id)
        if found is None:
            raise NotFound(
                Reason.APPROVAL_NOT_FOUND,
                f"subscription {subscription_id} has not requested CMK; request it: cmk speech cmk-approval request",
            )
        return found
