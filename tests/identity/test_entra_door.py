"""Identity's door in Entra ID's words, tried with Microsoft's own libraries unmodified and
configured only through their public options: azure-identity's ClientSecretCredential
(synchronous, on msal, and asynchronous, on aiohttp), and msal with its instance discovery
pointed at us. Its refusals carry Entra's AADSTS codes, trace and correlation ids beside our
stable reason."""

from __future__ import annotations

import asyncio
import re
import ssl
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import jwt
import msal
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientSecretCredential
from azure.identity.aio import ClientSecretCredential as AsyncClientSecretCredential

from cmk_trio.client.identity import ClientCredentials, IdentityClient
from cmk_trio.launcher.trio import RunningTrio, start_trio
from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.channels import ChannelTls, open_channel
from cmk_trio.rpckit.clock import SystemClock
from cmk_trio.rpckit.devca import DevPki
from tests.conftest import operator_credentials
from tests.identity.helpers import make_tenant

VAULT_SCOPE = f"{audiences.VAULT}/.default"
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ")


@dataclass
class Door:
    trio: RunningTrio
    base: str
    ca: Path
    tenant_id: str
    admin_id: str
    creds: ClientCredentials


@pytest.fixture
async def door(tmp_path: Path) -> AsyncIterator[Door]:
    """The trio over HTTPS (its development CA), with a customer tenant and its admin."""
    trio = await start_trio(tmp_path / "data", mutual_tls=True, env={"CMK_SECRET_HASH_COST": "10"})
    try:
        assert trio.tls_dir is not None and trio.identity.http_url is not None
        pki = DevPki(trio.tls_dir)
        cli = pki.identity("cli")
        channel = open_channel(trio.endpoints["identity"], ChannelTls(pki.ca_file, cli.cert_file, cli.key_file))
        try:
            clock = SystemClock()
            operator = IdentityClient(channel, operator_credentials(trio.identity), clock=clock)
            contoso = await make_tenant(operator, channel, clock, "Contoso")
        finally:
            await channel.close()
        yield Door(trio, trio.identity.http_url, pki.ca_file, contoso.tenant_id, contoso.admin.object_id,
                   contoso.admin_credentials)  # fmt: skip
    finally:
        await trio.stop()


def _claims(door: Door, token: str) -> dict[str, object]:
    keys = jwt.PyJWKClient(f"{door.base}/{door.tenant_id}/discovery/v2.0/keys",
                           ssl_context=ssl.create_default_context(cafile=str(door.ca)))  # fmt: skip
    key = keys.get_signing_key_from_jwt(token)
    issuer = f"https://login.microsoftonline.com/{door.tenant_id}/v2.0"
    return dict(jwt.decode(token, key.key, algorithms=["RS256"], audience=audiences.VAULT, issuer=issuer))


async def test_azure_identity_signs_in_unmodified_sync_and_async(door: Door) -> None:
    creds = door.creds
    options = {"authority": door.base, "disable_instance_discovery": True, "connection_verify": str(door.ca)}

    # Synchronous: msal reads the discovery document (its authorization_endpoint among others)
    # and posts to the token endpoint it names. (Blocking: in a thread, so the trio can answer.)
    sync = ClientSecretCredential(creds.tenant_id, creds.client_id, creds.client_secret, **options)
    token = await asyncio.to_thread(sync.get_token, VAULT_SCOPE)
    claims = await asyncio.to_thread(_claims, door, token.token)
    assert (claims["tid"], claims["oid"]) == (door.tenant_id, door.admin_id)

    # Asynchronous: azure-identity's own client posts straight to the token endpoint.
    async with AsyncClientSecretCredential(creds.tenant_id, creds.client_id, creds.client_secret, **options) as aio:
        token = await aio.get_token(VAULT_SCOPE)
    claims = await asyncio.to_thread(_claims, door, token.token)
    assert (claims["tid"], claims["oid"], claims["aud"]) == (door.tenant_id, door.admin_id, audiences.VAULT)

    # A wrong secret is refused with Entra's code for it, which the SDK shows.
    wrong = ClientSecretCredential(creds.tenant_id, creds.client_id, "not-the-secret-" + "x" * 20, **options)
    with pytest.raises(ClientAuthenticationError, match="AADSTS7000215"):
        await asyncio.to_thread(wrong.get_token, VAULT_SCOPE)


async def test_msal_instance_discovery_is_answered_for_this_door_only(door: Door, monkeypatch) -> None:
    """Without instance discovery turned off, msal asks an instance discovery endpoint about
    an authority it does not know (by default Entra's, reached through the trio's proxy; here
    named directly) and reads the tenant's discovery document from where the answer says."""
    creds = door.creds
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(door.ca))  # how requests (under msal) is told a CA

    def sign_in(authority: str) -> dict[str, object]:
        app = msal.ConfidentialClientApplication(
            creds.client_id, client_credential=creds.client_secret, authority=f"{authority}/{creds.tenant_id}",
            instance_discovery=f"{door.base}/common/discovery/instance",
        )  # fmt: skip
        return dict(app.acquire_token_for_client(scopes=[VAULT_SCOPE]))

    got = await asyncio.to_thread(sign_in, door.base)
    assert got.get("token_type") == "Bearer", got
    claims = await asyncio.to_thread(_claims, door, str(got["access_token"]))
    assert claims["oid"] == door.admin_id

    # An authority on another host is not this door's: Entra's invalid_instance, which msal
    # turns into its own refusal to go on.
    elsewhere = door.base.replace("127.0.0.1", "localhost")
    with pytest.raises(ValueError, match="invalid_instance"):
        await asyncio.to_thread(sign_in, elsewhere)


async def test_the_discovery_document_and_refusals_are_entras(door: Door) -> None:
    trust = ssl.create_default_context(cafile=str(door.ca))
    tid = door.tenant_id
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trust)) as session:
        async with session.get(f"{door.base}/{tid}/v2.0/.well-known/openid-configuration") as response:
            document = await response.json()
        # What msal (authorization_endpoint, token_endpoint) and msal-node (those, issuer and
        # jwks_uri) require, and what validators read.
        assert document["authorization_endpoint"] == f"{door.base}/{tid}/oauth2/v2.0/authorize"
        assert document["token_endpoint"] == f"{door.base}/{tid}/oauth2/v2.0/token"
        assert document["jwks_uri"] == f"{door.base}/{tid}/discovery/v2.0/keys"
        assert document["issuer"] == f"https://login.microsoftonline.com/{tid}/v2.0"
        for field in ("response_types_supported", "subject_types_supported", "id_token_signing_alg_values_supported",
                      "token_endpoint_auth_methods_supported"):  # fmt: skip
            assert document[field], field

        # A refusal: the AADSTS code first in the description and in error_codes, the trace id
        # (our request id) and the caller's correlation id, both in the body and the headers.
        correlation = str(uuid.uuid4())
        form = {"grant_type": "client_credentials", "client_id": door.creds.client_id,
                "client_secret": "not-the-secret-" + "y" * 20, "scope": VAULT_SCOPE}  # fmt: skip
        async with session.post(f"{door.base}/{tid}/oauth2/v2.0/token", data=form,
                                headers={"client-request-id": correlation}) as response:  # fmt: skip
            body, headers = await response.json(), response.headers
        assert (response.status, body["error"], body["error_codes"]) == (401, "invalid_client", [7000215])
        assert body["reason"] == "INVALID_CLIENT_CREDENTIALS"
        assert body["error_description"].startswith("AADSTS7000215: ")
        assert body["correlation_id"] == correlation == headers["client-request-id"]
        assert body["trace_id"] == headers["x-ms-request-id"] == headers["x-request-id"]
        assert f"Trace ID: {body['trace_id']} Correlation ID: {correlation} Timestamp: " in body["error_description"]
        assert TIMESTAMP.fullmatch(body["timestamp"])
        assert "y" * 20 not in await response.text()

        # Without a correlation id of its own (or with one that is no GUID) the caller gets a new one.
        async with session.post(f"{door.base}/{tid}/oauth2/v2.0/token", data=form,
                                headers={"client-request-id": "not a guid"}) as response:  # fmt: skip
            body = await response.json()
        assert uuid.UUID(body["correlation_id"]) and body["correlation_id"] != "not a guid"

        cases = [
            (f"/{uuid.uuid4()}/v2.0/.well-known/openid-configuration", 400, "invalid_tenant", 90002),
            (f"/{tid}/oauth2/v2.0/authorize?response_type=code", 400, "unsupported_response_type", 700054),
            ("/common/discovery/instance?api-version=1.1", 400, "invalid_request", 900144),
            ("/common/discovery/instance?authorization_endpoint=https://login.example/t/oauth2/v2.0/authorize",
             400, "invalid_instance", 50049),
            (f"/{tid}/oauth2/v2.0/token", 405, "invalid_request", 900561),
        ]  # fmt: skip
        for path, status, error, code in cases:
            async with session.get(f"{door.base}{path}") as response:
                body = await response.json()
            assert (response.status, body["error"], body["error_codes"]) == (status, error, [code]), (path, body)
            assert body["error_description"].startswith(f"AADSTS{code}: ")

        asked = f"https://127.0.0.1/{tid}/oauth2/v2.0/authorize"
        async with session.get(f"{door.base}/common/discovery/instance",
                               params={"api-version": "1.1", "authorization_endpoint": asked}) as response:  # fmt: skip
            answer = await response.json()
        assert answer["tenant_discovery_endpoint"] == f"{door.base}/{tid}/v2.0/.well-known/openid-configuration"
        assert "127.0.0.1" in answer["metadata"][0]["aliases"]
