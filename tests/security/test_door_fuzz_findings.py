"""What the doors' fuzzer (test_door_fuzz.py) found, each kept as a fixed case: a Host header
whose port is out of range (yarl refuses to build the request's URL) and a body whose
Content-Encoding does not match it (aiohttp raises while reading it) were answered 500 by the
key vault's door, and both were 500s at identity's door too (its instance discovery reads the
host, its token endpoint reads the body the same way). Now the key vault's door answers each
with a 400 and a reason; identity's answers the body so, and reads such a host as none of its
own names."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cmk_trio.identity.server import IdentityServer, build_server
from cmk_trio.rpckit import audiences
from tests.conftest import identity_config
from tests.security.door_fuzz import exchange, request
from tests.speech.cmk_world import World


@pytest.fixture
def keyvault_http_port() -> int:
    return 0


@pytest.fixture
async def identity_door(tmp_path: Path, clock) -> AsyncIterator[IdentityServer]:
    server = await build_server(identity_config(tmp_path / "door", http_port=0), clock=clock)
    try:
        yield server
    finally:
        await server.stop(grace=0)


def reason_of(body: bytes) -> str:
    import json

    found = json.loads(body)
    return str(found["error"]["innererror"]["code"] if "innererror" in found.get("error", {}) else found["reason"])


async def test_the_key_vault_door_answers_a_bad_port_and_a_mis_encoded_body_with_400(world: World, keyvault):
    host, _, port = (keyvault.http_url or "").removeprefix("http://").rpartition(":")
    token = await world.vaults._tokens(audiences.VAULT)
    path = world.key.key_id.partition(".net")[2]
    signed = [("Authorization", f"Bearer {token}")]
    cases = {
        "port out of range": request("GET", f"{path}?api-version=7.6", [("Host", "contoso-cmk.vault.azure.net:99999"),
                                                                        *signed]),
        "gzip that is not": request("POST", f"{path}/wrapkey?api-version=7.6", [
            ("Host", "contoso-cmk.vault.azure.net"), *signed, ("Content-Encoding", "gzip")],
            b'{"alg": "RSA-OAEP-256", "value": "AAAA"}'),
        # Found by the full run: a kty that is a list or an object was looked up in a set (TypeError).
        "kty a list": request("POST", "/keys/k/create?api-version=7.6", [("Host", "contoso-cmk.vault.azure.net"),
                                                                        *signed], b'{"kty": ["RSA"]}'),
        "kty an object": request("POST", "/keys/k/create?api-version=7.6", [("Host", "contoso-cmk.vault.azure.net"),
                                                                           *signed], b'{"kty": {}}'),
    }  # fmt: skip
    for what, data in cases.items():
        reply = await exchange(host, int(port), data, None)
        assert reply.status == 400, (what, reply.status, reply.body)
        assert reason_of(reply.body) in ("VAULT_NAME_INVALID", "REQUEST_MALFORMED", "FIELD_INVALID"), (what, reply.body)
    fine = request("GET", f"{path}?api-version=7.6", [("Host", "contoso-cmk.vault.azure.net"), *signed])
    assert (await exchange(host, int(port), fine, None)).status == 200


async def test_identitys_door_answers_a_bad_port_and_a_mis_encoded_body_with_400(identity_door):
    host, _, port = (identity_door.http_url or "").removeprefix("http://").rpartition(":")
    tenant = "00000000-0000-0000-0000-000000000001"
    form = b"grant_type=client_credentials&client_id=x&client_secret=y&scope=https%3A%2F%2Fvault.azure.net%2F.default"
    cases = {
        "port out of range": request("GET", f"/common/discovery/instance?api-version=1.1&authorization_endpoint="
                                     f"https://{host}/x/oauth2/v2.0/authorize", [("Host", f"{host}:99999")]),
        "gzip that is not": request("POST", f"/{tenant}/oauth2/v2.0/token", [
            ("Host", f"{host}:{port}"), ("Content-Type", "application/x-www-form-urlencoded"),
            ("Content-Encoding", "gzip")], form),
    }  # fmt: skip
    replies = {what: await exchange(host, int(port), data, None) for what, data in cases.items()}
    # The host is only compared with the door's own names: one yarl cannot read is none of them.
    assert replies["port out of range"].status == 200, replies
    assert (replies["gzip that is not"].status, reason_of(replies["gzip that is not"].body)) == (
        400, "REQUEST_MALFORMED",
    ), replies  # fmt: skip
