"""The front door: CmkClient (asyncio) and SyncCmkClient (scripts), against a real trio;
the error classes come from the client package."""

from __future__ import annotations

import asyncio
import inspect
import itertools
from pathlib import Path

import pytest

from cmk_trio import client as cmk_client
from cmk_trio.client import (
    ClientCredentials,
    CmkClient,
    IdentityClient,
    KeyVaultClient,
    NotFound,
    Reason,
    SpeechClient,
    SyncCmkClient,
    deadline,
)
from cmk_trio.client.front import blocking_class
from cmk_trio.launcher.trio import start_trio
from cmk_trio.proto.identity.v1 import resources_pb2 as idres
from tests.conftest import operator_credentials


async def test_one_front_door_for_the_three_services(tmp_path: Path) -> None:
    trio = await start_trio(tmp_path / "data", env={"CMK_SECRET_HASH_COST": "10"})
    endpoints = trio.endpoints
    try:
        async with CmkClient.connect(
            endpoints["identity"], keyvault=endpoints["keyvault"], speech=endpoints["speech"],
            credentials=operator_credentials(trio.identity),
        ) as operator:  # fmt: skip
            tenant = await operator.identity.create_tenant("Contoso")
            sub = await operator.identity.create_subscription(tenant.tenant_id, "Production")
            admin = await operator.identity.create_principal(tenant.tenant_id, idres.USER, "Alice", tenant_admin=True)
            secret = await operator.identity.add_client_secret(tenant.tenant_id, admin.object_id, "script")
            await operator.identity.create_role_assignment(
                admin.object_id, idres.OWNER, f"/subscriptions/{sub.subscription_id}"
            )
        alice = ClientCredentials(tenant.tenant_id, secret.client_id, secret.secret_value)

        async with CmkClient.connect(
            endpoints["identity"], keyvault=endpoints["keyvault"], speech=endpoints["speech"], credentials=alice,
            timeout=5,
        ) as cmk:  # fmt: skip
            await cmk.vault.create_vault("contoso-cmk", sub.subscription_id, "rg", "westeurope")
            await cmk.vault.set_access_policy("contoso-cmk", tenant.tenant_id, admin.object_id,
                                              ["get", "create", "wrapKey", "unwrapKey"])  # fmt: skip
            key = await cmk.vault.create_key("contoso-cmk", "cmk")
            with deadline(2):
                wrapped = await cmk.vault.wrap(key.key_id, b"k" * 32)
            assert (await cmk.vault.unwrap(key.key_id, wrapped.ciphertext)).plaintext == b"k" * 32
            await cmk.speech.request_approval(sub.subscription_id, "BYOK please")
            # The error classes a call raises, from the client package.
            with pytest.raises(NotFound) as missing:
                await cmk.vault.get_key("https://contoso-cmk.vault.azure.net/keys/nothing")
            assert missing.value.reason is Reason.KEY_NOT_FOUND

        # The same, blocking, for a script (here in a thread: this test's loop serves the trio).
        def script() -> tuple[bytes, int]:
            with SyncCmkClient.connect(
                endpoints["identity"], keyvault=endpoints["keyvault"], credentials=alice
            ) as sync:
                wrapped = sync.vault.wrap(key.key_id, b"s" * 32)
                with deadline(2):  # a deadline around a blocking call applies to it
                    plain = sync.vault.unwrap(key.key_id, wrapped.ciphertext).plaintext
                with pytest.raises(NotFound):
                    sync.vault.get_key("https://contoso-cmk.vault.azure.net/keys/nothing")
                with pytest.raises(ValueError, match="no speech endpoint"):
                    sync.speech  # noqa: B018 (the property refuses)
            # A stream is a plain iterator, closed when the loop over it stops.
            with SyncCmkClient.connect(endpoints["identity"], credentials=operator_credentials(trio.identity)) as op:
                events = list(itertools.islice(op.identity.watch_events(), 2))
            return plain, len(events)

        plain, events = await asyncio.to_thread(script)
        assert plain == b"s" * 32 and events == 2
    finally:
        await trio.stop()


def test_the_synchronous_clients_are_made_from_the_asynchronous_method_lists() -> None:
    for async_class in (IdentityClient, KeyVaultClient, SpeechClient):
        wanted = {
            name for name, member in inspect.getmembers(async_class)
            if not name.startswith("_") and (inspect.iscoroutinefunction(member) or inspect.isasyncgenfunction(member))
        }  # fmt: skip
        made = blocking_class(async_class)
        assert wanted and wanted <= set(dir(made)), async_class
        for name in wanted:  # the same signatures and documentation
            assert inspect.signature(getattr(made, name)) == inspect.signature(getattr(async_class, name)), name
            assert getattr(made, name).__doc__ == getattr(async_class, name).__doc__, name


def test_sign_in_one_way_and_name_the_services_you_use() -> None:
    with pytest.raises(ValueError, match="one of the two"):
        CmkClient.connect("127.0.0.1:1")
    assert "NotFound" in cmk_client.__all__ and cmk_client.ServiceError.__name__ == "ServiceError"
    with pytest.raises(AttributeError):
        cmk_client.Nothing  # noqa: B018
