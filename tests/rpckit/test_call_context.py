"""The values a call carries (its caller, its request id) are bound for the call and let go
of cleanly however the call ends: a server stream whose client went away used to log
"Token ... was created in a different Context" each time (issue 12, finding 10)."""

from __future__ import annotations

import asyncio
import gc
import logging

from cmk_trio.client.channel import open_channel
from cmk_trio.client.identity import IdentityClient
from cmk_trio.proto.identity.v1 import resources_pb2 as res
from tests.conftest import operator_credentials


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
