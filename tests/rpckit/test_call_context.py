"""The values a call carries (its caller, its request id) are bound for the call, let go of
cleanly however the call ends, and stamped on its log lines (issue 12, finding 10)."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import logging

import pytest

from cmk_trio.client.channel import open_channel
from cmk_trio.client.identity import IdentityClient
from cmk_trio.proto.identity.v1 import resources_pb2 as res
from cmk_trio.rpckit.errors import PermissionDenied
from cmk_trio.rpckit.logs import configure_logging
from tests.conftest import operator_credentials
from tests.identity.helpers import make_tenant, resource_id


async def test_a_stream_whose_client_went_away_logs_no_error(identity, operator, clock, caplog):
    caplog.set_level(logging.ERROR)
    tenant = await operator.create_tenant("events to read")
    for i in range(100):  # enough that the server is still sending when its client leaves
        await operator.create_principal(tenant.tenant_id, res.SERVICE_PRINCIPAL, f"an event {i}")
    for _ in range(3):
        channel = open_channel(identity.endpoint)
        client = IdentityClient(channel, operator_credentials(identity), clock=clock)
        stream = client.watch_events(0)
        assert (await anext(stream)).type != res.HEARTBEAT
        await channel.close()  # the client goes away with its stream open
        await asyncio.sleep(0.2)  # the server notices and ends its side
    gc.collect()
    await asyncio.sleep(0.2)
    problems = [f"{r.getMessage()} {r.exc_info}" for r in caplog.records if r.levelno >= logging.ERROR]
    assert not [p for p in problems if "different Context" in p], problems


async def test_a_refusal_is_logged_with_its_caller(operator, channel, clock):
    """Issue 12, finding 10: refusals in identity and speech were logged without the caller
    (the refusal is logged outside the authentication, where the caller was already gone)."""
    tenant = await make_tenant(operator, channel, clock, "Logged")
    stream = io.StringIO()
    configure_logging("identity", "INFO", stream)
    try:
        with pytest.raises(PermissionDenied):
            await tenant.admin_client.create_managed_identity(tenant.tenant_id, resource_id(tenant.subscription_id))
    finally:
        logging.getLogger().handlers.clear()
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    (refusal,) = [e for e in entries if e["message"] == "call refused"]
    assert refusal["reason"] == "PLATFORM_PRINCIPAL_REQUIRED"
    assert (refusal["caller_object_id"], refusal["caller_tenant_id"]) == (tenant.admin.object_id, tenant.tenant_id)
    assert refusal["request_id"]
