"""Malformed input of every kind is refused with INVALID_ARGUMENT (UNAUTHENTICATED for a
token) and a reason, changes nothing, and is logged a bounded number of times (issue 12,
finding 4: 1,780 of 11,717 malformed inputs got UNKNOWN and 26 INTERNAL, each with a
traceback in the log)."""

from __future__ import annotations

import base64
import io
import json
import logging
from typing import Any

import grpc
import pytest
from google.protobuf import timestamp_pb2

from cmk_trio.client.keyvault import KeyVaultClient
from cmk_trio.proto.keyvault.v1 import resources_pb2 as kvres
from cmk_trio.rpckit.channels import MAX_MESSAGE_BYTES
from cmk_trio.rpckit.errors import InvalidArgument
from cmk_trio.rpckit.logs import configure_logging
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.status import Throttle, error_info_of
from tests.speech.cmk_world import World

DEEP = "[" * 1500 + "]" * 1500
"""JSON nested deeper than Python's parser can recurse."""


async def refusal(endpoint: str, method: str, body: bytes, token: str = "") -> tuple[grpc.StatusCode, str]:
    """Send `body` as the request's bytes (a raw channel has no send limit: the server must
    refuse) and return the status code and ErrorInfo reason of the refusal."""
    channel = grpc.aio.insecure_channel(endpoint)
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    call: Any = channel.unary_unary(method)  # bytes in, bytes out: no serializers
    try:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(body, metadata=metadata)
        info = error_info_of(caught.value)
        return caught.value.code(), info.reason if info is not None else ""
    finally:
        await channel.close()


def endpoints(world: World, identity, keyvault) -> dict[str, tuple[str, str]]:
    return {
        "identity": (identity.endpoint, "/cmk.identity.v1.IdentityService/GetTenant"),
        "keyvault": (keyvault.endpoint, "/cmk.keyvault.v1.KeyService/UnwrapKey"),
        "speech": (world.server.endpoint, "/cmk.speech.v1.ApplicationService/GetApplication"),
    }


@pytest.mark.parametrize("service", ["identity", "keyvault", "speech"])
async def test_bytes_that_are_no_message_are_refused_with_a_reason(world, identity, keyvault, service):
    endpoint, method = endpoints(world, identity, keyvault)[service]
    for body in (b"\xff\xff\xff\xff", b"\x0a\x05abc", b"\x0a" * 20):
        assert await refusal(endpoint, method, body) == (grpc.StatusCode.INVALID_ARGUMENT, "REQUEST_MALFORMED")


@pytest.mark.parametrize("service", ["identity", "keyvault", "speech"])
async def test_a_request_over_the_size_limit_is_refused_with_a_reason(world, identity, keyvault, service):
    endpoint, method = endpoints(world, identity, keyvault)[service]
    body = b"\x0a" + b"\x80\x80\x80\x04" + b"x" * (MAX_MESSAGE_BYTES + 16)  # field 1, a string of 4 MiB + 16
    assert await refusal(endpoint, method, body) == (grpc.StatusCode.INVALID_ARGUMENT, "REQUEST_TOO_LARGE")


async def test_a_token_header_nested_too_deep_is_a_malformed_token(world, identity):
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    token = f"{b64(DEEP.encode())}.{b64(b'{}')}.{b64(b'sig')}"
    code, reason = await refusal(identity.endpoint, "/cmk.identity.v1.IdentityService/ListTenants", b"", token)
    assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MALFORMED")


async def test_json_nested_too_deep_is_refused_where_we_parse_json(world, operator):
    page_token = base64.urlsafe_b64encode(DEEP.encode()).decode()
    with pytest.raises(InvalidArgument) as page:
        await operator.list_tenants(page_token=page_token)
    assert page.value.reason is Reason.PAGE_TOKEN_INVALID
    with pytest.raises(InvalidArgument) as config:
        await world.speech.create_application(world.resource.name, "deep", '{"a": ' + DEEP + "}")
    assert config.value.reason is Reason.CONFIGURATION_NOT_JSON and "64 levels" in config.value.message
    with pytest.raises(InvalidArgument) as material:
        await world.vaults.import_key("contoso-cmk", "deep", '{"kty": ' + DEEP + "}")
    assert material.value.reason is Reason.KEY_MATERIAL_INVALID
    names = [a.display_name for a in (await world.speech.list_applications(world.resource.name)).applications]
    assert "deep" not in names  # nothing stored


@pytest.mark.parametrize("seconds", [-(10**12), 10**13, 253402300800])
async def test_timestamps_outside_years_1_to_9999_are_refused(world, seconds):
    stamp = timestamp_pb2.Timestamp(seconds=seconds)
    with pytest.raises(InvalidArgument) as expires:
        await world.vaults.update_key(world.key.key_id, kvres.KeyVersion(expires=stamp), ["expires"])
    assert (expires.value.reason, expires.value.metadata["field"]) == (Reason.FIELD_INVALID, "key.expires")
    with pytest.raises(InvalidArgument) as since:
        await _audit_since(world.vaults, stamp)
    assert (since.value.reason, since.value.metadata["field"]) == (Reason.FIELD_INVALID, "start_time")
    assert (await world.vaults.get_key(world.key.key_id)).version == world.key.version  # unchanged


async def _audit_since(vaults: KeyVaultClient, stamp: timestamp_pb2.Timestamp) -> Any:
    from cmk_trio.proto.keyvault.v1 import keyvault_service_pb2 as pb

    request = pb.ListAuditRecordsRequest(parent="vaults/" + "contoso-cmk", start_time=stamp)
    return await vaults._mgmt(vaults.audit.ListAuditRecords, request)


async def test_a_flood_of_bad_calls_is_logged_a_bounded_number_of_times(world, identity):
    stream = io.StringIO()
    configure_logging("identity", "INFO", stream)
    try:
        for _ in range(60):
            await refusal(identity.endpoint, "/cmk.identity.v1.IdentityService/GetTenant", b"\xff\xff")
    finally:
        logging.getLogger().handlers.clear()
    refused = [json.loads(line) for line in stream.getvalue().splitlines()]
    refused = [e for e in refused if e["message"] == "call refused" and e.get("reason") == "REQUEST_MALFORMED"]
    assert 1 <= len(refused) <= 10
    assert "Traceback" not in stream.getvalue()


def test_the_throttle_says_how_many_lines_it_held_back():
    now = [0.0]
    throttle = Throttle(per_window=2, window=60, now=lambda: now[0])
    kind = ("/m", "R")
    assert [throttle.allow(kind) for _ in range(5)] == [0, 0, None, None, None]
    now[0] = 61
    assert throttle.allow(kind) == 3  # the next line let through counts the three held back
    assert throttle.allow(("/m", "other")) == 0  # each kind has its own budget
