"""Identity's HTTP endpoints, as services in other languages use them: the OpenID Connect
discovery document, the JWKS it names (read by PyJWT's PyJWKClient), and the OAuth 2.0
client-credentials token endpoint, whose tokens the key vault honours. Refusals follow
RFC 6749 section 5.2 with our stable reason; no secret reaches a log line."""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from authlib.oidc.discovery import OpenIDProviderMetadata

from cmk_trio.client.identity import ClientCredentials, IdentityClient
from cmk_trio.client.keyvault import KeyVaultClient
from cmk_trio.identity.server import IdentityServer, build_server
from cmk_trio.launcher.trio import start_trio
from cmk_trio.proto.identity.v1 import resources_pb2 as idres
from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.admission import Budget, Caller, Shares
from cmk_trio.rpckit.channels import ChannelTls, open_channel
from cmk_trio.rpckit.clock import FakeClock, SystemClock
from cmk_trio.rpckit.devca import DevPki
from cmk_trio.rpckit.reasons import Reason
from tests.conftest import identity_config, operator_credentials
from tests.identity.helpers import make_principal, make_tenant

FORM = {"grant_type": "client_credentials"}


def token_form(creds: ClientCredentials, audience: str = audiences.VAULT, **extra: str) -> dict[str, str]:
    return {**FORM, "client_id": creds.client_id, "client_secret": creds.client_secret,
            "scope": f"{audience}/.default", **extra}  # fmt: skip


async def post_token(
    session: aiohttp.ClientSession, base: str, tenant_id: str, data: Any, **kwargs: Any
) -> tuple[int, dict[str, Any], Any]:
    async with session.post(f"{base}/{tenant_id}/oauth2/v2.0/token", data=data, **kwargs) as response:
        return response.status, await response.json(), response.headers


class HttpTokens:
    """A TokenSource that asks identity's HTTP token endpoint, as a client in another
    language would (no gRPC, no cmk-trio client)."""

    def __init__(self, session: aiohttp.ClientSession, base: str, creds: ClientCredentials) -> None:
        self._session, self._base, self._creds = session, base, creds
        self.fetched: list[str] = []

    async def __call__(self, audience: str) -> str:
        status, body, _ = await post_token(self._session, self._base, self._creds.tenant_id,
                                           token_form(self._creds, audience))  # fmt: skip
        assert status == 200, body
        self.fetched.append(audience)
        return str(body["access_token"])


async def test_discovery_keys_and_token_endpoint_over_https_with_the_trio(tmp_path: Path) -> None:
    trio = await start_trio(tmp_path / "data", mutual_tls=True, env={"CMK_SECRET_HASH_COST": "10"})
    try:
        assert trio.tls_dir is not None and trio.identity.http_url is not None
        base = trio.identity.http_url
        assert base.startswith("https://127.0.0.1:")
        pki = DevPki(trio.tls_dir)
        cli = pki.identity("cli")
        grpc_tls = ChannelTls(pki.ca_file, cli.cert_file, cli.key_file)
        identity_channel = open_channel(trio.endpoints["identity"], grpc_tls)
        vault_channel = open_channel(trio.endpoints["keyvault"], grpc_tls)
        # An HTTP client trusts the CA and shows no certificate: these endpoints are public.
        trust = ssl.create_default_context(cafile=str(pki.ca_file))
        clock = SystemClock()
        try:
            operator = IdentityClient(identity_channel, operator_credentials(trio.identity), clock=clock)
            contoso = await make_tenant(operator, identity_channel, clock, "Contoso")
            await operator.create_role_assignment(
                contoso.admin.object_id, idres.OWNER, f"/subscriptions/{contoso.subscription_id}"
            )
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trust)) as session:
                well_known = f"{base}/{contoso.tenant_id}/v2.0/.well-known/openid-configuration"
                async with session.get(well_known) as response:
                    assert response.status == 200
                    document = await response.json()
                # A standard OpenID Connect library's checks of a provider's metadata.
                OpenIDProviderMetadata(document).validate()
                assert document["token_endpoint"] == f"{base}/{contoso.tenant_id}/oauth2/v2.0/token"
                assert f"{audiences.VAULT}/.default" in document["scopes_supported"]

                # A token from the gRPC endpoint, verified by PyJWT against the JWKS the
                # discovery document names: the issuer, audience and signature all line up.
                grpc_token = await contoso.admin_client.token_for(audiences.VAULT)
                jwks = jwt.PyJWKClient(document["jwks_uri"], ssl_context=trust)
                # (PyJWKClient blocks on urllib: in a thread, so that the server can answer it)
                signing_key = await asyncio.to_thread(jwks.get_signing_key_from_jwt, grpc_token)
                claims = jwt.decode(
                    grpc_token, signing_key.key, algorithms=document["id_token_signing_alg_values_supported"],
                    audience=audiences.VAULT, issuer=document["issuer"],
                )  # fmt: skip
                assert claims["tid"] == contoso.tenant_id
                assert claims["oid"] == contoso.admin.object_id

                # Tokens from the HTTP endpoint, honoured by the key vault: the management
                # audience makes the vault, the vault's own the key, the wrap and the unwrap.
                tokens = HttpTokens(session, base, contoso.admin_credentials)
                vaults = KeyVaultClient(vault_channel, tokens)
                await vaults.create_vault("contoso-http", contoso.subscription_id, "rg", "westeurope")
                await vaults.set_access_policy(
                    "contoso-http",
                    contoso.tenant_id,
                    contoso.admin.object_id,
                    ["get", "create", "wrapKey", "unwrapKey"],
                )
                key = await vaults.create_key("contoso-http", "cmk")
                wrapped = await vaults.wrap(key.key_id, b"k" * 32)
                assert (await vaults.unwrap(key.key_id, wrapped.ciphertext)).plaintext == b"k" * 32
                assert set(tokens.fetched) == {audiences.MANAGEMENT, audiences.VAULT}
                http_token = await tokens(audiences.VAULT)
                assert jwt.decode(http_token, options={"verify_signature": False})["iss"] == document["issuer"]
        finally:
            await identity_channel.close()
            await vault_channel.close()
    finally:
        await trio.stop()


@pytest.fixture
async def served(tmp_path: Path, clock: FakeClock, database_url: str) -> AsyncIterator[IdentityServer]:
    """Identity with its HTTP endpoints on a free port, plain HTTP (no certificate)."""
    config = identity_config(tmp_path / "identity", http_port=0, database_url=database_url)
    server = await build_server(config, clock=clock)
    try:
        yield server
    finally:
        await server.stop(grace=0)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _customer(served: IdentityServer, clock: FakeClock) -> tuple[IdentityClient, Any, Any]:
    channel = open_channel(served.endpoint)
    operator = IdentityClient(channel, operator_credentials(served), clock=clock)
    tenant = await make_tenant(operator, channel, clock, "Fabrikam")
    app, creds, _ = await make_principal(operator, channel, clock, tenant.tenant_id, "app")
    return operator, tenant, (app, creds, channel)


async def test_refusals_are_rfc_6749_errors_with_a_reason_and_no_secret_in_the_log(
    served: IdentityServer, session: aiohttp.ClientSession, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    base = served.http_url
    assert base is not None and base.startswith("http://127.0.0.1:")
    operator, tenant, (app, creds, channel) = await _customer(served, clock)
    tid = tenant.tenant_id
    try:
        status, body, headers = await post_token(session, base, tid, token_form(creds))
        assert status == 200, body
        assert body["token_type"] == "Bearer" and body["expires_in"] == 900
        assert headers["Cache-Control"] == "no-store"

        # client_secret_basic: the same credentials in the Authorization header.
        basic = base64.b64encode(f"{creds.client_id}:{creds.client_secret}".encode()).decode()
        status, body, _ = await post_token(session, base, tid, {**FORM, "scope": f"{audiences.VAULT}/.default"},
                                           headers={"Authorization": f"Basic {basic}"})  # fmt: skip
        assert status == 200, body

        wrong = "not-the-secret-" + "x" * 20
        cases: list[tuple[Any, dict[str, Any], int, str, Reason]] = [
            (token_form(creds, client_secret=wrong), {}, 401, "invalid_client", Reason.INVALID_CLIENT_CREDENTIALS),
            (token_form(creds, audience="https://elsewhere.example"), {}, 400, "invalid_scope",
             Reason.AUDIENCE_UNKNOWN),
            (token_form(creds, scope=audiences.VAULT), {}, 400, "invalid_scope", Reason.FIELD_INVALID),
            (token_form(creds, scope=f"{audiences.VAULT}/.default {audiences.SPEECH}/.default"), {}, 400,
             "invalid_scope", Reason.FIELD_INVALID),
            ({**token_form(creds), "scope": ""}, {}, 400, "invalid_request", Reason.FIELD_REQUIRED),
            (token_form(creds, grant_type="password"), {}, 400, "unsupported_grant_type", Reason.FIELD_INVALID),
            ({**token_form(creds), "grant_type": ""}, {}, 400, "invalid_request", Reason.FIELD_REQUIRED),
            ([*token_form(creds).items(), ("client_id", creds.client_id)], {}, 400, "invalid_request",
             Reason.FIELD_INVALID),
            (token_form(creds, client_id="not-a-uuid"), {}, 400, "invalid_request", Reason.UUID_MALFORMED),
            (None, {"json": token_form(creds)}, 400, "invalid_request", Reason.FIELD_INVALID),
            (token_form(creds), {"params": {"client_secret": wrong}}, 400, "invalid_request", Reason.FIELD_INVALID),
            (token_form(creds), {"headers": {"Authorization": "Basic !!!"}}, 401, "invalid_client",
             Reason.INVALID_CLIENT_CREDENTIALS),
            ({**token_form(creds), "padding": "p" * 20_000}, {}, 413, "invalid_request", Reason.REQUEST_TOO_LARGE),
        ]  # fmt: skip
        for data, kwargs, want_status, want_error, want_reason in cases:
            status, body, headers = await post_token(session, base, tid, data, **kwargs)
            assert (status, body["error"], body["reason"]) == (want_status, want_error, want_reason.value), (
                data, kwargs, body,
            )  # fmt: skip
            assert body["error_description"] and body["trace_id"] == headers["x-request-id"]
            assert headers["Cache-Control"] == "no-store"
        _, _, headers = await post_token(session, base, tid, token_form(creds), headers={"Authorization": "Basic !!!"})
        assert headers["WWW-Authenticate"] == 'Basic realm="token"'

        # The tenant in the path: unknown, and not a tenant id at all.
        status, body, _ = await post_token(session, base, "6c1ad4a2-6a5b-4ab0-9c49-19d5a9a3b7a1", token_form(creds))
        assert (status, body["error"], body["reason"]) == (400, "invalid_tenant", "TENANT_NOT_FOUND")
        for bad in ("common", tid.replace("-", ""), "%7B" + tid + "%7D"):
            status, body, _ = await post_token(session, base, bad, token_form(creds))
            assert (status, body.get("reason")) == (400, "UUID_MALFORMED"), (bad, body)
        async with session.get(f"{base}/{tid}/oauth2/v2.0/token") as response:
            body = await response.json()
            assert (response.status, body["reason"], response.headers["Allow"]) == (
                405,
                "HTTP_METHOD_NOT_ALLOWED",
                "POST",
            )
        async with session.get(f"{base}/{tid}/v2.0/nothing-here") as response:
            assert (response.status, (await response.json())["reason"]) == (404, "HTTP_PATH_UNKNOWN")

        # A disabled principal gets no token, with the secret right; an expired secret neither.
        await operator.disable_principal(tid, app.object_id)
        status, body, _ = await post_token(session, base, tid, token_form(creds))
        assert (status, body["error"], body["reason"]) == (400, "unauthorized_client", "PRINCIPAL_DISABLED")
        await operator.enable_principal(tid, app.object_id)
        clock.advance(timedelta(days=3 * 365))
        status, body, _ = await post_token(session, base, tid, token_form(creds))
        assert (status, body["error"], body["reason"]) == (401, "invalid_client", "CLIENT_SECRET_EXPIRED")
    finally:
        await channel.close()
    assert "call refused" in caplog.text
    for secret in (creds.client_secret, wrong):
        assert secret not in caplog.text


async def test_token_requests_have_the_sign_ins_budget_apart_from_the_other_calls(
    served: IdentityServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    _, tenant, (_, creds, channel) = await _customer(served, clock)
    await channel.close()
    limits = served.limits
    assert limits is not None and served.http_url is not None
    # Sign-ins in flight (gRPC IssueToken's, from two addresses) fill the sign-ins' budget ...
    sign_ins = [Caller.anonymous(f"ipv4:10.0.0.{n % 2}:4000", sign_in=True) for n in range(limits.shares.sign_in_calls)]
    for caller in sign_ins:
        limits.admit(caller)
    status, body, headers = await post_token(session, served.http_url, tenant.tenant_id, token_form(creds))
    assert (status, body["error"], body["reason"]) == (429, "temporarily_unavailable", "TOO_MANY_CALLS")
    assert headers["Retry-After"] == "1"
    for caller in sign_ins:
        limits.release(caller)
    # ... but every other call in flight (here the platform's, which may take the most) does not.
    platform = Caller(Budget.PLATFORM, "speech service", "platform tenant")
    for _ in range(limits.shares.platform_calls):
        limits.admit(platform)
    try:
        status, _, _ = await post_token(session, served.http_url, tenant.tenant_id, token_form(creds))
        assert status == 200
    finally:
        for _ in range(limits.shares.platform_calls):
            limits.release(platform)


async def test_the_key_set_follows_rotation_and_revocation(
    served: IdentityServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    _, tenant, (_, _, channel) = await _customer(served, clock)
    await channel.close()
    url = f"{served.http_url}/{tenant.tenant_id}/discovery/v2.0/keys"

    async def kids() -> set[str]:
        async with session.get(url) as response:
            assert response.status == 200
            assert response.headers["Cache-Control"] == "public, max-age=60"
            keys = (await response.json())["keys"]
        assert all(k["kty"] == "RSA" and k["use"] == "sig" and k["alg"] == "RS256" and "d" not in k for k in keys)
        return {k["kid"] for k in keys}

    first = await kids()
    assert len(first) == 1
    rotated = await served.keys.rotate()
    assert await kids() == first | {rotated.kid}  # the old key stays until its tokens expire
    await served.keys.revoke(next(iter(first)))
    assert await kids() == {rotated.kid}


async def test_requests_are_counted_by_route_and_status(
    served: IdentityServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    _, tenant, (_, creds, channel) = await _customer(served, clock)
    await channel.close()
    assert served.http_url is not None
    await post_token(session, served.http_url, tenant.tenant_id, token_form(creds))
    await post_token(session, served.http_url, tenant.tenant_id, token_form(creds, client_secret="wrong" * 5))
    sample = served.metrics.registry.get_sample_value
    ok = {"service": "identity", "route": "token", "status": "200", "reason": ""}
    refused = {"service": "identity", "route": "token", "status": "401", "reason": "INVALID_CLIENT_CREDENTIALS"}
    assert sample("cmk_http_requests_total", ok) == 1
    assert sample("cmk_http_requests_total", refused) == 1  # (secret guessing is counted by its reason)


async def test_a_slow_body_holds_no_place_and_a_bad_charset_is_refused(
    served: IdentityServer, session: aiohttp.ClientSession, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that trickles its body (or never sends it) waits outside the cap on calls
    served at once, and is refused when its time is up; a charset nobody knows is a bad form."""
    from cmk_trio.identity import oidc

    monkeypatch.setattr(oidc, "BODY_SECONDS", 0.5)
    _, tenant, (_, creds, channel) = await _customer(served, clock)
    await channel.close()
    assert served.limits is not None and served.http_url is not None
    served.limits.shares = Shares(calls=5)  # one place for sign-ins
    port = int(served.http_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST /{tenant.tenant_id}/oauth2/v2.0/token HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: {oidc.FORM}\r\nContent-Length: 1000\r\n\r\ngrant_type=".encode()
    )
    await writer.drain()
    # Meanwhile the one place is free: a whole request is answered.
    status, body, _ = await post_token(session, served.http_url, tenant.tenant_id, token_form(creds))
    assert status == 200, body
    answer = (await reader.read(4096)).decode()
    writer.close()
    assert answer.startswith("HTTP/1.1 408") and '"REQUEST_TOO_SLOW"' in answer, answer
    assert served.limits.calls == 0

    form = "&".join(f"{k}={v}" for k, v in token_form(creds).items())
    status, body, _ = await post_token(
        session, served.http_url, tenant.tenant_id, form.encode(),
        headers={"Content-Type": f"{oidc.FORM}; charset=no-such-charset"},
    )  # fmt: skip
    assert (status, body["reason"]) == (400, "REQUEST_MALFORMED")
