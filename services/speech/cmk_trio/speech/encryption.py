"""A resource's managed identity and encryption settings: assign and remove the identity,
switch to a customer-managed key (checked end to end first) and back. A key change unwraps
the data key with the old key and wraps it with the new one; no record is re-encrypted."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

from cmk_trio.platform.access import Access
from cmk_trio.platform.key_names import MAX_KEY_ID, key_id, key_name, key_version, split_key_id, vault_name
from cmk_trio.rpckit import validation
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.tokens import OPERATOR_ROLE, VerifiedToken
from cmk_trio.rpckit.validation import require_uuid
from cmk_trio.speech import errors
from cmk_trio.speech.customer_keys import DataKeys, IdentityGateway, VaultGateway
from cmk_trio.speech.envelope import RandomBytes
from cmk_trio.speech.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    ServiceError,
    invalid_field,
)
from cmk_trio.speech.model import KeySource, PendingStep, SpeechResource, StepKind
from cmk_trio.speech.names import make_resource_id, parse_resource_id
from cmk_trio.speech.resources import Resources, check_eligibility

log = logging.getLogger(__name__)

FOLLOW_ATTEMPTS = 3
"""How often a follow is decided anew when other changes keep coming first."""


@dataclass(frozen=True, slots=True)
class KeyChoice:
    """The key a caller chose: a vault, a key, maybe a version, and whether to follow."""

    vault_name: str
    key_name: str
    version: str
    follow_latest: bool
    key_subscription_id: str
    as_given: str


def choose_key(
    dns_suffix: str, *, key_uri: str, key_subscription_id: str, vault: str, key: str, version: str
) -> KeyChoice:
    """The seed's two ways to specify a key: a key URI plus the vault's subscription, or a
    vault and a key from it. A versionless key URI follows the key's newest version by
    itself; a versioned one pins it, as does a vault and key (the newest version now)."""
    if key_uri:
        if vault or key or version:
            raise invalid_field(
                "key_uri", Reason.FIELD_INVALID, "give a key URI, or a vault and a key (and version), not both"
            )
        subscription = require_uuid("key_subscription_id", key_subscription_id)
        parts = split_key_id(key_uri, dns_suffix) if len(key_uri) <= MAX_KEY_ID else None
        if parts is None:
            raise invalid_field(
                "key_uri",
                Reason.KEY_URI_MALFORMED,
                f"must be https://{{vault}}.{dns_suffix}/keys/{{key}}[/{{version}}]",
            )
        vault, key, version = parts[0], parts[1], parts[2] or ""
        as_given = key_uri
    else:
        if not vault or not key:
            raise InvalidArgument(
                Reason.ENCRYPTION_KEY_REQUIRED, "give a key URI with its vault's subscription, or a vault and a key"
            )
        subscription = ""
        as_given = key_id(vault.lower(), key, version or None, dns_suffix)
    vault, key = vault_name("vault_name", vault), key_name("key_name", key)
    version = key_version("key_version", version) if version else ""
    follow = bool(key_uri) and not version
    return KeyChoice(vault, key, version, follow, subscription, as_given)


class Encryption:
    """Identity and encryption changes of speech resources."""

    def __init__(
        self,
        resources: Resources,
        data_keys: DataKeys,
        *,
        vault: VaultGateway | None,
        identity: IdentityGateway,
        dns_suffix: str,
        random: RandomBytes = os.urandom,
    ) -> None:
        self._resources = resources
        self._store = resources.store
        self._keys = data_keys
        self._vault = vault
        self.identity = identity
        self.dns_suffix = dns_suffix
        self._random = random
        self._locks: dict[str, asyncio.Lock] = {}

    async def _writable(self, caller: VerifiedToken, resource_id: str) -> SpeechResource:
        resource = await self._resources.get_resource(parse_resource_id("name", resource_id))
        await self._resources.require_on(caller, resource, Access.WRITE)
        return resource

    async def _save(self, resource: SpeechResource, finishing: PendingStep | None = None) -> SpeechResource:
        """Store a change computed from `resource` as read; if the stored resource changed
        meanwhile, nothing is stored and the call fails with ABORTED (an undo of its remote
        steps runs where the caller has one)."""
        saved = await self._try_save(resource, finishing)
        if saved is None:
            raise errors.Aborted(
                Reason.ETAG_MISMATCH,
                "the resource changed while this change was made; read it again and retry",
                metadata={"resource_id": resource.resource_id},
            )
        return saved

    async def _try_save(self, resource: SpeechResource, finishing: PendingStep | None = None) -> SpeechResource | None:
        """Store the change if the resource is still as read; the intent it finishes goes
        in the same transaction."""
        async with self._store.unit_of_work() as uow:
            stored = await uow.update_resource(resource)
            if stored and finishing is not None and not await uow.delete_step(finishing.step_id, finishing.owner):
                # Another replica took this process for gone and is undoing the change: it
                # must not be recorded (the unit of work rolls back).
                raise errors.Aborted(
                    Reason.CHANGE_UNDONE,
                    "this change took long enough to be taken for interrupted, and was undone; retry it",
                    metadata={"resource_id": resource.resource_id},
                )
        self._keys.drop(resource)
        return replace(resource, generation=resource.generation + 1) if stored else None

    # --- intents of cross-service changes -----------------------------------------------

    @asynccontextmanager
    async def _intent(
        self, kind: StepKind, resource: SpeechResource, tenant_id: str, vault_name: str = ""
    ) -> AsyncIterator[PendingStep]:
        """Record the intent of a change before its first remote call. The change removes
        it when it records its result (`_save(..., finishing=step)`), or the undo of a
        failure removes it once it is complete; whatever is left is `resolve_pending`'s."""
        step = PendingStep(
            0, kind, resource.uid, resource.resource_id, tenant_id, not resource.identity_principal_id,
            vault_name, self._resources.clock.now(), owner=self._store.instance,
        )  # fmt: skip
        async with self._busy(resource.uid):  # one cross-service change (or resolution) per resource
            async with self._store.unit_of_work() as uow:
                step = replace(step, step_id=await uow.insert_step(step))
            yield step

    def _busy(self, uid: str) -> asyncio.Lock:
        """The lock of a resource's cross-service changes: a change holds it from its intent to
        its record, and the resolver takes it too, so it never undoes a change in flight (nor
        does a change start while an interrupted one is being undone)."""
        return self._locks.setdefault(uid, asyncio.Lock())

    async def _end(self, step: PendingStep) -> None:
        async with self._store.unit_of_work() as uow:
            await uow.delete_step(step.step_id, step.owner)

    async def resolve_pending(self, *, others: bool = True) -> int:
        """Finish or undo the cross-service changes that a crash interrupted (their intents
        are still recorded; no change in flight, of this process or of another replica that
        still runs, is touched). One whose peer cannot be reached now stays for the next pass.
        Returns how many were resolved. Each replica resolves its own steps (a change whose
        caller gave up, say); with `others` (the one holding the lease on background work),
        also those of replicas that are gone."""
        resolved = 0
        for step in await self._store.pending_steps():
            if step.owner != self._store.instance:
                if not others or await self._store.replica_alive(step.owner):
                    continue  # another replica's change: in flight, or its leader's to resolve
                # Taken over before anything is undone: should its owner still be alive after
                # all, its own record of the change now fails (CHANGE_UNDONE).
                async with self._store.unit_of_work() as uow:
                    if not await uow.claim_step(step.step_id, step.owner, self._store.instance):
                        continue
                step = replace(step, owner=self._store.instance)
            busy = self._busy(step.resource_uid)
            if busy.locked():
                continue  # this process is changing the resource now
            try:
                async with busy:
                    done = await self._resolve(step)
            except ServiceError as exc:
                log.warning(
                    "an interrupted change could not be resolved yet; trying again later",
                    extra={"resource_id": step.resource_id, "step": step.kind.value, "reason": exc.reason.value},
                )
                continue
            if done:
                await self._end(step)
                resolved += 1
        return resolved

    async def _resolve(self, step: PendingStep) -> bool:
        resource = await self._store.resource_by_uid(step.resource_uid)
        recorded = resource.identity_principal_id if resource is not None else ""
        if step.kind is StepKind.ASSIGN_IDENTITY:
            if resource is None or recorded:
                return True  # deleted since, or a later call recorded an identity
            # The directory answers with the identity it made for the resource (or makes it).
            object_id = await self.identity.create_identity(step.tenant_id, step.resource_id)
            finished = replace(resource, identity_principal_id=object_id, identity_tenant_id=step.tenant_id)
            return await self._try_save(finished) is not None
        # An interrupted enable is undone. Its grant was to the resource's identity: an
        # identity the enable made is deleted (so the grant names no one who can sign in); a
        # grant to an identity the resource had before stays, as the caller asked for it.
        if step.new_identity and not recorded:
            if resource is None and await self._store.get_resource(step.resource_id) is not None:
                # The resource is gone and another holds its name now: the identity of that
                # name is the new resource's, never to be deleted here.
                log.warning("an interrupted enable's identity is left to its resource's name", extra={
                    "resource_id": step.resource_id})  # fmt: skip
                return True
            object_id = await self.identity.create_identity(step.tenant_id, step.resource_id)
            again = await self._store.resource_by_uid(step.resource_uid)
            if again is None or again.identity_principal_id != object_id:
                await self.identity.delete_identity(step.tenant_id, object_id)
        elif not step.new_identity and step.vault_name:
            log.warning(
                "an interrupted enable may have left a grant on the resource's identity",
                extra={"resource_id": step.resource_id, "vault": step.vault_name},
            )
        return True

    # --- the managed identity ---------------------------------------------------------

    async def assign_identity(self, caller: VerifiedToken, resource_id: str) -> SpeechResource:
        resource = await self._writable(caller, resource_id)
        if resource.identity_principal_id:
            return resource
        tenant = await self.identity.tenant_of(resource.subscription_id) or resource.tenant_id
        async with self._intent(StepKind.ASSIGN_IDENTITY, resource, tenant) as step:
            try:
                object_id = await self.identity.create_identity(tenant, resource.resource_id)
                assigned = replace(resource, identity_principal_id=object_id, identity_tenant_id=tenant)
                return await self._save(assigned, finishing=step)
            except ServiceError:
                # Told it failed: not finished later. An identity the directory made anyway
                # is adopted by the next assign or enable.
                await self._end(step)
                raise

    async def remove_identity(self, caller: VerifiedToken, resource_id: str, confirmed: bool) -> SpeechResource:
        resource = await self._writable(caller, resource_id)
        if not resource.identity_principal_id:
            return resource
        if resource.key_source is KeySource.CUSTOMER and not confirmed:
            raise FailedPrecondition(
                Reason.IDENTITY_REMOVAL_UNCONFIRMED,
                "customer-managed keys are on: without the identity the key vault cannot be reached and all data of "
                "this resource becomes unreadable; confirm to go ahead, or disable customer-managed keys first",
            )
        await self.identity.delete_identity(resource.identity_tenant_id, resource.identity_principal_id)
        return await self._save(replace(resource, identity_principal_id="", identity_tenant_id=""))

    async def delete(self, caller: VerifiedToken, resource_id: str) -> None:
        """Delete the resource with its data, and its system-assigned identity with it, as
        the real platform does: the identity lives and dies with its resource. The identity
        goes first: if it cannot be deleted, the resource stays as it was; if the row then
        cannot be deleted, a retry finishes the job (an identity already gone is fine)."""
        resource = await self._writable(caller, resource_id)
        if resource.identity_principal_id:
            await self.identity.delete_identity(resource.identity_tenant_id, resource.identity_principal_id)
        await self._resources.delete(resource)
        self._keys.drop(resource)

    # --- moving --------------------------------------------------------------------------

    async def move(
        self, caller: VerifiedToken, resource_id: str, subscription_id: str, resource_group: str
    ) -> SpeechResource:
        """Move to another resource group or subscription. The data stays readable (it is
        bound to the resource's immutable uid); a move to another tenant deletes the managed
        identity in the old one, so customer-managed keys stop until they are set again."""
        operator = OPERATOR_ROLE in caller.roles
        resource = await self._resources.get_resource(parse_resource_id("name", resource_id))
        if not operator:
            await self._resources.require_on(caller, resource, Access.WRITE)
        subscription_id = require_uuid("target_subscription_id", subscription_id)
        resource_group = validation.resource_group("target_resource_group", resource_group)
        target_id = make_resource_id(subscription_id, resource_group, resource.account_name)
        if target_id.lower() == resource.resource_id.lower():
            raise FailedPrecondition(Reason.MOVE_TO_SAME_PLACE, "the resource is already there")
        target_tenant = await self.identity.tenant_of(subscription_id)
        if target_tenant is None:
            raise errors.subscription_not_found(subscription_id)
        if target_tenant != resource.tenant_id and not operator:
            raise PermissionDenied(
                Reason.OPERATOR_REQUIRED,
                "moving a resource to a subscription of another tenant is done by the platform operator "
                "(or by transferring the whole subscription)",
            )
        if not operator:
            await self._resources.require(
                caller, f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}", Access.WRITE
            )
        if await self._store.get_resource(target_id) is not None:
            raise AlreadyExists(Reason.SPEECH_RESOURCE_EXISTS, f"speech resource {target_id} exists already")
        if target_tenant != resource.tenant_id and resource.identity_principal_id:
            # Managed identities do not cross tenants: the old one goes. The resource keeps
            # naming it, so that a read says why the customer key no longer works.
            await self.identity.delete_identity(resource.identity_tenant_id, resource.identity_principal_id)
        moved = replace(
            resource, resource_id=target_id, subscription_id=subscription_id, resource_group=resource_group,
            tenant_id=target_tenant,
        )  # fmt: skip
        return await self._save(moved)

    # --- customer-managed keys --------------------------------------------------------

    async def set_customer_managed(
        self, caller: VerifiedToken, resource_id: str, choice: KeyChoice, *, skip_grant: bool
    ) -> SpeechResource:
        """Check everything, then rewrap the data key in one transaction. Any failure undoes
        what this call did (a new identity, a grant) and leaves the resource as it was."""
        if self._vault is None:
            raise FailedPrecondition(Reason.KEYVAULT_NOT_CONFIGURED, "this speech service has no key vault configured")
        resource = await self._writable(caller, resource_id)
        check_eligibility(resource, await self._store.get_approval(resource.subscription_id))
        tenant = await self.identity.tenant_of(resource.subscription_id)
        vault = await self._vault.get_vault(caller.raw, choice.vault_name)
        if choice.key_subscription_id and vault.subscription_id != choice.key_subscription_id:
            raise invalid_field(
                "key_subscription_id",
                Reason.FIELD_INVALID,
                f"vault {vault.name} is not in subscription {choice.key_subscription_id}",
            )
        if vault.tenant_id != tenant:
            raise FailedPrecondition(
                Reason.VAULT_OTHER_TENANT,
                f"the key vault {vault.name} is in another tenant than the resource; they must share a tenant",
                metadata={"vault_tenant_id": vault.tenant_id},
            )
        if vault.location != resource.location:
            raise FailedPrecondition(
                Reason.VAULT_OTHER_REGION,
                f"the key vault is in {vault.location}, the resource in {resource.location}; they must share a region",
            )
        if not (vault.soft_delete and vault.purge_protection):
            raise FailedPrecondition(
                Reason.VAULT_NOT_RECOVERABLE,
                f"the key vault {vault.name} needs soft-delete and purge protection on; without them a deleted key "
                "would make the data unrecoverable",
            )
        created_identity = ""
        granted = False
        before: frozenset[str] | None = None
        working = resource
        async with self._intent(StepKind.ENABLE_CMK, resource, tenant, vault.name) as step:
            try:
                if not working.identity_principal_id:
                    created_identity = await self.identity.create_identity(tenant, resource.resource_id)
                    working = replace(working, identity_principal_id=created_identity, identity_tenant_id=tenant)
                object_id = working.identity_principal_id
                if not skip_grant:
                    try:
                        before = await self._vault.grant(caller.raw, vault.name, tenant, object_id)
                    except PermissionDenied as exc:
                        raise PermissionDenied(
                            Reason.GRANT_REFUSED,
                            f"you may not change the access policies of vault {vault.name}, so its key cannot be "
                            "granted to the resource's identity; ask for Owner on the vault, or have an Owner grant "
                            "get/wrapKey/unwrapKey yourself and use --no-grant",
                            metadata={"vault": vault.name, "cause": exc.reason.value},
                        ) from None
                    granted = True
                token = await self.identity.identity_token(tenant, object_id)
                key = await self._vault.get_key(token, choice.as_given)
                if key.size != 2048 or not key.enabled or not {"wrapKey", "unwrapKey"} <= key.operations:
                    raise FailedPrecondition(
                        Reason.KEY_NOT_SUPPORTED,
                        "the key must be an enabled RSA 2048 key that allows wrapKey and unwrapKey",
                        metadata={"key_id": key.key_id, "size": str(key.size), "enabled": str(key.enabled).lower()},
                    )
                probe = self._random(32)
                key_id, wrapped_probe = await self._vault.wrap(token, key.key_id, probe)
                if await self._vault.unwrap(token, key_id, wrapped_probe) != probe:
                    raise FailedPrecondition(Reason.KEY_NOT_SUPPORTED, "the key did not give back what it wrapped")
                data_key = await self._keys.data_key(resource)
                key_id, wrapped = await self._vault.wrap(token, key.key_id, data_key.key)
                updated = replace(
                    working, key_source=KeySource.CUSTOMER, wrapping_key=key_id, wrapped_data_key=wrapped,
                    key_uri=choice.as_given, follow_latest=choice.follow_latest,
                )  # fmt: skip
                return await self._save(updated, finishing=step)
            except ServiceError:
                undone = True
                if granted:
                    undone &= await self._best_effort(
                        self._vault.restore(caller.raw, vault.name, tenant, working.identity_principal_id, before)
                    )
                if created_identity:
                    undone &= await self._best_effort(self.identity.delete_identity(tenant, created_identity))
                elif step.new_identity:
                    undone = False  # the directory may have made it without answering: the resolver finds out
                if undone:
                    await self._end(step)
                raise

    @staticmethod
    async def _best_effort(undo: Awaitable[None]) -> bool:
        """Run one undo step; False if it failed (the original failure is what the caller
        needs to see, and the intent stays for `resolve_pending`)."""
        try:
            await undo
        except ServiceError:
            return False
        return True

    async def rewrap_to_latest(self, resource: SpeechResource) -> SpeechResource | None:
        """For a resource that follows its key's newest version: rewrap if a newer one exists.

        The rewrap is stored only if the resource is still as read; if another change came
        first (customer-managed keys disabled, another key set), the resource is read again
        and the decision taken anew, so an acknowledged change is never undone."""
        for _ in range(FOLLOW_ATTEMPTS):
            if self._vault is None or resource.key_source is not KeySource.CUSTOMER or not resource.follow_latest:
                return None
            token = await self.identity.identity_token(resource.identity_tenant_id, resource.identity_principal_id)
            latest = await self._vault.get_key(token, resource.key_uri)
            if latest.key_id == resource.wrapping_key:
                return None
            data_key = await self._keys.data_key(resource)
            key_id, wrapped = await self._vault.wrap(token, latest.key_id, data_key.key)
            saved = await self._try_save(replace(resource, wrapping_key=key_id, wrapped_data_key=wrapped))
            if saved is not None:
                return saved
            current = await self._store.get_resource(resource.resource_id)
            if current is None or current.uid != resource.uid:
                return None
            resource = current
        log.warning(
            "gave up following a key rotation after concurrent changes", extra={"resource_id": resource.resource_id}
        )
        return None

    async def set_microsoft_managed(self, caller: VerifiedToken, resource_id: str) -> SpeechResource:
        """Back to the Microsoft-managed key: the data key is unwrapped with the customer key
        (so that key must still be usable) and wrapped with the master key ring."""
        resource = await self._writable(caller, resource_id)
        if resource.key_source is KeySource.MICROSOFT:
            return resource
        data_key = await self._keys.data_key(resource)
        version, wrapped = self._resources.ring.wrap(data_key, resource.uid, self._random)
        updated = replace(
            resource, key_source=KeySource.MICROSOFT, wrapping_key=version, wrapped_data_key=wrapped,
            key_uri="", follow_latest=False,
        )  # fmt: skip
        return await self._save(updated)
