"""The client retries UNAVAILABLE on idempotent calls only, and turns ErrorInfo into typed
errors carrying the reason; against a real server that fails on purpose."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from cmk_trio.client.identity import IdentityClient, call, is_idempotent
from cmk_trio.rpckit import errors
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.server import start_server
from cmk_trio.rpckit.status import ErrorInterceptor

SERVICE = "cmk.test.v1.Flaky"


class Flaky:
    """Fails with UNAVAILABLE the first `failures` times each method is called."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: dict[str, int] = {}

    def handler(self, name: str):
        async def behave(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            self.calls[name] = self.calls.get(name, 0) + 1
            if self.calls[name] <= self.failures:
                raise errors.Unavailable(Reason.DEPENDENCY_UNAVAILABLE, "try again")
            return b"ok"

        return grpc.unary_unary_rpc_method_handler(behave)


@pytest.fixture
async def flaky() -> AsyncIterator[tuple[Flaky, grpc.aio.Channel]]:
    server_state = Flaky(failures=2)
    handlers = {name: server_state.handler(name) for name in ("GetThing", "CreateThing")}

    def register(server: grpc.aio.Server) -> None:
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))

    running = await start_server(register=register, service_names=[SERVICE], interceptors=[ErrorInterceptor("t")])
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        yield server_state, channel
    finally:
        await channel.close()
        await running.stop(0)


async def test_an_idempotent_call_is_retried_through_unavailable(flaky):
    state, channel = flaky
    assert await call(channel.unary_unary(f"/{SERVICE}/GetThing"), b"", idempotent=True) == b"ok"
    assert state.calls["GetThing"] == 3


async def test_a_call_that_changes_state_is_never_retried(flaky):
    state, channel = flaky
    with pytest.raises(errors.Unavailable) as caught:
        await call(channel.unary_unary(f"/{SERVICE}/CreateThing"), b"")
    assert caught.value.reason is Reason.DEPENDENCY_UNAVAILABLE
    assert state.calls["CreateThing"] == 1


async def test_retries_give_up_with_the_typed_error(flaky):
    state, channel = flaky
    state.failures = 10
    with pytest.raises(errors.Unavailable):
        await call(channel.unary_unary(f"/{SERVICE}/GetThing"), b"", idempotent=True)
    assert state.calls["GetThing"] == 4


def test_which_methods_are_idempotent():
    assert all(is_idempotent(n) for n in ("GetTenant", "ListVaults", "CheckAccess", "IssueToken", "UnwrapKey"))
    assert not any(is_idempotent(n) for n in ("CreateTenant", "DeletePrincipal", "SetEncryption", "RotateKey"))


async def test_clients_mark_exactly_their_read_methods():
    channel = grpc.aio.insecure_channel("127.0.0.1:1")
    client = IdentityClient(channel)
    assert id(client.directory.GetTenant) in client._safe and id(client.directory.CreateTenant) not in client._safe
    await channel.close()


async def test_a_service_to_service_client_leaves_retrying_to_its_own_callers_client():
    """One retry layer: a client made with retries=False (a service calling the vault or the
    directory) tries once, so its caller's retries are not multiplied by its own."""
    from cmk_trio.client.keyvault import KeyVaultClient

    vault = Flaky(failures=100)
    handlers = {"GetKey": vault.handler("GetKey")}

    def register(server: grpc.aio.Server) -> None:
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("cmk.keyvault.v1.KeyService", handlers),))

    running = await start_server(register=register, service_names=[SERVICE], interceptors=[ErrorInterceptor("t")])
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")

    async def token(_audience: str) -> str:
        return "a-token"

    try:
        for retries, attempts in ((False, 1), (True, 4)):
            vault.calls.clear()
            with pytest.raises(errors.Unavailable):
                await KeyVaultClient(channel, token, retries=retries).get_key("https://kv1.vault.azure.net/keys/k")
            assert vault.calls["GetKey"] == attempts, retries
    finally:
        await channel.close()
        await running.stop(0)
