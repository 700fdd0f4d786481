"""Request ids and Prometheus metrics, on a real identity server."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import urllib.request

import grpc

from cmk_trio.identity.server import build_server
from cmk_trio.proto.identity.v1 import identity_service_pb2 as pb
from cmk_trio.proto.identity.v1 import identity_service_pb2_grpc as pb_grpc
from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.logs import configure_logging
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.testing import expect_rpc_error
from tests.conftest import identity_config, operator_credentials


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as reply:  # noqa: S310 (a loopback URL the test made)
        return str(reply.read().decode())


async def test_metrics_count_calls_by_method_and_status(tmp_path, clock):
    server = await build_server(identity_config(tmp_path / "id", metrics_port=0), clock=clock)
    try:
        from cmk_trio.client.channel import open_channel
        from cmk_trio.client.identity import IdentityClient

        channel = open_channel(server.endpoint)
        try:
            client = IdentityClient(channel, operator_credentials(server), clock=clock)
            await client.list_tenants()
            await client.list_tenants()
            token = await client.token_for(audiences.DIRECTORY)
            refused = pb_grpc.IdentityServiceStub(channel).CreateTenant(
                pb.CreateTenantRequest(), metadata=(("authorization", f"Bearer {token}"),)
            )
            await expect_rpc_error(refused, grpc.StatusCode.INVALID_ARGUMENT, Reason.FIELD_REQUIRED)
        finally:
            await channel.close()
        assert server.metrics_port is not None
        text = await asyncio.to_thread(_get, f"http://127.0.0.1:{server.metrics_port}/metrics")
        # Named and labelled as go-grpc-prometheus and py-grpc-prometheus name them.
        listed = 'grpc_method="ListTenants",grpc_service="cmk.identity.v1.IdentityService",grpc_type="unary"'
        assert f"grpc_server_started_total{{{listed}}} 2.0" in text
        assert f'grpc_server_handled_total{{grpc_code="OK",{listed}}} 2.0' in text
        assert f'grpc_server_handling_seconds_bucket{{{listed},le="+Inf"}} 2.0' in text
        assert 'grpc_method="IssueToken",grpc_service="cmk.identity.v1.TokenService"' in text
        assert 'cmk_cache_lookups_total{cache="verified_tokens",result="hit",service="identity"} 2.0' in text
        # A refusal is counted with its reason; the process and Python collectors are in.
        assert (
            'cmk_server_refusals_total{grpc_code="INVALID_ARGUMENT",grpc_method="CreateTenant",'
            'grpc_service="cmk.identity.v1.IdentityService",reason="FIELD_REQUIRED"} 1.0'
        ) in text
        for family in ("process_cpu_seconds_total", "process_resident_memory_bytes", "python_info",
                       "python_gc_collections_total"):  # fmt: skip
            assert f"\n{family}" in text, family
    finally:
        await server.stop(0)


async def test_a_request_id_is_kept_returned_and_logged(identity, operator, channel):
    lines = io.StringIO()
    configure_logging("identity", "INFO", lines)
    token = await operator.token_for(audiences.DIRECTORY)
    stub = pb_grpc.IdentityServiceStub(channel)
    call = stub.CreateTenant(
        pb.CreateTenantRequest(),  # invalid on purpose: the refusal is logged
        metadata=(("authorization", f"Bearer {token}"), ("x-request-id", "trace-me-42")),
    )
    await expect_rpc_error(call, grpc.StatusCode.INVALID_ARGUMENT, Reason.FIELD_REQUIRED)
    assert ("x-request-id", "trace-me-42") in tuple(await call.trailing_metadata())  # beside the error's details
    logging.getLogger().handlers.clear()
    refused = [json.loads(line) for line in lines.getvalue().splitlines() if '"call refused"' in line]
    assert refused and refused[-1]["request_id"] == "trace-me-42"


async def test_a_bad_request_id_is_replaced(identity, channel):
    stub = pb_grpc.TokenServiceStub(channel)
    call = stub.ListSigningKeys(pb.ListSigningKeysRequest(), metadata=(("x-request-id", "bad id with spaces"),))
    await call
    sent = dict(tuple(await call.trailing_metadata()))["x-request-id"]
    assert sent != "bad id with spaces" and len(sent) == 32


async def test_a_stream_says_its_request_id_before_its_first_event(operator, channel):
    token = await operator.token_for(audiences.DIRECTORY)
    call = pb_grpc.IdentityServiceStub(channel).WatchEvents(
        pb.WatchEventsRequest(), metadata=(("authorization", f"Bearer {token}"), ("x-request-id", "stream-7"))
    )
    try:
        assert ("x-request-id", "stream-7") in tuple(await call.initial_metadata())
    finally:
        call.cancel()
