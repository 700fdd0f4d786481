"""Client secrets: made (shown once, stored as a slow hash), listed and deleted."""

from __future__ import annotations

import os
from datetime import timedelta

from cmk_trio.identity import errors
from cmk_trio.identity.crypto import RandomBytes, VerifiedSecretMemo, new_client_secret
from cmk_trio.identity.directory_rules import Lookups, new_id, require_admin, require_same_tenant
from cmk_trio.identity.model import (
    ClientSecret,
    NewSecret,
    Principal,
    PrincipalKind,
)
from cmk_trio.identity.sign_ins import SecretChecks
from cmk_trio.identity.storage import IdentityStore
from cmk_trio.rpckit.clock import Clock
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.validation import display_name, int_range

DEFAULT_SECRET_DAYS = 365
MAX_SECRET_DAYS = 730

MAX_CLIENT_SECRETS = 1000
"""Client secrets one principal may hold. Entra sets no limit of its own on an organisational
application's passwordCredentials, only "a global limit of about 1000 items across all the
collection properties on the app object" (Validation differences by supported account types,
learn.microsoft.com); a principal's only such collection here is its secrets, so they get
the whole of it. (Apps for personal Microsoft accounts are held to two.) Nothing else
depends on the figure: a sign-in checks one hash however many a principal holds."""


class ClientSecrets:
    """Client secrets: made (shown once, stored as a slow hash), listed and deleted."""

    def __init__(
        self,
        store: IdentityStore,
        clock: Clock,
        checks: SecretChecks,
        memo: VerifiedSecretMemo,
        lookups: Lookups,
        *,
        random: RandomBytes = os.urandom,
    ) -> None:
        self._store = store
        self._clock = clock
        self._checks = checks
        self._memo = memo
        self._lookups = lookups
        self._random = random

    async def new_secret(self, principal: Principal, label: str, days: int) -> NewSecret:
        """A new secret of `principal`, hashed but not stored yet (bootstrap stores the
        operator's with it); its value is in the answer, and nowhere else."""
        secret_id = new_id(self._random)
        value = new_client_secret(secret_id, self._random)
        salt = self._random(16)
        # scrypt takes tens of milliseconds and releases the GIL: keep it off the event loop.
        digest = await self._checks.hash(value, salt, owner=(principal.tenant_id, principal.object_id))
        now = self._clock.now()
        record = ClientSecret(
            secret_id=secret_id,
            object_id=principal.object_id,
            display_name=label,
            create_time=now,
            expire_time=now + timedelta(days=days),
            hash=digest,
        )
        return NewSecret(record, value, principal.client_id)

    async def _secret_holder(self, actor: Principal, tenant_id: str, object_id: str, action: str) -> Principal:
        require_same_tenant(actor, tenant_id)  # first: another tenant's principals are not there
        principal = await self._lookups.principal(tenant_id, object_id)
        if actor.object_id != object_id:
            require_admin(actor, tenant_id, action)
        if principal.kind is PrincipalKind.MANAGED_IDENTITY:
            raise errors.FailedPrecondition(
                Reason.PRINCIPAL_KIND_NOT_ALLOWED,
                "managed identities have no client secrets; the platform obtains their tokens",
            )
        return principal

    async def add_client_secret(
        self, actor: Principal, tenant_id: str, object_id: str, label: str, days: int
    ) -> NewSecret:
        label = display_name("display_name", label, required=False)
        days = int_range("lifetime_days", days, 1, MAX_SECRET_DAYS, DEFAULT_SECRET_DAYS)
        principal = await self._secret_holder(actor, tenant_id, object_id, "add client secrets")
        async with self._store.unit_of_work() as uow:  # (refused before the slow hash, when it can be)
            self._require_room(await uow.count_secrets(object_id))
        secret = await self.new_secret(principal, label, days)
        async with self._store.unit_of_work() as uow:  # (and counted again where it is added: writes run one at a time)
            self._require_room(await uow.count_secrets(object_id))
            await uow.insert_secret(secret.secret)
        return secret

    @staticmethod
    def _require_room(held: int) -> None:
        if held >= MAX_CLIENT_SECRETS:
            raise errors.FailedPrecondition(
                Reason.CLIENT_SECRET_LIMIT,
                f"a principal holds at most {MAX_CLIENT_SECRETS} client secrets (expired ones count); "
                "delete one it no longer needs, then add the new one",
                metadata={"limit": str(MAX_CLIENT_SECRETS)},
            )

    async def list_client_secrets(
        self, actor: Principal, tenant_id: str, object_id: str, *, after: str | None, limit: int
    ) -> list[ClientSecret]:
        await self._secret_holder(actor, tenant_id, object_id, "list client secrets")
        return await self._store.secrets_of(object_id, after=after, limit=limit)

    async def delete_client_secret(self, actor: Principal, tenant_id: str, object_id: str, secret_id: str) -> None:
        await self._secret_holder(actor, tenant_id, object_id, "delete client secrets")
        async with self._store.unit_of_work() as uow:
            deleted = await uow.delete_secret(object_id, secret_id)
        self._memo.forget(secret_id)
        if not deleted:
            raise errors.not_found(
                Reason.CLIENT_SECRET_NOT_FOUND,
                "client secret",
                f"tenants/{tenant_id}/principals/{object_id}/secrets/{secret_id}",
            )
