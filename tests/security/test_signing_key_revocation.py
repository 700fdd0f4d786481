"""The operator withdraws a signing key at once, for a suspected leak (issue 12, finding 3):
every token it signed is refused by all three services, through the directory's
SIGNING_KEY_REVOKED event (identity's own validator directly), and new tokens are signed
by a new key. The waiting is for the event, not for a clock: see tests/waiting.py."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import jwt
import pytest

from cmk_trio.client.calls import TokenSource
from cmk_trio.client.channel import open_channel
from cmk_trio.client.identity import IdentityClient
from cmk_trio.client.keyvault import KeyVaultClient
from cmk_trio.client.speech import SpeechClient
from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.errors import NotFound, PermissionDenied, ServiceError
from cmk_trio.rpckit.reasons import Reason
from tests.conftest import operator_credentials
from tests.speech.cmk_world import World
from tests.waiting import eventually


def refusal_of(call: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[Reason | None]]:
    async def refused() -> Reason | None:
        try:
            await call()
        except ServiceError as exc:
            return exc.reason
        return None

    return refused


async def test_a_revoked_signing_key_is_refused_everywhere_and_a_new_one_signs(world: World, identity, keyvault, clock):
    old = {a: await world.speech._tokens(a) for a in (audiences.DIRECTORY, audiences.MANAGEMENT, audiences.SPEECH)}
    kid = jwt.get_unverified_header(old[audiences.SPEECH])["kid"]

    async def fixed(audience: str) -> str:
        return old[audience]

    channels = [open_channel(identity.endpoint), open_channel(keyvault.endpoint)]
    try:
        as_admin = IdentityClient(channels[0], token_source=fixed, clock=clock)  # the admin's token from before
        stale = {
            "identity": lambda: as_admin.get_tenant(world.tenant_id),
            "keyvault": lambda: KeyVaultClient(channels[1], fixed).get_vault("contoso-cmk"),
            "speech": lambda: SpeechClient(world.speech.channel, fixed).get_resource(world.resource.name),
        }
        for call in stale.values():
            await call()  # accepted before

        operator = IdentityClient(channels[0], operator_credentials(identity), clock=clock)
        new_active = await operator.revoke_signing_key(kid)
        assert new_active.kid != kid

        for service, call in stale.items():
            reason = await eventually(refusal_of(call), f"{service} refusing the revoked key's token")
            assert reason is Reason.TOKEN_KEY_UNKNOWN, service
        assert kid not in {k.kid for k in await operator.list_signing_keys()}
        # Fresh tokens (the new key) work everywhere; a second revoke of the same key is NotFound.
        fresh = IdentityClient(channels[0], operator_credentials(identity), clock=clock)
        assert jwt.get_unverified_header(await fresh.token_for(audiences.DIRECTORY))["kid"] == new_active.kid
        with pytest.raises(NotFound) as again:
            await fresh.revoke_signing_key(kid)
        assert again.value.reason is Reason.SIGNING_KEY_NOT_FOUND
    finally:
        for channel in channels:
            await channel.close()


async def test_only_the_operator_revokes_signing_keys(world: World, identity, operator, channel, clock):
    kid = (await operator.list_signing_keys())[0].kid
    admin = IdentityClient(channel, token_source=world.speech._tokens, clock=clock)  # a tenant administrator
    with pytest.raises(PermissionDenied) as caught:
        await admin.revoke_signing_key(kid)
    assert caught.value.reason is Reason.OPERATOR_REQUIRED
    assert kid in {k.kid for k in await operator.list_signing_keys()}


async def test_identity_accepts_its_new_keys_tokens_at_once_after_a_rotation(identity, operator, clock):
    """Found by the JWT attack suite: identity's own validator was not told of its own
    rotations, so for up to its refetch interval it refused the new key's genuine tokens
    (and a stream of unknown-kid tokens kept that window open)."""
    await operator.list_tenants()  # identity's validator has just fetched the keys
    rotated = await operator.rotate_signing_key()
    fresh = IdentityClient(open_channel(identity.endpoint), operator_credentials(identity), clock=clock)
    try:
        assert jwt.get_unverified_header(await fresh.token_for(audiences.DIRECTORY))["kid"] == rotated.kid
        await fresh.list_tenants()  # no clock moved: accepted at once
    finally:
        await fresh.channel.close()


async def test_the_services_keep_working_after_the_key_that_signed_their_own_tokens_is_revoked(
    world: World, identity, operator, clock
):
    """The key vault and speech hold tokens of their own (their platform principals' for the
    directory, speech's managed identities' for the vault), signed by the key being revoked:
    they drop them on the directory's SIGNING_KEY_REVOKED and fetch new ones, instead of
    being refused until those tokens expire."""
    await world.set_encryption(key_uri=world.key.key_id, key_subscription_id=world.subscription_id)
    before = await world.read_all()
    kid = (await operator.list_signing_keys())[0].kid
    operator.token_cache.invalidate()  # (the test's own clients take new tokens by hand)
    await operator.revoke_signing_key(kid)
    admin = world.speech._tokens  # the tenant administrator's (an IdentityClient's token_for)
    assert isinstance(admin, TokenSource)
    for audience in (audiences.DIRECTORY, audiences.MANAGEMENT, audiences.SPEECH):
        admin.invalidate(audience)
    reader = SpeechClient(world.speech.channel, admin)
    world.server.data_keys.drop_all()  # the next read needs the vault, with the managed identity's token
    await world.server.directory.roles.forget_all()  # and the directory, with speech's own token

    async def reads() -> bool | None:
        try:
            apps = await reader.list_applications(world.resource.name)
        except ServiceError:
            return None
        return [a.configuration_json for a in apps.applications] == before[0] or None

    assert await eventually(reads, "speech reading with new tokens after the revocation")


async def test_clients_renew_a_token_whose_key_was_revoked_and_call_again(world: World, operator, keyvault):
    """A client holding a token of the revoked key is refused once with TOKEN_KEY_UNKNOWN,
    forgets that token and calls again with a new one (the refused call changed nothing),
    instead of being refused until its token expires."""
    await world.speech.get_resource(world.resource.name)  # tokens of the current key are held now
    await world.vaults.get_vault("contoso-cmk")
    await operator.revoke_signing_key((await operator.list_signing_keys())[0].kid)

    async def works() -> bool | None:  # once the services have heard of the revocation
        try:
            await world.speech.get_resource(world.resource.name)
            await world.vaults.get_vault("contoso-cmk")
            await operator.list_tenants()
        except ServiceError:
            return None
        return True

    assert await eventually(works, "the clients calling again with new tokens")
