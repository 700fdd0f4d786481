"""Azure Resource Manager's door over raw HTTPS, as its clients see the envelope: the token's
challenge, api-versions, ARM's error body with our stable reason, unknown paths and methods,
bodies that are not JSON, the request and correlation ids, paging, the cloud's metadata, and
a deleted group taking its role assignments along."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
import ssl
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cmk_trio.proto.identity.v1 import resources_pb2 as idres
from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.clock import SystemClock
from tests.identity.helpers import make_principal
from tests.keyvault.doors import Doors, open_doors
from tests.security.door_fuzz import client_tls, exchange, request

README = Path(__file__).resolve().parents[2] / "README.md"
RG = "api-version=2025-04-01"
SUBS = "api-version=2022-12-01"


@pytest.fixture
async def doors(tmp_path: Path) -> AsyncIterator[Doors]:
    async with open_doors(tmp_path) as opened:
        yield opened


@pytest.fixture
async def session(doors: Doors) -> AsyncIterator[aiohttp.ClientSession]:
    trust = ssl.create_default_context(cafile=str(doors.ca))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trust)) as opened:
        yield opened


async def _bearer(doors: Doors, audience: str = audiences.MANAGEMENT) -> dict[str, str]:
    return {"Authorization": f"Bearer {await doors.contoso.admin_client.token_for(audience)}"}


def _reason(body: dict[str, Any]) -> str:
    (info,) = [i for i in body["error"]["additionalInfo"] if i["type"] == "CmkTrioReason"]
    return str(info["info"]["reason"])


async def test_the_envelope_of_refusals(doors: Doors, session: aiohttp.ClientSession) -> None:
    arm, sub = doors.arm, doors.contoso.subscription_id
    signed = await _bearer(doors)
    # No token: ARM's 401 with its challenge, before anything else is looked at.
    async with session.get(f"{arm}/subscriptions?{SUBS}") as r:
        assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Bearer authorization_uri=")
        body = await r.json()
        assert body["error"]["code"] == "AuthenticationFailed" and _reason(body) == "TOKEN_MISSING"
    # A token for another audience: the service refuses it, in ARM's words.
    async with session.get(f"{arm}/subscriptions?{SUBS}", headers=await _bearer(doors, audiences.VAULT)) as r:
        assert r.status == 401
        assert (await r.json())["error"]["code"] == "InvalidAuthenticationTokenAudience"
    async with session.get(f"{arm}/subscriptions", headers=signed) as r:
        assert r.status == 400 and (await r.json())["error"]["code"] == "MissingApiVersionParameter"
    async with session.get(f"{arm}/subscriptions?api-version=1999-01-01", headers=signed) as r:
        body = await r.json()
        assert r.status == 400 and body["error"]["code"] == "InvalidApiVersionParameter"
        assert "2022-12-01" in body["error"]["message"]
    async with session.get(f"{arm}/subscriptions/{sub}/resourcegroups?api-version=1999-01-01", headers=signed) as r:
        assert r.status == 400 and (await r.json())["error"]["code"] == "NoRegisteredProviderFound"
    async with session.get(f"{arm}/subscriptions/{sub}/nothingHere?{RG}", headers=signed) as r:
        assert r.status == 404 and _reason(await r.json()) == "HTTP_PATH_UNKNOWN"
    # A newline in a path is still a path of ours to refuse (aiohttp's bare 404 before; the fuzz found it).
    async with session.get(f"{arm}/subscriptions/%0d%0aX-Injected:%201?{SUBS}", headers=signed) as r:
        assert r.status == 400 and _reason(await r.json()) == "UUID_MALFORMED"
    async with session.post(f"{arm}/subscriptions/{sub}/resourcegroups/rg1?{RG}", headers=signed) as r:
        assert r.status == 405 and (await r.json())["error"]["code"] == "MethodNotAllowed"
    for bad in (b"", b"{not json", b"[1, 2]", b'"text"'):
        async with session.put(f"{arm}/subscriptions/{sub}/resourcegroups/rg1?{RG}", headers=signed, data=bad) as r:
            assert r.status == 400 and (await r.json())["error"]["code"] == "InvalidRequestContent", bad
    async with session.put(f"{arm}/subscriptions/{sub}/resourcegroups/rg1?{RG}", headers=signed,
                           data=b'{"location": "x" }' + b" " * (300 * 1024)) as r:  # fmt: skip
        assert r.status == 400 and _reason(await r.json()) == "REQUEST_TOO_LARGE"
    async with session.put(f"{arm}/subscriptions/{sub}/resourcegroups/bad.?{RG}", headers=signed,
                           json={"location": "westeurope"}) as r:  # fmt: skip
        body = await r.json()
        assert r.status == 400 and _reason(body) == "FIELD_INVALID"
    # None of it made a group.
    assert not (await doors.operator.list_resource_groups(sub)).resource_groups


async def test_ids_of_the_request_and_its_correlation(doors: Doors, session: aiohttp.ClientSession) -> None:
    signed = await _bearer(doors)
    correlation, client_id = str(uuid.uuid4()), "my-request-1"
    headers = {**signed, "x-ms-correlation-request-id": correlation, "x-ms-client-request-id": client_id}
    async with session.get(f"{doors.arm}/subscriptions?{SUBS}", headers=headers) as r:
        assert r.status == 200
        assert r.headers["x-ms-correlation-request-id"] == correlation
        assert r.headers["x-ms-client-request-id"] == client_id
        uuid.UUID(r.headers["x-ms-request-id"])
    async with session.get(f"{doors.arm}/subscriptions?{SUBS}", headers={**signed,
                           "x-ms-correlation-request-id": "not a guid"}) as r:  # fmt: skip
        assert uuid.UUID(r.headers["x-ms-correlation-request-id"])


async def test_groups_are_listed_in_arm_shape(doors: Doors, session: aiohttp.ClientSession) -> None:
    sub = doors.contoso.subscription_id
    for i in range(3):
        await doors.contoso.admin_client.create_resource_group(sub, f"g{i}", "westeurope")
    signed = await _bearer(doors)
    async with session.get(f"{doors.arm}/subscriptions/{sub}/resourcegroups?{RG}", headers=signed) as r:
        body = await r.json()
    assert [g["name"] for g in body["value"]] == ["g0", "g1", "g2"] and "nextLink" not in body
    first = body["value"][0]
    assert (first["id"], first["type"], first["location"]) == (
        f"/subscriptions/{sub}/resourceGroups/g0",
        "Microsoft.Resources/resourceGroups",
        "westeurope",
    )
    assert first["properties"] == {"provisioningState": "Succeeded"}


async def test_a_subscriptions_providers_name_what_is_served(doors: Doors, session: aiohttp.ClientSession) -> None:
    sub, signed = doors.contoso.subscription_id, await _bearer(doors)
    async with session.get(f"{doors.arm}/subscriptions/{sub}/providers/microsoft.keyvault?{RG}", headers=signed) as r:
        assert r.status == 200
        provider = await r.json()
    assert (provider["namespace"], provider["registrationState"]) == ("Microsoft.KeyVault", "Registered")
    vaults = next(t for t in provider["resourceTypes"] if t["resourceType"] == "vaults")
    assert "2026-02-01" in vaults["apiVersions"]  # (what az resource show takes its api-version from)
    async with session.get(f"{doors.arm}/subscriptions/{sub}/providers?{RG}", headers=signed) as r:
        listed = [p["namespace"] for p in (await r.json())["value"]]
    assert listed == ["Microsoft.KeyVault", "Microsoft.CognitiveServices", "Microsoft.Authorization"]
    async with session.get(f"{doors.arm}/subscriptions/{sub}/providers/Microsoft.Compute?{RG}", headers=signed) as r:
        assert r.status == 404 and (await r.json())["error"]["code"] == "InvalidResourceNamespace"
    # Another tenant's subscription: the existence rule, before the namespace is looked at.
    other = f"/subscriptions/{uuid.uuid4()}/providers/Microsoft.Compute?{RG}"
    async with session.get(f"{doors.arm}{other}", headers=signed) as r:
        assert r.status in (403, 404) and _reason(await r.json()) != "HTTP_PATH_UNKNOWN"


async def test_the_cloud_metadata_needs_no_token(doors: Doors, session: aiohttp.ClientSession) -> None:
    async with session.get(f"{doors.arm}/metadata/endpoints?api-version=2022-09-01") as r:
        assert r.status == 200
        cloud = await r.json()
    assert cloud["resourceManager"] == f"{doors.arm}/"
    assert cloud["authentication"]["loginEndpoint"].rstrip("/") == doors.authority.rstrip("/")
    assert "https://management.azure.com/" in cloud["authentication"]["audiences"]
    async with session.get(f"{doors.arm}/metadata/endpoints?api-version=2019-05-01") as r:
        assert isinstance(await r.json(), list)


async def test_deleting_a_group_deletes_its_vaults_and_role_assignments(
    doors: Doors, session: aiohttp.ClientSession
) -> None:
    contoso, sub = doors.contoso, doors.contoso.subscription_id
    signed = await _bearer(doors)
    async with session.put(f"{doors.arm}/subscriptions/{sub}/resourcegroups/doomed?{RG}", headers=signed,
                           json={"location": "westeurope"}) as r:  # fmt: skip
        assert r.status == 201
    await doors.vaults.create_vault(f"{doors.vault}-d", sub, "Doomed", "westeurope", retention_days=7)
    bob, _, _ = await make_principal(doors.operator, doors.identity_channel, SystemClock(), contoso.tenant_id, "bob")
    scope = f"/subscriptions/{sub}/resourceGroups/doomed"
    await contoso.admin_client.create_role_assignment(bob.object_id, idres.CONTRIBUTOR, scope)
    async with session.delete(f"{doors.arm}/subscriptions/{sub}/resourcegroups/DOOMED?{RG}", headers=signed) as r:
        assert r.status == 200
    assert not (await doors.operator.list_role_assignments(principal_id=bob.object_id)).role_assignments
    vaults = await doors.vaults.list_vaults(sub)
    assert f"{doors.vault}-d" not in [v.vault_name for v in vaults.vaults]
    async with session.get(f"{doors.arm}/subscriptions/{sub}/resourcegroups/doomed?{RG}", headers=signed) as r:
        assert r.status == 404 and (await r.json())["error"]["code"] == "ResourceGroupNotFound"


def readme_block() -> str:
    found = re.search(r"<!-- azure-mgmt -->\n```python\n(.*?)\n```", README.read_text(), re.S)
    assert found, "the README has no azure-mgmt block"
    return found.group(1)


async def test_the_readme_block_runs_as_written(doors: Doors, tmp_path: Path) -> None:
    """The README's management example, in a directory laid out as `cmk up` leaves it, with
    only where the doors listen told by the variables it reads."""
    (tmp_path / ".cmk" / "tls").mkdir(parents=True)
    (tmp_path / ".cmk" / "tls" / "ca.crt").symlink_to(doors.ca)
    script = tmp_path / "example.py"
    script.write_text(readme_block())
    creds = doors.contoso.admin_credentials
    env = {k: v for k, v in os.environ.items() if not k.startswith("CMK_")} | {
        "AZURE_TENANT_ID": creds.tenant_id, "AZURE_CLIENT_ID": creds.client_id,
        "AZURE_CLIENT_SECRET": creds.client_secret, "AZURE_SUBSCRIPTION_ID": doors.contoso.subscription_id,
        "CMK_IDENTITY_HTTPS": doors.authority, "CMK_ARM_HTTPS": str(doors.arm),
    }  # fmt: skip
    run = await asyncio.create_subprocess_exec(
        sys.executable, str(script), cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(run.communicate(), timeout=120)
    assert run.returncode == 0, err.decode()[-3000:]
    assert out.decode().strip() == f"/subscriptions/{doors.contoso.subscription_id}/resourceGroups/speech-rg"
    made = await doors.operator.get_resource_group(doors.contoso.subscription_id, "speech-rg")
    assert made.location == "westeurope"  # the same group, over gRPC


async def test_cmk_ups_banner_names_the_door(doors: Doors) -> None:
    said = doors.running.announcement()
    assert said.arm == doors.arm and json.loads(said.to_json())["arm"] == doors.arm
    assert f"Azure Resource Manager's door at {doors.arm} (management clients' base_url)" in said.lines()
    assert any("management.azure.com), by the proxy:" in line for line in said.lines())


async def test_a_token_for_the_classic_management_name_is_a_management_token(
    doors: Doors, session: aiohttp.ClientSession
) -> None:
    """What the az CLI asks for (its cloud's resource, https://management.core.windows.net/)
    is a token for the management audience, which ARM's door takes."""
    creds = doors.contoso.admin_credentials
    form = {"grant_type": "client_credentials", "client_id": creds.client_id, "client_secret": creds.client_secret,
            "scope": "https://management.core.windows.net//.default"}  # fmt: skip
    async with session.post(f"{doors.authority}/{creds.tenant_id}/oauth2/v2.0/token", data=form) as r:
        assert r.status == 200, await r.text()
        token = (await r.json())["access_token"]
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["aud"] == audiences.MANAGEMENT
    async with session.get(f"{doors.arm}/subscriptions?{SUBS}", headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 200


async def test_what_the_az_cli_sends_for_a_vault(doors: Doors, session: aiohttp.ClientSession) -> None:
    """`az keyvault create` sends network rules that allow every network (what the trio does:
    accepted; a rule that denies is refused), and `az keyvault set-policy -n` finds the vault's
    group through the subscription's resources by type and name."""
    contoso, signed = doors.contoso, await _bearer(doors)
    sub = contoso.subscription_id
    async with session.put(f"{doors.arm}/subscriptions/{sub}/resourcegroups/az-rg?{RG}", headers=signed,
                           json={"location": "westeurope"}) as r:  # fmt: skip
        assert r.status == 201
    vault = f"{doors.vault}-az"
    url = f"{doors.arm}/subscriptions/{sub}/resourceGroups/az-rg/providers/Microsoft.KeyVault/vaults/{vault}"
    acls = {"bypass": "AzureServices", "defaultAction": "Allow", "ipRules": [], "virtualNetworkRules": []}
    body: dict[str, Any] = {"location": "westeurope", "properties": {
        "tenantId": contoso.tenant_id, "sku": {"family": "A", "name": "standard"}, "accessPolicies": [],
        "networkAcls": acls}}  # fmt: skip
    without = {"location": "westeurope", "properties": {k: v for k, v in body["properties"].items()
                                                          if k != "accessPolicies"}}  # fmt: skip
    async with session.put(f"{url}?api-version=2026-05-15", headers=signed, json=without) as r:
        assert r.status == 400 and _reason(await r.json()) == "FIELD_REQUIRED"  # (a PUT sets the whole list)
    body["properties"]["networkAcls"]["defaultAction"] = "Deny"
    async with session.put(f"{url}?api-version=2026-05-15", headers=signed, json=body) as r:
        assert r.status == 400 and _reason(await r.json()) == "FIELD_INVALID"
    body["properties"]["networkAcls"]["defaultAction"] = "Allow"
    async with session.put(f"{url}?api-version=2026-05-15", headers=signed, json=body) as r:
        assert r.status == 201, await r.text()
    query = f"$filter=resourceType eq 'Microsoft.KeyVault/vaults' and name eq '{vault.upper()}'&api-version=2015-11-01"
    async with session.get(f"{doors.arm}/subscriptions/{sub}/resources?{query}", headers=signed) as r:
        found = (await r.json())["value"]
    assert [(v["name"], v["type"]) for v in found] == [(vault, "Microsoft.KeyVault/vaults")]
    assert found[0]["id"].endswith(f"/resourceGroups/az-rg/providers/Microsoft.KeyVault/vaults/{vault}")
    for bad in ("location eq 'westeurope'", f"name eq '{vault}' and name eq 'x'", "resourceType eq"):
        async with session.get(f"{doors.arm}/subscriptions/{sub}/resources?$filter={bad}&{RG}", headers=signed) as r:
            assert r.status == 400 and (await r.json())["error"]["code"] == "InvalidFilterInQueryString", bad


async def test_a_body_that_is_not_what_its_headers_say_is_refused_and_the_connection_closed(
    doors: Doors, caplog: pytest.LogCaptureFixture
) -> None:
    """A body sent as gzip that is not: refused with a reason, and the connection closed at
    once (the listener's log hook raised on it before, so aiohttp never closed it: a hang the
    ARM fuzz found), with nothing logged as an error."""
    assert doors.arm is not None
    host, _, port = doors.arm.removeprefix("https://").rpartition(":")
    token = await doors.contoso.admin_client.token_for(audiences.MANAGEMENT)
    path = f"/subscriptions/{doors.contoso.subscription_id}/resourcegroups/gz?{RG}"
    sent = request("PUT", path, [("Host", f"{host}:{port}"), ("Authorization", f"Bearer {token}"),
                                 ("Content-Encoding", "gzip")], b'{"location": "westeurope"}')  # fmt: skip
    reply = await exchange(host, int(port), sent, client_tls(), guard=8.0)
    assert not reply.timed_out and reply.status == 400
    assert _reason(reply.json()) == "REQUEST_MALFORMED"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


async def test_a_method_aiohttp_routes_itself_is_refused_in_arms_body(doors: Doors) -> None:
    """A CONNECT, whose target aiohttp reads as no path: its router's bare 404 before (the ARM
    fuzz found it), now ARM's body with our reason."""
    assert doors.arm is not None
    host, _, port = doors.arm.removeprefix("https://").rpartition(":")
    sent = request("CONNECT", f"/subscriptions/{doors.contoso.subscription_id}?{SUBS}", [("Host", f"{host}:{port}")])
    reply = await exchange(host, int(port), sent, client_tls(), guard=8.0)
    assert reply.status == 404 and _reason(reply.json()) == "HTTP_PATH_UNKNOWN"
