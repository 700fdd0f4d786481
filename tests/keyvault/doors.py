"""A real trio with its HTTPS doors and proxy, a tenant (Contoso) whose administrator owns a
fresh vault, and Microsoft's SDK clients for it, named either way the README offers:

- "explicit": identity's door as the authority, and the transport we ship
  (cmk_trio.client.azure) that sends https://{vault}.vault.azure.net to the key vault's door;
- "defaults": nothing of ours in the code (no authority, no transport), only what `cmk up`
  says to export: HTTPS_PROXY (the trio's CONNECT proxy), NO_PROXY and the CA.

Used by the door's own tests (tests/keyvault/test_azure_door.py) and the Python witnesses
(tests/witness/test_python_sdks.py) on a trio in this process (`open_doors`), and by the
container suite on compose's published ports (`furnish`, from tests/containers/stack.py);
`walk` is the witness's short walk that the container suite takes.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from azure.core.exceptions import HttpResponseError
from azure.identity import ClientSecretCredential
from azure.keyvault.keys import KeyClient, KeyVaultKey
from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm
from azure.keyvault.secrets import SecretClient

from cmk_trio.client.azure import door_transport
from cmk_trio.client.identity import ClientCredentials, IdentityClient
from cmk_trio.client.keyvault import KeyVaultClient
from cmk_trio.launcher.trio import RunningTrio, start_trio
from cmk_trio.proto.identity.v1 import resources_pb2 as idres
from cmk_trio.rpckit.channels import ChannelTls, open_channel
from cmk_trio.rpckit.clock import SystemClock
from cmk_trio.rpckit.devca import DevPki
from tests.conftest import operator_credentials
from tests.identity.helpers import TenantFixture, make_principal, make_tenant

PERMISSIONS = ["get", "list", "create", "update", "delete", "recover", "purge", "wrapKey", "unwrapKey",
               "encrypt", "decrypt", "rotate", "import", "sign", "verify", "backup", "restore", "getrotationpolicy",
               "setrotationpolicy"]  # fmt: skip
SECRET_PERMISSIONS = ["get", "list", "set", "delete", "recover", "purge", "backup", "restore"]
WAYS = ("explicit", "defaults")


@dataclass
class Doors:
    ca: Path
    contoso: TenantFixture
    operator: IdentityClient
    identity_channel: grpc.aio.Channel
    vaults: KeyVaultClient
    authority: str
    """Identity's door, https://host:port: the authority the explicit way signs in at."""
    door: str
    """The key vault's door, host:port."""
    proxy: str | None
    """The CONNECT proxy (what HTTPS_PROXY is set to), when there is one."""
    vault: str
    """Named anew for each trio: the SDKs remember each vault's challenge (its tenant) for the
    life of the process, as a real vault's name is global and its tenant never changes."""
    trio: RunningTrio | None = None
    """The trio, when it runs in this process."""
    arm: str | None = None
    """Azure Resource Manager's door, https://host:port, when there is one."""
    way: str = "explicit"

    @property
    def vault_url(self) -> str:
        return f"https://{self.vault}.vault.azure.net"

    @property
    def running(self) -> RunningTrio:
        """The trio in this process (for tests that read its config or its proxy's counts)."""
        if self.trio is None:
            raise LookupError("these doors are a stack's, not a trio in this process")
        return self.trio

    def use(self, way: str, monkeypatch: pytest.MonkeyPatch) -> Doors:
        """These doors named `way`: for "defaults", the environment `cmk up`'s banner exports."""
        if way == "defaults":
            assert self.proxy is not None
            monkeypatch.setenv("HTTPS_PROXY", self.proxy)
            monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
            monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(self.ca))  # (requests, under the sync clients; the
            # async ones run in a program of their own: aiohttp reads SSL_CERT_FILE when imported)
        self.way = way
        return self

    # --- credentials ------------------------------------------------------------------

    def credential(self, creds: ClientCredentials | None = None) -> ClientSecretCredential:
        c = creds or self.contoso.admin_credentials
        if self.way == "defaults":
            return ClientSecretCredential(c.tenant_id, c.client_id, c.client_secret)
        return ClientSecretCredential(c.tenant_id, c.client_id, c.client_secret, authority=self.authority,
                                      disable_instance_discovery=True, connection_verify=str(self.ca))  # fmt: skip

    # --- clients ----------------------------------------------------------------------

    def _sync(self) -> dict[str, object]:
        return {"transport": door_transport(self.door, ca=self.ca)} if self.way == "explicit" else {}

    def key_client(self, credential: ClientSecretCredential | None = None) -> KeyClient:
        return KeyClient(self.vault_url, credential or self.credential(), **self._sync())

    def crypto_client(
        self, key: str | KeyVaultKey, credential: ClientSecretCredential | None = None
    ) -> CryptographyClient:
        return CryptographyClient(key, credential or self.credential(), **self._sync())

    def arm_options(self) -> dict[str, Any]:
        """What a management client is given: nothing under Azure's defaults, else ARM's door
        as its base URL and the CA."""
        if self.way == "defaults":
            return {}
        assert self.arm is not None
        return {"base_url": self.arm, "connection_verify": str(self.ca),
                "credential_scopes": ["https://management.azure.com/.default"]}  # fmt: skip

    def secret_client(self) -> SecretClient:
        return SecretClient(self.vault_url, self.credential(), **self._sync())

    async def principal(self, name: str, permissions: list[str]) -> tuple[idres.Principal, ClientCredentials]:
        """Another principal of Contoso, with `permissions` on keys in the vault's policy."""
        made, creds, _ = await make_principal(self.operator, self.identity_channel, SystemClock(),
                                              self.contoso.tenant_id, name)  # fmt: skip
        await self.vaults.set_access_policy(self.vault, self.contoso.tenant_id, made.object_id, permissions)
        return made, creds


@asynccontextmanager
async def open_doors(tmp_path: Path) -> AsyncIterator[Doors]:
    """A trio with its doors and proxy; Contoso's administrator holds every permission on a
    vault of its own."""
    trio = await start_trio(tmp_path / "data", mutual_tls=True, env={"CMK_SECRET_HASH_COST": "10"})
    try:
        assert trio.tls_dir is not None and trio.identity.http_url and trio.keyvault.http_url
        pki = DevPki(trio.tls_dir)
        cli = pki.identity("cli")
        async with furnish(
            ChannelTls(pki.ca_file, cli.cert_file, cli.key_file), trio.endpoints, operator_credentials(trio.identity),
            authority=trio.identity.http_url, door=trio.keyvault.http_url.removeprefix("https://"),
            proxy=trio.proxy.url if trio.proxy is not None else None,
        ) as doors:  # fmt: skip
            doors.trio = trio
            doors.arm = trio.arm.url if trio.arm is not None else None
            yield doors
    finally:
        await trio.stop()


@asynccontextmanager
async def furnish(
    tls: ChannelTls, endpoints: dict[str, str], operator_creds: ClientCredentials, *, authority: str, door: str,
    proxy: str | None,
) -> AsyncIterator[Doors]:  # fmt: skip
    """The doors of a trio that runs anywhere (in this process, or in containers): a tenant,
    Contoso, made over gRPC as the operator, whose administrator owns a new vault and holds
    every permission on it."""
    identity_channel = open_channel(endpoints["identity"], tls)
    vault_channel = open_channel(endpoints["keyvault"], tls)
    try:
        clock = SystemClock()
        operator = IdentityClient(identity_channel, operator_creds, clock=clock)
        contoso = await make_tenant(operator, identity_channel, clock, "Contoso")
        await operator.create_role_assignment(contoso.admin.object_id, idres.OWNER,
                                              f"/subscriptions/{contoso.subscription_id}")  # fmt: skip
        vaults = KeyVaultClient(vault_channel, contoso.admin_client.token_for)
        vault = f"door-{uuid.uuid4().hex[:12]}"
        await vaults.create_vault(vault, contoso.subscription_id, "rg", "westeurope")
        await vaults.set_access_policy(vault, contoso.tenant_id, contoso.admin.object_id, PERMISSIONS,
                                       SECRET_PERMISSIONS)  # fmt: skip
        yield Doors(tls.ca_file, contoso, operator, identity_channel, vaults, authority, door, proxy, vault)
    finally:
        await identity_channel.close()
        await vault_channel.close()


async def walk(doors: Doors) -> dict[str, object]:
    """The witness's short walk with Microsoft's synchronous SDKs, named as `doors.way` says:
    sign in; make an RSA key (KeyClient); wrap a data key locally with its public key and have
    the vault unwrap it (CryptographyClient); set and get a secret (SecretClient); and the
    revocation scenario: the access policy removed over gRPC, so the next unwrap is Key Vault's
    403, then restored, so it is allowed again. What it saw, for the caller to judge."""
    credential = doors.credential()
    token = await asyncio.to_thread(credential.get_token, "https://vault.azure.net/.default")
    keys = doors.key_client(credential)
    made = await asyncio.to_thread(keys.create_rsa_key, f"walk-{doors.way}", size=2048)
    crypto = doors.crypto_client(made.id, credential)
    data_key = uuid.uuid4().bytes * 2
    wrapped = await asyncio.to_thread(crypto.wrap_key, KeyWrapAlgorithm.rsa_oaep_256, data_key)
    unwrapped = await asyncio.to_thread(crypto.unwrap_key, KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key)
    secrets = doors.secret_client()
    await asyncio.to_thread(secrets.set_secret, "walked", f"by the {doors.way} way")
    read_back = (await asyncio.to_thread(secrets.get_secret, "walked")).value
    contoso = doors.contoso
    await doors.vaults.remove_access_policy(doors.vault, contoso.admin.object_id)
    try:
        await asyncio.to_thread(crypto.unwrap_key, KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key)
        refused: object = None
    except HttpResponseError as exc:
        refused = (exc.status_code, exc.error.code if exc.error is not None else None)
    await doors.vaults.set_access_policy(doors.vault, contoso.tenant_id, contoso.admin.object_id, PERMISSIONS,
                                         SECRET_PERMISSIONS)  # fmt: skip
    again = await asyncio.to_thread(crypto.unwrap_key, KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key)
    return {
        "signed_in": bool(token.token),
        "key_id": made.id,
        "same_key_over_grpc": (await doors.vaults.get_key(made.id)).key_id == made.id,
        "unwrapped": unwrapped.key == data_key,
        "secret": read_back,
        "revoked": refused,
        "restored": again.key == data_key,
    }


def assert_walked(doors: Doors, seen: dict[str, object]) -> None:
    """What `walk` must have seen."""
    assert seen == {
        "signed_in": True, "key_id": seen["key_id"], "same_key_over_grpc": True, "unwrapped": True,
        "secret": f"by the {doors.way} way", "revoked": (403, "Forbidden"), "restored": True,
    }, seen  # fmt: skip
    assert str(seen["key_id"]).startswith(f"{doors.vault_url}/keys/walk-{doors.way}/")
