"""Every RPC of the key vault leaves exactly one audit record, whatever its outcome: the
servicers open the audit trail themselves, so this walks the whole API to catch one that
forgot. A call whose token is refused is recorded by the authentication interceptor."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import message_factory

from cmk_trio.keyvault.server import KeyVaultServer
from cmk_trio.proto.keyvault.v1 import keyvault_service_pb2 as pb
from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.reasons import Reason
from tests.keyvault.conftest import Customer

SERVICES = ("VaultService", "KeyService", "AuditService")


def _methods() -> list[tuple[str, Any]]:
    found = []
    for service in SERVICES:
        for method in pb.DESCRIPTOR.services_by_name[service].methods:
            found.append((f"/{pb.DESCRIPTOR.package}.{service}/{method.name}", method))
    return found


async def _call(channel: grpc.aio.Channel, path: str, method: Any, token: str | None) -> grpc.StatusCode:
    """Make the call with an empty request; its status code (a refusal is expected and fine)."""
    request = message_factory.GetMessageClass(method.input_type)()
    output = message_factory.GetMessageClass(method.output_type)
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    kwargs: dict[str, Any] = {
        "request_serializer": type(request).SerializeToString,
        "response_deserializer": output.FromString,
    }
    try:
        if method.server_streaming:
            call = channel.unary_stream(path, **kwargs)(request, metadata=metadata, timeout=10)
            async for _ in call:  # a stream that opens is read no further
                break
            call.cancel()
        else:
            await channel.unary_unary(path, **kwargs)(request, metadata=metadata, timeout=10)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def _records(keyvault: KeyVaultServer) -> list[Any]:
    return await keyvault.audit.query(limit=100_000)


@pytest.mark.parametrize(("path", "method"), _methods(), ids=[p.rsplit("/", 1)[-1] for p, _ in _methods()])
async def test_the_call_is_audited_once_with_a_token(
    path: str, method: Any, keyvault: KeyVaultServer, kv_channel: grpc.aio.Channel, customer: Customer
):
    service = path.split("/")[1]
    audience = audiences.VAULT if service.endswith("KeyService") else audiences.MANAGEMENT
    token = await customer.tenant.admin_client.token_for(audience)
    before = len(await _records(keyvault))
    assert await _call(kv_channel, path, method, token) not in {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
    after = await _records(keyvault)
    assert [r.entry.operation for r in after[before:]] == [method.name]
    assert after[-1].entry.caller_object_id == customer.tenant.admin.object_id


async def test_a_call_without_a_token_is_audited_as_denied(keyvault: KeyVaultServer, kv_channel: grpc.aio.Channel):
    for path, method in _methods():
        before = len(await _records(keyvault))
        assert await _call(kv_channel, path, method, None) == grpc.StatusCode.UNAUTHENTICATED
        after = await _records(keyvault)
        assert [(r.entry.operation, r.entry.result, r.entry.reason) for r in after[before:]] == [
            (method.name, "denied", Reason.TOKEN_MISSING.value)
        ], path


async def test_a_validation_that_fails_unexpectedly_is_refused_and_audited_as_an_error(
    keyvault: KeyVaultServer, kv_channel: grpc.aio.Channel, customer: Customer, monkeypatch: pytest.MonkeyPatch
):
    token = await customer.tenant.admin_client.token_for(audiences.MANAGEMENT)

    async def broken(*_args: object, **_kwargs: object) -> None:
        raise OverflowError("a bug in validation")

    monkeypatch.setattr(keyvault.directory.validator, "validate", broken)
    path, method = next((p, m) for p, m in _methods() if m.name == "GetVault")
    before = len(await _records(keyvault))
    assert await _call(kv_channel, path, method, token) == grpc.StatusCode.INTERNAL
    after = await _records(keyvault)
    assert [(r.entry.operation, r.entry.result, r.entry.reason) for r in after[before:]] == [
        ("GetVault", "error", Reason.INTERNAL.value)
    ]
