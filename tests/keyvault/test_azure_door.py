"""The key vault's Azure data plane, tried with Microsoft's SDKs unmodified: azure-identity
signs in at identity's door, azure-keyvault-keys' KeyClient and CryptographyClient reach
https://{vault}.vault.azure.net through the transport we ship for explicit endpoints
(cmk_trio.client.azure), and the same engine decides: a key made over HTTPS is the key the
gRPC API sees, and a policy removed over gRPC refuses the SDK's next unwrap with Key Vault's
403. The door's own wire (the challenge, api-version, errors) is checked with a plain client."""

from __future__ import annotations

import asyncio
import os
import re
import ssl
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.identity import ClientSecretCredential
from azure.identity.aio import ClientSecretCredential as AsyncClientSecretCredential
from azure.keyvault.keys import KeyClient
from azure.keyvault.keys.aio import KeyClient as AsyncKeyClient
from azure.keyvault.keys.crypto import CryptographyClient, EncryptionAlgorithm, KeyWrapAlgorithm
from azure.keyvault.keys.crypto.aio import CryptographyClient as AsyncCryptographyClient

from cmk_trio.client.azure import door_aio_transport, door_transport
from cmk_trio.client.identity import IdentityClient
from cmk_trio.client.keyvault import KeyVaultClient
from cmk_trio.launcher.trio import RunningTrio, start_trio
from cmk_trio.proto.identity.v1 import resources_pb2 as idres
from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.channels import ChannelTls, open_channel
from cmk_trio.rpckit.clock import SystemClock
from cmk_trio.rpckit.devca import DevPki
from tests.conftest import operator_credentials
from tests.identity.helpers import TenantFixture, make_tenant

README = Path(__file__).resolve().parents[2] / "README.md"
PERMISSIONS = ["get", "list", "create", "update", "delete", "recover", "purge", "wrapKey", "unwrapKey",
               "encrypt", "decrypt", "rotate", "import"]  # fmt: skip


@dataclass
class Doors:
    trio: RunningTrio
    ca: Path
    contoso: TenantFixture
    vaults: KeyVaultClient
    credential: ClientSecretCredential
    door: str
    vault: str
    """Named anew for each test: the SDKs remember each vault's challenge (its tenant) for the
    life of the process, as a real vault's name is global and its tenant never changes."""

    def key_client(self) -> KeyClient:
        return KeyClient(f"https://{self.vault}.vault.azure.net", self.credential,
                         transport=door_transport(self.door, ca=self.ca))  # fmt: skip

    def crypto_client(self, key_id: str) -> CryptographyClient:
        return CryptographyClient(key_id, self.credential, transport=door_transport(self.door, ca=self.ca))


@pytest.fixture
async def doors(tmp_path: Path) -> AsyncIterator[Doors]:
    trio = await start_trio(tmp_path / "data", mutual_tls=True, env={"CMK_SECRET_HASH_COST": "10"})
    try:
        assert trio.tls_dir is not None and trio.identity.http_url and trio.keyvault.http_url
        pki = DevPki(trio.tls_dir)
        cli = pki.identity("cli")
        tls = ChannelTls(pki.ca_file, cli.cert_file, cli.key_file)
        identity_channel = open_channel(trio.endpoints["identity"], tls)
        vault_channel = open_channel(trio.endpoints["keyvault"], tls)
        try:
            clock = SystemClock()
            operator = IdentityClient(identity_channel, operator_credentials(trio.identity), clock=clock)
            contoso = await make_tenant(operator, identity_channel, clock, "Contoso")
            await operator.create_role_assignment(contoso.admin.object_id, idres.OWNER,
                                                  f"/subscriptions/{contoso.subscription_id}")  # fmt: skip
            vaults = KeyVaultClient(vault_channel, contoso.admin_client.token_for)
            vault = f"door-{uuid.uuid4().hex[:12]}"
            await vaults.create_vault(vault, contoso.subscription_id, "rg", "westeurope")
            await vaults.set_access_policy(vault, contoso.tenant_id, contoso.admin.object_id, PERMISSIONS)
            creds = contoso.admin_credentials
            credential = ClientSecretCredential(
                creds.tenant_id, creds.client_id, creds.client_secret, authority=trio.identity.http_url,
                disable_instance_discovery=True, connection_verify=str(pki.ca_file),
            )  # fmt: skip
            door = trio.keyvault.http_url.removeprefix("https://")
            yield Doors(trio, pki.ca_file, contoso, vaults, credential, door, vault)
        finally:
            await identity_channel.close()
            await vault_channel.close()
    finally:
        await trio.stop()


async def test_key_client_and_cryptography_client_on_the_same_engine(doors: Doors) -> None:
    keys = doors.key_client()
    made = await asyncio.to_thread(keys.create_rsa_key, "cmk", size=2048, tags={"team": "speech"})
    assert made.id.startswith(f"https://{doors.vault}.vault.azure.net/keys/cmk/")
    assert made.key_type == "RSA" and made.properties.enabled and made.properties.tags == {"team": "speech"}
    assert made.properties.recovery_level == "Recoverable+Purgeable"

    # The same key through the gRPC API.
    seen = await doors.vaults.get_key(made.id)
    assert seen.version == made.properties.version

    got = await asyncio.to_thread(keys.get_key, "cmk")
    assert got.id == made.id and got.key.n == made.key.n  # type: ignore[attr-defined]  # JsonWebKey sets its fields at run time
    listed = await asyncio.to_thread(lambda: [k.name for k in keys.list_properties_of_keys()])
    assert listed == ["cmk"]
    updated = await asyncio.to_thread(keys.update_key_properties, "cmk", made.properties.version,
                                      tags={"team": "speech", "cmk": "yes"})  # fmt: skip
    assert updated.properties.tags == {"team": "speech", "cmk": "yes"}
    rotated = await asyncio.to_thread(keys.rotate_key, "cmk")
    versions = await asyncio.to_thread(lambda: {k.version for k in keys.list_properties_of_key_versions("cmk")})
    assert versions == {made.properties.version, rotated.properties.version}

    # CryptographyClient wraps with the public key it fetched, and asks the vault to unwrap.
    crypto = doors.crypto_client(made.id)
    wrapped = await asyncio.to_thread(crypto.wrap_key, KeyWrapAlgorithm.rsa_oaep_256, b"k" * 32)
    unwrapped = await asyncio.to_thread(crypto.unwrap_key, KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key)
    assert unwrapped.key == b"k" * 32
    sealed = await asyncio.to_thread(crypto.encrypt, EncryptionAlgorithm.rsa_oaep, b"hello")
    opened = await asyncio.to_thread(crypto.decrypt, EncryptionAlgorithm.rsa_oaep, sealed.ciphertext)
    assert opened.plaintext == b"hello"
    # What gRPC wrapped, the SDK unwraps.
    by_grpc = await doors.vaults.wrap(made.id, b"g" * 32)
    back = await asyncio.to_thread(crypto.unwrap_key, KeyWrapAlgorithm.rsa_oaep_256, by_grpc.ciphertext)
    assert back.key == b"g" * 32

    # The policy removed over gRPC: the SDK's next unwrap is Key Vault's 403; restored, allowed.
    contoso = doors.contoso
    await doors.vaults.remove_access_policy(doors.vault, contoso.admin.object_id)
    with pytest.raises(HttpResponseError) as refused:
        await asyncio.to_thread(crypto.unwrap_key, KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key)
    assert refused.value.status_code == 403 and refused.value.error is not None
    assert refused.value.error.code == "Forbidden"
    await doors.vaults.set_access_policy(doors.vault, contoso.tenant_id, contoso.admin.object_id, PERMISSIONS)
    again = await asyncio.to_thread(crypto.unwrap_key, KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key)
    assert again.key == b"k" * 32

    # Soft-delete, as the SDK's pollers read it, then recovery and purge.
    poller = await asyncio.to_thread(keys.begin_delete_key, "cmk")
    deleted = await asyncio.to_thread(poller.result)
    assert deleted.recovery_id == f"https://{doors.vault}.vault.azure.net/deletedkeys/cmk"
    with pytest.raises(ResourceNotFoundError):
        await asyncio.to_thread(keys.get_key, "cmk")
    assert await asyncio.to_thread(lambda: [d.name for d in keys.list_deleted_keys()]) == ["cmk"]
    recovered = await asyncio.to_thread(lambda: keys.begin_recover_deleted_key("cmk").result())
    assert recovered.name == "cmk"
    await asyncio.to_thread(lambda: keys.begin_delete_key("cmk").result())
    await asyncio.to_thread(keys.purge_deleted_key, "cmk")
    with pytest.raises(ResourceNotFoundError):
        await asyncio.to_thread(keys.get_deleted_key, "cmk")


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
            ("GET", "/secrets?api-version=2025-07-01", None, 404, "NotFound", "HTTP_PATH_UNKNOWN"),
        ]  # fmt: skip
        for method, path, data, status, code, reason in cases:
            async with session.request(method, f"{base}{path}", data=data, headers=signed) as response:
                body = await response.json()
            assert (response.status, body["error"]["code"], body["error"]["innererror"]["code"]) == (
                status, code, reason,
            ), (path, body)  # fmt: skip
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


async def test_the_asynchronous_clients_too(doors: Doors) -> None:
    """azure.identity.aio and azure.keyvault.keys.aio, on the aiohttp transport we ship."""
    creds = doors.contoso.admin_credentials
    vault_url = f"https://{doors.vault}.vault.azure.net"
    credential = AsyncClientSecretCredential(
        creds.tenant_id, creds.client_id, creds.client_secret, authority=doors.trio.identity.http_url,
        disable_instance_discovery=True, connection_verify=str(doors.ca),
    )  # fmt: skip
    async with (
        credential,
        AsyncKeyClient(vault_url, credential, transport=door_aio_transport(doors.door, ca=doors.ca)) as keys,
    ):
        made = await keys.create_rsa_key("async-cmk", size=3072)
        assert made.key_type == "RSA" and made.properties.version
        transport = door_aio_transport(doors.door, ca=doors.ca)
        async with AsyncCryptographyClient(made.id, credential, transport=transport) as crypto:
            wrapped = await crypto.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, b"a" * 32)
            assert (await crypto.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key)).key == b"a" * 32
        assert [k.name async for k in keys.list_properties_of_keys()] == ["async-cmk"]


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
        "CMK_IDENTITY_HTTPS": str(doors.trio.identity.http_url), "CMK_KEYVAULT_DOOR": doors.door,
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
    clock = SystemClock()
    pki = DevPki(doors.trio.tls_dir or Path())
    cli = pki.identity("cli")
    channel = open_channel(doors.trio.endpoints["identity"], ChannelTls(pki.ca_file, cli.cert_file, cli.key_file))
    try:
        operator = IdentityClient(channel, operator_credentials(doors.trio.identity), clock=clock)
        fabrikam = await make_tenant(operator, channel, clock, "Fabrikam")
        token = await fabrikam.admin_client.token_for(audiences.VAULT)
    finally:
        await channel.close()
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


async def test_code_written_for_azure_runs_with_its_defaults_through_the_proxy(doors: Doors, monkeypatch) -> None:
    """Azure's defaults untouched: no authority, no transport, no endpoint of ours in the code.
    HTTPS_PROXY (the trio's CONNECT proxy) and the CA are all that is set, as cmk up says."""
    assert doors.trio.proxy is not None
    monkeypatch.setenv("HTTPS_PROXY", doors.trio.proxy.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(doors.ca))
    creds = doors.contoso.admin_credentials

    def as_written_for_azure() -> tuple[str, bytes]:
        credential = ClientSecretCredential(creds.tenant_id, creds.client_id, creds.client_secret)
        keys = KeyClient(f"https://{doors.vault}.vault.azure.net", credential)
        key = keys.create_rsa_key("by-defaults", size=2048)
        crypto = CryptographyClient(key, credential)
        wrapped = crypto.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, b"d" * 32)
        return key.id, crypto.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key).key

    key_id, unwrapped = await asyncio.to_thread(as_written_for_azure)
    assert unwrapped == b"d" * 32
    assert (await doors.vaults.get_key(key_id)).key_id == key_id
    assert doors.trio.proxy.count.refused == 0
