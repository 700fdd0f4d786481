"""The pytest plugin, used from a test file outside the package, as another project would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

OTHER_PROJECTS_TEST = """
import asyncio

from cmk_trio.client.channel import open_channel
from cmk_trio.client.identity import IdentityClient


def test_my_service_gets_a_token_from_the_trio(cmk_trio):
    async def scenario():
        channel = open_channel(cmk_trio.endpoints["identity"])
        try:
            operator = IdentityClient(channel, cmk_trio.operator_credentials)
            tenant = await operator.create_tenant("My project's tenant")
            return tenant.tenant_id, (await operator.list_tenants()).tenants
        finally:
            await channel.close()

    tenant_id, tenants = asyncio.run(scenario())
    assert tenant_id in {t.tenant_id for t in tenants}
    assert set(cmk_trio.endpoints) == {"identity", "keyvault", "speech"}
"""


def test_another_project_uses_the_trio_fixture(tmp_path: Path):
    (tmp_path / "test_other_project.py").write_text(OTHER_PROJECTS_TEST)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CMK_", "PYTEST"))}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_other_project.py"],
        cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


FIXTURES_TEST = """
import pytest

SEEN = []


@pytest.mark.parametrize("run", [1, 2])
def test_each_test_gets_a_tenant_of_its_own(cmk_trio, cmk_tenant, run):
    assert cmk_trio.tls is not None  # --cmk-mtls: the fixtures' clients carry the client certificate
    assert cmk_tenant.tenant_id not in SEEN
    SEEN.append(cmk_tenant.tenant_id)
    with cmk_tenant.sync_client() as cmk:
        vault = f"kv-{cmk_tenant.tenant_id[:8]}"
        cmk.vault.create_vault(vault, cmk_tenant.subscription_id, "rg", "westeurope")
        cmk.vault.set_access_policy(vault, cmk_tenant.tenant_id, cmk_tenant.admin_object_id,
                                    ["get", "create", "wrapKey", "unwrapKey"])
        key = cmk.vault.create_key(vault, "cmk")
        wrapped = cmk.vault.wrap(key.key_id, b"k" * 32)
        assert cmk.vault.unwrap(key.key_id, wrapped.ciphertext).plaintext == b"k" * 32
        assert [v.vault_name for v in cmk.vault.list_vaults(cmk_tenant.subscription_id).vaults] == [vault]
        # --cmk-auto-approve: CMK requests are approved at once.
        assert cmk.speech.request_approval(cmk_tenant.subscription_id, "BYOK").state == 2  # APPROVED


def test_the_clock_fixture_moves_all_three_services(cmk_tenant, cmk_clock):
    with cmk_tenant.sync_client() as cmk:
        cmk.vault.create_vault("clocked", cmk_tenant.subscription_id, "rg", "westeurope")
        cmk_clock.advance(days=1)
        # The token this client holds (issued a day ago on the services' clocks) has expired
        # there, not on ours: told so (TOKEN_EXPIRED), the client gets a new one and calls again.
        assert cmk.vault.get_vault("clocked").vault_name == "clocked"
        assert cmk.identity.get_subscription(cmk_tenant.subscription_id).tenant_id == cmk_tenant.tenant_id
    with pytest.raises(ValueError):
        cmk_clock.advance(0)


def test_microsofts_sdks_reach_the_trio_both_ways(cmk_tenant, cmk_azure, monkeypatch):
    import os

    from azure.identity import ClientSecretCredential
    from azure.keyvault.keys import KeyClient
    from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm

    vault = f"az-{cmk_tenant.tenant_id[:8]}"
    with cmk_tenant.sync_client() as cmk:
        cmk.vault.create_vault(vault, cmk_tenant.subscription_id, "rg", "westeurope")
        cmk.vault.set_access_policy(vault, cmk_tenant.tenant_id, cmk_tenant.admin_object_id,
                                    ["get", "create", "wrapKey", "unwrapKey"])
    # Explicit endpoints: the credential and a transport per client.
    credential = cmk_azure.credential()
    keys = KeyClient(cmk_azure.vault_url(vault), credential, transport=cmk_azure.transport())
    key = keys.create_rsa_key("sdk", size=2048)
    crypto = CryptographyClient(key, credential, transport=cmk_azure.transport())
    wrapped = crypto.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, b"d" * 32)  # locally, with the public key
    assert crypto.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key).key == b"d" * 32
    with cmk_tenant.sync_client() as cmk:  # the same key, over gRPC
        assert cmk.vault.get_key(key.id).key_id == key.id
    # Azure's defaults, nothing of ours named: the environment only.
    for name, value in cmk_azure.environment.items():
        monkeypatch.setenv(name, value)
    plain = ClientSecretCredential(os.environ["AZURE_TENANT_ID"], os.environ["AZURE_CLIENT_ID"],
                                   os.environ["AZURE_CLIENT_SECRET"])
    assert KeyClient(f"https://{vault}.vault.azure.net", plain).get_key("sdk").id == key.id


async def test_an_async_test_uses_the_front_door(cmk_tenant):
    async with cmk_tenant.connect() as cmk:
        subscription = await cmk.identity.get_subscription(cmk_tenant.subscription_id)
        assert subscription.tenant_id == cmk_tenant.tenant_id
"""


def test_the_tenant_and_clock_fixtures_and_the_options(tmp_path: Path):
    (tmp_path / "test_fixtures.py").write_text(FIXTURES_TEST)
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_mode = auto\ncmk_auto_approve = true\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CMK_", "PYTEST"))}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--cmk-mtls", "test_fixtures.py"],
        cwd=tmp_path, capture_output=True, text=True, env=env, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 passed" in result.stdout
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--cmk-replicas", "2", "test_fixtures.py"],
        cwd=tmp_path, capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0 and "--cmk-replicas needs --cmk-database-url" in result.stdout + result.stderr


WITHOUT_TLS_TEST = """
import pytest


def test_the_sdks_need_the_doors_over_https(cmk_trio):
    with pytest.raises(RuntimeError, match="--cmk-mtls"):
        cmk_trio.azure()
"""


def test_the_azure_helper_says_what_setting_it_needs(tmp_path: Path):
    """Without --cmk-mtls the doors are plain HTTP, which the SDKs refuse for bearer tokens:
    the helper says which setting it needs instead of handing over what cannot work."""
    (tmp_path / "test_without_tls.py").write_text(WITHOUT_TLS_TEST)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CMK_", "PYTEST"))}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_without_tls.py"],
        cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
