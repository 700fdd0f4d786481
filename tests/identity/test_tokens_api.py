"""Tokens over the wire: issuance, every kind of bad token refused by the identity service
with its own reason, disabled principals, signing key rotation, managed identities."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import timedelta
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from cmk_trio.client.identity import ClientCredentials, IdentityClient
from cmk_trio.platform.directory_feeds import GrpcSigningKeySource, RevocationFeed
from cmk_trio.proto.identity.v1 import identity_service_pb2 as pb
from cmk_trio.proto.identity.v1 import identity_service_pb2_grpc as pb_grpc
from cmk_trio.proto.identity.v1 import resources_pb2 as res
from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.clock import to_epoch
from cmk_trio.rpckit.errors import FailedPrecondition, PermissionDenied, Unauthenticated
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.testing import expect_rpc_error
from cmk_trio.rpckit.tokens import TokenValidator, issuer_for
from tests.identity.helpers import make_principal, make_tenant, resource_id

UNAUTH = grpc.StatusCode.UNAUTHENTICATED


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


async def get_tenant(channel: grpc.aio.Channel, tenant_id: str, token: str) -> Any:
    stub = pb_grpc.IdentityServiceStub(channel)
    return stub.GetTenant(
        pb.GetTenantRequest(name=f"tenants/{tenant_id}"), metadata=(("authorization", f"Bearer {token}"),)
    )


async def test_a_token_carries_entra_claims_and_verifies(identity, operator, channel, clock):
    t = await make_tenant(operator, channel, clock, "Contoso")
    issued = await operator.issue_token(t.admin_credentials, audiences.VAULT)
    claims = jwt.decode(issued.access_token, options={"verify_signature": False})
    assert claims["tid"] == t.tenant_id
    assert claims["oid"] == claims["sub"] == t.admin.object_id
    assert claims["aud"] == audiences.VAULT
    assert claims["iss"] == issuer_for(identity.config.issuer_base, t.tenant_id)
    assert claims["exp"] - claims["iat"] == 900
    assert (issued.expires_in, issued.token_type) == (900, "Bearer")
    assert issued.expire_time.seconds == claims["exp"]
    assert jwt.get_unverified_header(issued.access_token)["alg"] == "RS256"
    assert "roles" not in claims
    operator_claims = jwt.decode(await operator.token_for(audiences.VAULT), options={"verify_signature": False})
    assert operator_claims["roles"] == ["Platform.Operator"]


async def test_a_token_of_tenant_a_is_refused_on_tenant_b(operator, channel, clock):
    a = await make_tenant(operator, channel, clock, "A")
    b = await make_tenant(operator, channel, clock, "B")
    token = await a.admin_client.token_for(audiences.DIRECTORY)
    # Another tenant is, to this token, no tenant at all (issue 12, finding 7).
    await expect_rpc_error(
        await get_tenant(channel, b.tenant_id, token), grpc.StatusCode.NOT_FOUND, Reason.TENANT_NOT_FOUND
    )
    assert (await a.admin_client.get_tenant(a.tenant_id)).tenant_id == a.tenant_id


async def test_a_vault_token_is_refused_by_the_directory(operator, channel, clock):
    t = await make_tenant(operator, channel, clock, "C")
    issued = await operator.issue_token(t.admin_credentials, audiences.VAULT)
    await expect_rpc_error(
        await get_tenant(channel, t.tenant_id, issued.access_token), UNAUTH, Reason.TOKEN_AUDIENCE_INVALID
    )


def _forge(good: str, identity: Any, mutation: str) -> str:
    head, body, sig = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    header = json.loads(base64.urlsafe_b64decode(head + "=="))
    if mutation == "tampered signature":
        raw = bytearray(base64.urlsafe_b64decode(sig + "=="))
        raw[-1] ^= 1
        return f"{head}.{body}.{b64(bytes(raw))}"
    if mutation == "empty signature":
        return f"{head}.{body}."
    if mutation == "alg none":
        return f"{b64(json.dumps({'alg': 'none', 'kid': header['kid']}).encode())}.{body}."
    if mutation == "unknown kid":
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return jwt.encode(claims, other, algorithm="RS256", headers={"kid": "no-such-key"})
    if mutation == "kid injection":
        injected = b64(json.dumps({"alg": "RS256", "kid": "x' OR 1=1 --"}).encode())
        return f"{injected}.{body}.{sig}"
    if mutation == "jku header":
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return jwt.encode(
            claims, other, algorithm="RS256", headers={"kid": header["kid"], "jku": "http://127.0.0.1:1/k"}
        )
    raise AssertionError(mutation)


@pytest.mark.parametrize(
    ("mutation", "reason"),
    [
        ("tampered signature", Reason.TOKEN_SIGNATURE_INVALID),
        ("empty signature", Reason.TOKEN_SIGNATURE_MISSING),
        ("alg none", Reason.TOKEN_UNSIGNED),
        ("unknown kid", Reason.TOKEN_KEY_UNKNOWN),
        ("kid injection", Reason.TOKEN_KID_INVALID),
        ("jku header", Reason.TOKEN_HEADER_KEY_REFERENCE),
    ],
)
async def test_forged_tokens_are_refused_on_the_wire(identity, operator, channel, clock, mutation, reason):
    t = await make_tenant(operator, channel, clock, "D")
    good = await t.admin_client.token_for(audiences.DIRECTORY)
    await expect_rpc_error(await get_tenant(channel, t.tenant_id, _forge(good, identity, mutation)), UNAUTH, reason)


async def _signed(identity: Any, **claims: Any) -> str:
    signer = await identity.keys.signer()
    token: str = signer.sign(claims)
    return token


async def test_time_and_audience_claims_are_checked_on_the_wire(identity, operator, channel, clock):
    t = await make_tenant(operator, channel, clock, "E")
    now = to_epoch(clock.now())
    base: dict[str, object] = {
        "iss": issuer_for(identity.config.issuer_base, t.tenant_id),
        "aud": audiences.DIRECTORY,
        "sub": t.admin.object_id,
        "oid": t.admin.object_id,
        "tid": t.tenant_id,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
    }
    cases: list[tuple[dict[str, object], Reason]] = [
        ({"nbf": now + 600, "iat": now + 600}, Reason.TOKEN_NOT_YET_VALID),
        ({"exp": now - 600, "iat": now - 900, "nbf": now - 900}, Reason.TOKEN_EXPIRED),
        ({"aud": [audiences.DIRECTORY, audiences.VAULT]}, Reason.TOKEN_AUDIENCE_AMBIGUOUS),
        ({"iss": issuer_for(identity.config.issuer_base, str(uuid.uuid4()))}, Reason.TOKEN_ISSUER_INVALID),
    ]
    for change, reason in cases:
        token = await _signed(identity, **{**base, **change})
        await expect_rpc_error(await get_tenant(channel, t.tenant_id, token), UNAUTH, reason)
    await get_tenant(channel, t.tenant_id, await _signed(identity, **base))


async def test_a_missing_token_is_refused(channel, identity):
    stub = pb_grpc.IdentityServiceStub(channel)
    await expect_rpc_error(stub.ListTenants(pb.ListTenantsRequest()), UNAUTH, Reason.TOKEN_MISSING)


async def test_a_wrong_secret_and_an_unknown_client_look_the_same(operator, channel, clock):
    t = await make_tenant(operator, channel, clock, "F")
    stub = pb_grpc.TokenServiceStub(channel)
    wrong = pb.IssueTokenRequest(
        tenant_id=t.tenant_id,
        client_id=t.admin_credentials.client_id,
        client_secret="cmk~" + "x" * 40,
        audience=audiences.DIRECTORY,
    )
    unknown = pb.IssueTokenRequest(
        tenant_id=t.tenant_id,
        client_id=str(uuid.uuid4()),
        client_secret="cmk~" + "x" * 40,
        audience=audiences.DIRECTORY,
    )
    e1 = await expect_rpc_error(stub.IssueToken(wrong), UNAUTH, Reason.INVALID_CLIENT_CREDENTIALS)
    e2 = await expect_rpc_error(stub.IssueToken(unknown), UNAUTH, Reason.INVALID_CLIENT_CREDENTIALS)
    assert e1.details() == e2.details()


async def test_an_unknown_audience_is_refused(operator, channel, clock):
    t = await make_tenant(operator, channel, clock, "G")
    stub = pb_grpc.TokenServiceStub(channel)
    request = pb.IssueTokenRequest(
        tenant_id=t.tenant_id,
        client_id=t.admin_credentials.client_id,
        client_secret=t.admin_credentials.client_secret,
        audience="https://evil.example",
    )
    await expect_rpc_error(stub.IssueToken(request), grpc.StatusCode.INVALID_ARGUMENT, Reason.AUDIENCE_UNKNOWN)


async def test_a_disabled_principal_gets_no_token_and_its_event_is_streamed(operator, channel, clock):
    t = await make_tenant(operator, channel, clock, "H")
    app, creds, app_client = await make_principal(operator, channel, clock, t.tenant_id, "app")
    token = await app_client.token_for(audiences.DIRECTORY)
    await t.admin_client.disable_principal(t.tenant_id, app.object_id)
    with pytest.raises(PermissionDenied) as caught:
        await operator.issue_token(creds, audiences.DIRECTORY)
    assert caught.value.reason is Reason.PRINCIPAL_DISABLED
    # Its live token is refused by the directory at once.
    await expect_rpc_error(await get_tenant(channel, t.tenant_id, token), UNAUTH, Reason.TOKEN_REVOKED)
    events = [e async for e in _take(operator, 0, until=lambda e: e.type == res.PRINCIPAL_DISABLED)]
    assert events[-1].principal_id == app.object_id
    await t.admin_client.enable_principal(t.tenant_id, app.object_id)
    assert (await operator.issue_token(creds, audiences.DIRECTORY)).access_token


async def _take(client: IdentityClient, after: int, *, until: Any = None, count: int | None = None) -> Any:
    seen = 0
    async for event in client.watch_events(after):
        yield event
        seen += 1
        if (until is not None and until(event)) or (count is not None and seen >= count):
            return


async def test_a_consumer_that_reconnects_with_its_cursor_misses_nothing(operator, channel, clock):
    t = await make_tenant(operator, channel, clock, "I")
    first = [e async for e in _take(operator, 0, count=1)]
    cursor = first[-1].sequence
    # While the consumer is away, things happen.
    a, _, _ = await make_principal(operator, channel, clock, t.tenant_id, "a")
    await operator.disable_principal(t.tenant_id, a.object_id)
    await operator.delete_principal(t.tenant_id, a.object_id)
    resumed = [e async for e in _take(operator, cursor, until=lambda e: e.type == res.PRINCIPAL_DELETED)]
    sequences = [e.sequence for e in resumed]
    assert sequences == list(range(cursor + 1, cursor + 1 + len(sequences)))
    assert [e.type for e in resumed][-3:] == [res.PRINCIPAL_CREATED, res.PRINCIPAL_DISABLED, res.PRINCIPAL_DELETED]


async def test_a_cursor_beyond_the_stream_is_refused(operator):
    stub = pb_grpc.IdentityServiceStub(operator.channel)
    token = await operator.token_for(audiences.DIRECTORY)
    stream = stub.WatchEvents(
        pb.WatchEventsRequest(after_sequence=10_000), metadata=(("authorization", f"Bearer {token}"),)
    )
    await expect_rpc_error(stream.read(), grpc.StatusCode.FAILED_PRECONDITION, Reason.EVENT_CURSOR_AHEAD)


async def test_only_platform_principals_and_the_operator_read_events(operator, channel, clock):
    t = await make_tenant(operator, channel, clock, "J")
    with pytest.raises(PermissionDenied) as caught:
        async for _ in t.admin_client.watch_events(0):
            pass
    assert caught.value.reason is Reason.PLATFORM_PRINCIPAL_REQUIRED


async def test_signing_key_rotation_keeps_old_tokens_and_validators_follow(identity, operator, channel, clock):
    t = await make_tenant(operator, channel, clock, "K")
    platform_tenant = (await operator.list_tenants()).tenants
    _, _, platform = await make_principal(
        operator,
        channel,
        clock,
        next(x.tenant_id for x in platform_tenant if x.platform),
        "keyvault",
        platform_service="keyvault",
    )
    validator = TokenValidator(
        key_source=GrpcSigningKeySource(IdentityClient(channel)),
        clock=clock,
        issuer_base=identity.config.issuer_base,
        min_refresh_interval=timedelta(hours=1),
    )
    feed = RevocationFeed(platform, validator)
    feed.start()
    try:
        old = (await operator.issue_token(t.admin_credentials, audiences.VAULT)).access_token
        await validator.validate(old, audience=audiences.VAULT)
        fetches = validator.key_fetches
        rotated = await operator.rotate_signing_key()
        await feed.follower.wait_for(await identity.store.last_sequence())
        assert validator.key_fetches == fetches + 1  # pushed by the event, not by a failure
        new = (await operator.issue_token(t.admin_credentials, audiences.VAULT)).access_token
        assert jwt.get_unverified_header(new)["kid"] == rotated.kid != jwt.get_unverified_header(old)["kid"]
        await validator.validate(new, audience=audiences.VAULT)
        await validator.validate(old, audience=audiences.VAULT)  # still valid until it expires
        keys = await IdentityClient(channel).list_signing_keys()
        assert [k.state for k in keys] == [res.ACTIVE, res.RETIRING]
        clock.advance(timedelta(seconds=900 + 31))
        assert [k.kid for k in await IdentityClient(channel).list_signing_keys()] == [rotated.kid]
    finally:
        await feed.stop()


async def test_the_revocation_feed_refuses_a_disabled_principals_tokens(identity, operator, channel, clock):
    t = await make_tenant(operator, channel, clock, "L")
    platform_tid = next(x.tenant_id for x in (await operator.list_tenants()).tenants if x.platform)
    _, _, platform = await make_principal(operator, channel, clock, platform_tid, "speech", platform_service="speech")
    validator = TokenValidator(
        key_source=GrpcSigningKeySource(IdentityClient(channel)), clock=clock, issuer_base=identity.config.issuer_base
    )
    feed = RevocationFeed(platform, validator)
    feed.start()
    try:
        token = (await operator.issue_token(t.admin_credentials, audiences.SPEECH)).access_token
        await validator.validate(token, audience=audiences.SPEECH)
        await operator.disable_principal(t.tenant_id, t.admin.object_id)
        await feed.follower.wait_for(await identity.store.last_sequence())
        with pytest.raises(Unauthenticated) as caught:
            await validator.validate(token, audience=audiences.SPEECH)
        assert caught.value.reason is Reason.TOKEN_REVOKED
    finally:
        await feed.stop()


async def test_a_managed_identity_token_goes_only_to_its_owning_platform(operator, channel, clock):
    t = await make_tenant(operator, channel, clock, "M")
    platform_tid = next(x.tenant_id for x in (await operator.list_tenants()).tenants if x.platform)
    _, _, speech = await make_principal(operator, channel, clock, platform_tid, "speech", platform_service="speech")
    _, _, other = await make_principal(operator, channel, clock, platform_tid, "other", platform_service="other")
    mi = await speech.create_managed_identity(t.tenant_id, resource_id(t.subscription_id))
    assert mi.kind == res.MANAGED_IDENTITY and mi.owner_object_id
    issued = await speech.issue_managed_identity_token(mi.name, audiences.VAULT)
    claims = jwt.decode(issued.access_token, options={"verify_signature": False})
    assert (claims["oid"], claims["tid"], claims["xms_mirid"]) == (mi.object_id, t.tenant_id, mi.resource_id)
    for stranger in (other, operator, t.admin_client):
        with pytest.raises(PermissionDenied) as caught:
            await stranger.issue_managed_identity_token(mi.name, audiences.VAULT)
        assert caught.value.reason is Reason.MANAGED_IDENTITY_NOT_OWNED
    # Nobody can sign in as it with a secret, nor give it one.
    with pytest.raises(Unauthenticated):
        await operator.issue_token(ClientCredentials(t.tenant_id, mi.client_id, "cmk~" + "y" * 40), audiences.VAULT)
    with pytest.raises(FailedPrecondition) as caught_secret:
        await operator.add_client_secret(t.tenant_id, mi.object_id)
    assert caught_secret.value.reason is Reason.PRINCIPAL_KIND_NOT_ALLOWED


async def test_a_client_secret_expires_and_rotates(operator, channel, clock):
    t = await make_tenant(operator, channel, clock, "N")
    app, creds, _ = await make_principal(operator, channel, clock, t.tenant_id, "app")
    second = await operator.add_client_secret(t.tenant_id, app.object_id, "next", lifetime_days=30)
    new_creds = ClientCredentials(t.tenant_id, creds.client_id, second.secret_value)
    assert (await operator.issue_token(new_creds, audiences.VAULT)).access_token
    first_id = next(
        s.secret_id
        for s in (await operator.list_client_secrets(t.tenant_id, app.object_id)).secrets
        if s.display_name == "test"
    )
    await operator.delete_client_secret(t.tenant_id, app.object_id, first_id)
    with pytest.raises(Unauthenticated):
        await operator.issue_token(creds, audiences.VAULT)
    clock.advance(timedelta(days=31))
    with pytest.raises(Unauthenticated) as caught:
        await operator.issue_token(new_creds, audiences.VAULT)
    assert caught.value.reason is Reason.CLIENT_SECRET_EXPIRED


async def test_a_feed_whose_cursor_is_ahead_of_a_reset_directory_starts_over(identity, operator, channel, clock):
    platform_tid = next(x.tenant_id for x in (await operator.list_tenants()).tenants if x.platform)
    _, _, platform = await make_principal(operator, channel, clock, platform_tid, "vault", platform_service="keyvault")
    validator = TokenValidator(
        key_source=GrpcSigningKeySource(IdentityClient(channel)), clock=clock, issuer_base=identity.config.issuer_base
    )
    validator.revocations.revoke("stale-object-id", "disabled")  # state from the directory's former life
    feed = RevocationFeed(platform, validator)
    feed.follower.cursor = 10_000
    feed.start()
    try:
        async with asyncio.timeout(5):
            while not feed.follower.resets:  # noqa: ASYNC110 (a test polling a counter)
                await asyncio.sleep(0.01)
        await feed.follower.wait_for(await identity.store.last_sequence())
        assert feed.follower.resets == 1
        assert validator.revocations.why_revoked("stale-object-id") is None
    finally:
        await feed.stop()
