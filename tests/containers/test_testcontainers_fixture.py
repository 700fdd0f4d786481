"""The pytest plugin's `cmk_trio_container` fixture, used the way a consumer's suite uses it:
testcontainers starts our image (here through podman's Docker-compatible socket) and the test
talks to the trio inside over mutual TLS."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from cmk_trio.client.identity import ClientCredentials, IdentityClient
from cmk_trio.client.keyvault import KeyVaultClient
from cmk_trio.proto.identity.v1 import resources_pb2 as idres
from tests.containers import engine


@pytest.fixture(scope="session", autouse=True)  # before the session fixture it serves
def testcontainers_on_podman(container_engine: None) -> Iterator[None]:
    """What a consumer on a machine like this one sets: testcontainers on podman's socket,
    without its reaper (whose image cannot be pulled here; the fixture removes its container)."""
    settings = {"DOCKER_HOST": engine.engine_env()["DOCKER_HOST"], "TESTCONTAINERS_RYUK_DISABLED": "true",
                "CMK_TRIO_IMAGE": engine.IMAGE}  # fmt: skip
    before = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


async def test_the_fixture_hands_back_a_trio_in_a_container(cmk_trio_container: Any):
    trio = cmk_trio_container
    inspected = json.loads(engine.podman("inspect", trio.container_id))[0]
    assert inspected["Config"]["Image"].endswith("cmk-trio:latest")
    bindings = inspected["HostConfig"]["PortBindings"]
    published = {name: [b["HostIp"] for b in bound] for name, bound in bindings.items() if bound}
    assert published == {f"{port}/tcp": ["127.0.0.1"] for port in (50051, 50052, 50053)}, bindings
    channels = {name: trio.dial(name) for name in ("identity", "keyvault")}
    try:
        operator = IdentityClient(channels["identity"], trio.operator_credentials)
        tenant = await operator.create_tenant("Testcontainers")
        sub = await operator.create_subscription(tenant.tenant_id, "Fixture")
        owner = await operator.create_principal(tenant.tenant_id, idres.USER, "Tess", tenant_admin=True)
        await operator.create_role_assignment(owner.object_id, idres.OWNER, f"/subscriptions/{sub.subscription_id}")
        secret = await operator.add_client_secret(tenant.tenant_id, owner.object_id, "fixture")
        tess = IdentityClient(
            channels["identity"], ClientCredentials(tenant.tenant_id, secret.client_id, secret.secret_value)
        )
        vaults = KeyVaultClient(channels["keyvault"], tess.token_for)
        await vaults.create_vault("fixture-kv", sub.subscription_id, "rg", "westeurope", purge_protection=True)
        key = await vaults.create_key("fixture-kv", "k")
        wrapped = await vaults.wrap(key.key_id, b"d" * 32)
        assert (await vaults.unwrap(key.key_id, wrapped.ciphertext)).plaintext == b"d" * 32
    finally:
        for channel in channels.values():
            await channel.close()
