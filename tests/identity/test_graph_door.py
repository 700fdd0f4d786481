"""Microsoft Graph's reads at identity's door (identity/graph.py), as the az CLI makes them:
who the signed-in identity is, and a service principal by its application id, with the
directory's rules (its own tenant), Graph's error body and our reason."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from cmk_trio.client.identity import IdentityClient
from cmk_trio.proto.identity.v1 import resources_pb2 as idres
from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.clock import SystemClock
from tests.identity.helpers import make_principal, make_tenant
from tests.keyvault.doors import Doors, open_doors


@pytest.fixture
async def doors(tmp_path: Path) -> AsyncIterator[Doors]:
    async with open_doors(tmp_path) as opened:
        yield opened


@pytest.fixture
async def session(doors: Doors) -> AsyncIterator[aiohttp.ClientSession]:
    trust = ssl.create_default_context(cafile=str(doors.ca))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trust)) as opened:
        yield opened


async def _get(session: aiohttp.ClientSession, doors: Doors, path: str, token: str | None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.get(f"{doors.authority}/v1.0{path}", headers=headers) as r:
        return r.status, await r.json()


def _reason(body: dict[str, Any]) -> str:
    return str(body["error"]["innerError"]["reason"])


async def test_a_service_principal_is_found_by_its_application_id(doors: Doors, session: aiohttp.ClientSession) -> None:
    clock = SystemClock()
    sp, creds, _ = await make_principal(doors.operator, doors.identity_channel, clock, doors.contoso.tenant_id, "sp",
                                        kind=idres.SERVICE_PRINCIPAL)  # fmt: skip
    token = await IdentityClient(doors.identity_channel, creds, clock=clock).token_for(audiences.DIRECTORY)
    # /me is for a user's (delegated) token: an application's is Graph's 400, which az reads as "look it up".
    status, body = await _get(session, doors, "/me", token)
    assert (status, body["error"]["code"], _reason(body)) == (400, "BadRequest", "DELEGATED_TOKEN_REQUIRED")
    for query in (f"servicePrincipalNames/any(c:c eq '{sp.client_id}')", f"appId eq '{sp.client_id.upper()}'"):
        status, body = await _get(session, doors, f"/servicePrincipals?$filter={quote(query)}", token)
        assert status == 200, body
        assert [(p["id"], p["appId"], p["servicePrincipalType"]) for p in body["value"]] == [
            (sp.object_id, sp.client_id, "Application")
        ]
    status, body = await _get(session, doors, f"/servicePrincipals/{sp.object_id}", token)
    assert (status, body["id"], body["displayName"]) == (200, sp.object_id, "sp")
    # Users are not service principals; a filter not served is said so.
    status, body = await _get(session, doors, f"/servicePrincipals/{doors.contoso.admin.object_id}", token)
    assert (status, body["error"]["code"]) == (404, "Request_ResourceNotFound")
    status, body = await _get(session, doors, f"/servicePrincipals?$filter={quote('displayName eq ' + chr(39))}", token)
    assert (status, body["error"]["code"]) == (400, "Request_UnsupportedQuery")
    assert _reason(body) == "GRAPH_QUERY_UNSUPPORTED"


async def test_a_user_is_itself_at_me_and_other_tenants_are_not_seen(
    doors: Doors, session: aiohttp.ClientSession
) -> None:
    clock = SystemClock()
    admin = doors.contoso.admin
    token = await doors.contoso.admin_client.token_for(audiences.DIRECTORY)
    status, body = await _get(session, doors, "/me", token)
    assert (status, body["id"]) == (200, admin.object_id)
    fabrikam = await make_tenant(doors.operator, doors.identity_channel, clock, "Fabrikam")
    theirs, _, _ = await make_principal(doors.operator, doors.identity_channel, clock, fabrikam.tenant_id, "theirs",
                                        kind=idres.SERVICE_PRINCIPAL)  # fmt: skip
    query = quote(f"appId eq '{theirs.client_id}'")
    status, body = await _get(session, doors, f"/servicePrincipals?$filter={query}", token)
    assert (status, body["value"]) == (200, [])
    status, body = await _get(session, doors, f"/servicePrincipals/{theirs.object_id}", token)
    assert status == 404
    # No token, or a token for another audience: Graph's 401, with the reason.
    status, body = await _get(session, doors, "/me", None)
    assert (status, body["error"]["code"], _reason(body)) == (401, "InvalidAuthenticationToken", "TOKEN_MISSING")
    vault_token = await doors.contoso.admin_client.token_for(audiences.VAULT)
    status, body = await _get(session, doors, "/me", vault_token)
    assert (status, _reason(body)) == (401, "TOKEN_AUDIENCE_INVALID")
