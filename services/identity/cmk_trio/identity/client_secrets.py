"""Client secrets: made (shown once, stored as a slow hash), listed and deleted."""

from __future__ import annotations

from datetime import timedelta

from cmk_trio.identity import errors
from cmk_trio.identity.crypto import new_client_secret
from cmk_trio.identity.directory_base import DEFAULT_SECRET_DAYS, MAX_SECRET_DAYS, DirectoryBase
from cmk_trio.identity.model import (
    ClientSecret,
    NewSecret,
    Principal,
    PrincipalKind,
)
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.validation import display_name, int_range


class ClientSecrets(DirectoryBase):
    """Client secrets: made (shown once, stored as a slow hash), listed and deleted."""

    # --- client secrets ---------------------------------------------------------------

    async def _new_secret(self, principal: Principal, label: str, days: int) -> NewSecret:
        value = new_client_secret(self._random)
        salt = self._random(16)
        # scrypt takes tens of milliseconds and releases the GIL: keep it off the event loop.
        digest = await self.checks.hash(value, salt)
        now = self.clock.now()
        record = ClientSecret(
            secret_id=self._new_id(),
            object_id=principal.object_id,
            display_name=label,
            create_time=now,
            expire_time=now + timedelta(days=days),
            hash=digest,
        )
        return NewSecret(record, value, principal.client_id)

    async def _secret_holder(self, actor: Principal, tenant_id: str, object_id: str, action: str) -> Principal:
        self._require_same_tenant(actor, tenant_id)  # first: another tenant's principals are not there
        principal = await self._principal(tenant_id, object_id)
        if actor.object_id != object_id:
            self._require_admin(actor, tenant_id, action)
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
        secret = await self._new_secret(principal, label, days)
        async with self.store.unit_of_work() as uow:
            await uow.insert_secret(secret.secret)
        return secret

    async def list_client_secrets(
        self, actor: Principal, tenant_id: str, object_id: str, *, after: str | None, limit: int
    ) -> list[ClientSecret]:
        await self._secret_holder(actor, tenant_id, object_id, "list client secrets")
        return await self.store.secrets_of(object_id, after=after, limit=limit)

    async def delete_client_secret(self, actor: Principal, tenant_id: str, object_id: str, secret_id: str) -> None:
        await self._secret_holder(actor, tenant_id, object_id, "delete client secrets")
        async with self.store.unit_of_work() as uow:
            deleted = await uow.delete_secret(object_id, secret_id)
        self.memo.forget(secret_id)
        if not deleted:
            raise errors.not_found(
                Reason.CLIENT_SECRET_NOT_FOUND,
                "client secret",
                f"tenants/{tenant_id}/principals/{object_id}/secrets/{secret_id}",
            )
