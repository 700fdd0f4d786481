"""Speech's managed-identity token refused by the vault as expired though speech's cache held
it as fresh (the services' clocks apart: a development clock moved for one service, a skew):
speech drops it and unwraps once more with a new one, and if the vault refuses that too, the
caller learns the dependency failed (DEPENDENCY_UNAVAILABLE), never UNAUTHENTICATED as if its
own credentials were at fault. The identity gateway is speech's real one, wrapped so that it
first hands out a token that has expired (a cache on another clock would): the only stand-in."""

from __future__ import annotations

import pytest

from cmk_trio.rpckit.errors import Unavailable
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.speech.customer_keys import IdentityGateway, unwrap_as_identity


class StaleFirst(IdentityGateway):
    """Speech's identity gateway, but the first token (or every one, `always`) is `stale`."""

    def __init__(self, real: IdentityGateway, stale: str, *, always: bool = False) -> None:
        self.real, self.stale, self.always, self.handed, self.forgotten = real, stale, always, 0, 0

    async def identity_token(self, tenant_id: str, object_id: str) -> str:
        self.handed += 1
        if self.always or self.handed == 1:
            return self.stale
        return await self.real.identity_token(tenant_id, object_id)

    async def create_identity(self, tenant_id: str, resource_id: str) -> str:
        return await self.real.create_identity(tenant_id, resource_id)

    async def delete_identity(self, tenant_id: str, object_id: str) -> None:
        await self.real.delete_identity(tenant_id, object_id)

    async def tenant_of(self, subscription_id: str) -> str | None:
        return await self.real.tenant_of(subscription_id)

    def forget_token(self, object_id: str | None = None) -> None:
        self.forgotten += 1
        self.real.forget_token(object_id)


@pytest.fixture
async def expired(world, clock):
    """The CMK resource as stored, and a token of its identity that has since expired."""
    await world.set_encryption(key_uri=world.key.key_id, key_subscription_id=world.subscription_id)
    stored = await world.server.resources.store.get_resource(world.resource.name)
    gateway = world.server.identity_gateway
    token = await gateway.identity_token(stored.identity_tenant_id, stored.identity_principal_id)
    clock.advance(24 * 3600)  # far past its lifetime, on every service's clock
    return stored, token


async def test_an_expired_token_is_renewed_and_the_unwrap_asked_again(world, expired):
    stored, token = expired
    identity = StaleFirst(world.server.identity_gateway, token)
    plain = await unwrap_as_identity(stored, world.server.data_keys._vault, identity)
    assert len(plain) == 32 and (identity.handed, identity.forgotten) == (2, 1)


async def test_a_vault_that_refuses_the_new_token_too_is_a_dependency_failure(world, expired):
    stored, token = expired
    identity = StaleFirst(world.server.identity_gateway, token, always=True)
    with pytest.raises(Unavailable) as refused:
        await unwrap_as_identity(stored, world.server.data_keys._vault, identity)
    assert refused.value.reason is Reason.DEPENDENCY_UNAVAILABLE and "clocks" in refused.value.message
    assert identity.handed == 2
