"""The front door: CmkClient (asyncio) and SyncCmkClient (scripts), against a real trio;
the error classes come from the client package."""

from __future__ import annotations

import asyncio
import collections.abc
import inspect
import itertools
import typing
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
    SyncIdentityClient,
    SyncKeyVaultClient,
    SyncSpeechClient,
    deadline,
)
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


def test_the_synchronous_clients_have_the_asynchronous_methods_and_their_types() -> None:
    """The generated classes (scripts/gen_sync_clients.py; `dev.py check` holds them fresh)
    have each public method of their asynchronous twin, with the same parameters, defaults,
    types and documentation: a coroutine's result type as it is, an async iterator's items
    as a plain iterator's."""
    pairs = (
        (IdentityClient, SyncIdentityClient),
        (KeyVaultClient, SyncKeyVaultClient),
        (SpeechClient, SyncSpeechClient),
    )
    for async_class, sync_class in pairs:
        wanted = {name for name, member in inspect.getmembers(async_class)
                  if not name.startswith("_") and inspect.isfunction(member)}  # fmt: skip
        sources = {n for n, kind in vars(async_class).get("__annotations__", {}).items() if kind == "TokenSource"}
        made = {name for name, member in inspect.getmembers(sync_class) if not name.startswith("_")}
        assert wanted and wanted | sources == made, async_class  # (a token source becomes a blocking method)
        for name in wanted:
            original, twin = getattr(async_class, name), getattr(sync_class, name)
            where = f"{async_class.__name__}.{name}"
            assert [(p.name, p.kind, p.default) for p in inspect.signature(original).parameters.values()] == [
                (p.name, p.kind, p.default) for p in inspect.signature(twin).parameters.values()
            ], where
            hints, twin_hints = typing.get_type_hints(original), typing.get_type_hints(twin)
            if inspect.isasyncgenfunction(original):
                assert inspect.isgeneratorfunction(twin), where
                stream, items = hints.pop("return"), twin_hints.pop("return")
                assert typing.get_origin(stream) is collections.abc.AsyncIterator, where
                assert typing.get_origin(items) is collections.abc.Iterator, where
                assert typing.get_args(stream) == typing.get_args(items), where
            assert hints == twin_hints, where
            assert twin.__doc__ == original.__doc__, where


def test_sign_in_one_way_and_name_the_services_you_use() -> None:
    with pytest.raises(ValueError, match="one of the two"):
        CmkClient.connect("127.0.0.1:1")
    assert "NotFound" in cmk_client.__all__ and cmk_client.ServiceError.__name__ == "ServiceError"
    with pytest.raises(AttributeError):
        cmk_client.Nothing  # noqa: B018


def test_the_synchronous_identity_client_gives_tokens_as_the_asynchronous_does():
    """Found by a review: token_for became a token source (an attribute), and the generated
    synchronous client, made from the methods, had lost it."""
    from cmk_trio.client.sync_identity import SyncIdentityClient

    assert callable(getattr(SyncIdentityClient, "token_for", None))
