"""The key vault's Azure door itself, with a plain HTTP client: its wire (the challenge,
api-versions, headers, errors, bodies, odd requests), the existence rule at the door, and the
README's example run as written. What Microsoft's SDKs do through it, both ways of naming the
hosts, is the witnesses' (tests/witness/test_python_sdks.py)."""

from __future__ import annotations

import asyncio
import os
import re
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.clock import SystemClock
from tests.identity.helpers import make_tenant
from tests.keyvault.doors import Doors, open_doors

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
async def doors(tmp_path: Path) -> AsyncIterator[Doors]:
    async with open_doors(tmp_path) as opened:
        yield opened


async def test_the_doors_wire_the_challenge_versions_and_errors(doors: Doors) -> None:
    trust = ssl.create_default_context(cafile=str(doors.ca))
    base = f"https://{doors.door}"
    host = {"Host": f"{doors.vault}.vault.azure.net"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trust)) as session:
        # No token: the challenge names the vault's tenant and the vault audience.
        async with session.get(f"{base}/keys?api-version=2025-07-01", headers=host) as response:
            body = await response.json()
            assert response.status == 401
            assert response.headers["WWW-Authenticate"] == (
                f'Bearer authorization="https://login.microsoftonline.com/{doors.contoso.tenant_id}",'
                f' resource="{audiences.VAULT}"'
            )
            assert body["error"]["code"] == "Unauthorized"
            assert body["error"]["innererror"]["code"] == "TOKEN_MISSING"
            assert response.headers["x-ms-request-id"] and response.headers["x-ms-keyvault-service-version"]
        token = await doors.contoso.admin_client.token_for(audiences.VAULT)
        signed = host | {"Authorization": f"Bearer {token}"}
        cases = [
            ("GET", "/keys?api-version=1999-01-01", None, 400, "BadParameter", "FIELD_INVALID"),
            ("GET", "/keys/nothing?api-version=2025-07-01", None, 404, "KeyNotFound", "KEY_NOT_FOUND"),
            ("POST", "/keys/k/create?api-version=2025-07-01", b"{not json", 400, "BadParameter", "REQUEST_MALFORMED"),
            ("POST", "/keys/k/create?api-version=2025-07-01", b'{"kty": "oct"}', 400, "BadParameter", "FIELD_INVALID"),
            ("POST", "/keys/k/create?api-version=2025-07-01", b'{"kty": "RSA", "public_exponent": 3}', 400,
             "BadParameter", "FIELD_INVALID"),
            ("POST", "/keys/k/create?api-version=2025-07-01", b'{"kty": "EC", "crv": "P-256K"}', 400,
             "BadParameter", "KEY_CURVE_INVALID"),
            ("GET", "/certificates?api-version=2025-07-01", None, 404, "NotFound", "HTTP_PATH_UNKNOWN"),
            ("GET", "/secrets/nothing?api-version=2025-07-01", None, 404, "SecretNotFound", "SECRET_NOT_FOUND"),
            # Bodies: 64 KiB at most, but a restore's may be as large as a backup.
            ("POST", "/keys/k/create?api-version=2025-07-01", b"x" * 70_000, 400, "BadParameter", "REQUEST_TOO_LARGE"),
            ("POST", "/keys/restore?api-version=2025-07-01", b'{"value": "' + b"A" * 200_000 + b'"}', 400,
             "BadParameter", "BACKUP_INVALID"),
            ("POST", "/keys/restore?api-version=2025-07-01", b"x" * (5 * 1024 * 1024), 400, "BadParameter",
             "REQUEST_TOO_LARGE"),
        ]  # fmt: skip
        for method, path, data, status, code, reason in cases:
            async with session.request(method, f"{base}{path}", data=data, headers=signed) as response:
                body = await response.json()
            assert (response.status, body["error"]["code"], body["error"]["innererror"]["code"]) == (
                status, code, reason,
            ), (path, body)  # fmt: skip

        # A body that does not say its length is counted as it comes, and cut off at the limit.
        async def chunked() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b"x" * 10_000

        async with session.post(f"{base}/keys/k/create?api-version=7.6", data=chunked(), headers=signed) as response:
            body = await response.json()
        assert (response.status, body["error"]["innererror"]["code"]) == (400, "REQUEST_TOO_LARGE")
        # Odd requests get a refusal with a reason, never a 500.
        odd = [
            ("POST", "/keys/a%2Fb/create", b'{"kty": "RSA"}'), ("POST", "/keys/" + "k" * 300 + "/create", b"{}"),
            ("POST", "/keys/k/create", b'{"kty": "RSA", "key_size": 1e309}'),
            ("POST", "/keys/k/create", b'{"kty": "RSA", "key_size": 99999}'),
            ("POST", "/keys/k/create", b'{"kty": "RSA", "attributes": {"exp": 1e300}}'),
            ("POST", "/keys/k/create", b'{"kty": "RSA", "key_ops": ["fly"]}'),
            ("POST", "/keys/k/create", b"[" * 5000), ("POST", "/keys/k/zz/wrapkey", b'{"alg": "RSA-OAEP", "value": 1}'),
            ("POST", "/keys/k//unwrapkey", b'{"alg": "none", "value": "AA"}'), ("GET", "/keys?maxresults=0", None),
            ("GET", "/keys?maxresults=%C2%B2", None),  # a superscript two: a digit to str.isdigit, not to int()
            ("GET", "/keys?$skiptoken=garbage", None), ("PATCH", "/keys/k/", b'{"tags": {"a": 1}}'),
            ("POST", "/keys/k/create", b"x" * 70_000), ("GET", "/deletedkeys/%00", None),
        ]  # fmt: skip
        for method, path, data in odd:
            separator = "&" if "?" in path else "?"
            async with session.request(method, f"{base}{path}{separator}api-version=7.6", data=data,
                                       headers=signed) as response:  # fmt: skip
                body = await response.json()
            assert 400 <= response.status < 500 and body["error"]["innererror"]["code"], (path, response.status, body)
        # A token for another audience is refused as on gRPC, with the challenge again.
        management = await doors.contoso.admin_client.token_for(audiences.MANAGEMENT)
        async with session.get(f"{base}/keys?api-version=2025-07-01",
                               headers=host | {"Authorization": f"Bearer {management}"}) as response:  # fmt: skip
            assert response.status == 401 and "WWW-Authenticate" in response.headers
        # A host that is no vault of this service.
        async with session.get(
            f"{base}/keys?api-version=2025-07-01",
            headers={"Host": "elsewhere.example", "Authorization": f"Bearer {token}"},
        ) as response:
            assert response.status == 400


def readme_block() -> str:
    found = re.search(r"<!-- azure-sdk -->\n```python\n(.*?)\n```", README.read_text(), re.S)
    assert found, "the README has no azure-sdk block"
    return found.group(1)


async def test_the_readme_block_runs_as_written(doors: Doors, tmp_path: Path) -> None:
    """The README's example, in a directory laid out as `cmk up` leaves it (.cmk/tls/ca.crt),
    with only where the doors listen told by the variables it reads."""
    (tmp_path / ".cmk" / "tls").mkdir(parents=True)
    (tmp_path / ".cmk" / "tls" / "ca.crt").symlink_to(doors.ca)
    script = tmp_path / "example.py"
    script.write_text(readme_block())
    creds = doors.contoso.admin_credentials
    env = {k: v for k, v in os.environ.items() if not k.startswith("CMK_")} | {
        "AZURE_TENANT_ID": creds.tenant_id, "AZURE_CLIENT_ID": creds.client_id,
        "AZURE_CLIENT_SECRET": creds.client_secret, "VAULT_NAME": doors.vault,
        "CMK_IDENTITY_HTTPS": doors.authority, "CMK_KEYVAULT_DOOR": doors.door,
    }  # fmt: skip
    run = await asyncio.create_subprocess_exec(
        sys.executable, str(script), cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(run.communicate(), timeout=120)
    assert run.returncode == 0, err.decode()[-3000:]
    key_id, size = out.decode().split()
    assert key_id.startswith(f"https://{doors.vault}.vault.azure.net/keys/sdk-cmk/") and size == "32"
    assert (await doors.vaults.get_key(key_id)).key_id == key_id  # the same key, over gRPC


async def test_a_caller_without_rights_gets_a_missing_vaults_answer(doors: Doors) -> None:
    """The existence rule at this door: another tenant's admin, signed in for the vault's
    audience, learns nothing of Contoso's vault or key that a vault that does not exist would
    not tell it."""
    keys = doors.key_client()
    made = await asyncio.to_thread(keys.create_rsa_key, "secret-name", size=2048)
    fabrikam = await make_tenant(doors.operator, doors.identity_channel, SystemClock(), "Fabrikam")
    token = await fabrikam.admin_client.token_for(audiences.VAULT)
    trust = ssl.create_default_context(cafile=str(doors.ca))
    answers = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trust)) as session:
        for vault, path in ((doors.vault, f"/keys/secret-name/{made.properties.version}"),
                            (doors.vault, "/keys/secret-name"), ("nosuchvault", "/keys/secret-name")):  # fmt: skip
            headers = {"Host": f"{vault}.vault.azure.net", "Authorization": f"Bearer {token}"}
            async with session.get(f"https://{doors.door}{path}?api-version=7.6", headers=headers) as response:
                body = await response.json()
            answers.append((response.status, body["error"]["code"], body["error"]["innererror"]["code"]))
    assert answers[0] == answers[1] == answers[2], answers
    assert answers[0] == (404, "VaultNotFound", "VAULT_NOT_FOUND")
