"""A real speech service wired to the real identity service of the shared fixtures (and,
from cmk_world, the three services with a customer ready for customer-managed keys)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from cmk_trio.client.channel import open_channel
from cmk_trio.client.speech import SpeechClient
from cmk_trio.proto.identity.v1 import resources_pb2 as idres
from cmk_trio.speech.config import SpeechConfig
from cmk_trio.speech.server import SpeechServer, build_server
from tests.conftest import platform_credentials
from tests.identity.helpers import TenantFixture, make_tenant
from tests.speech.cmk_world import kv_channel_for, speech_cmk, world  # noqa: F401 (fixtures for the CMK tests)


@pytest.fixture
async def speech(tmp_path: Path, identity, operator, channel, clock, database_url) -> AsyncIterator[SpeechServer]:
    config = SpeechConfig(
        data_dir=tmp_path / "speech",
        identity_endpoint=identity.endpoint,
        credentials=await platform_credentials(operator, channel, clock, "speech"),
        port=0,
        database_url=database_url,
    )
    server = await build_server(config, clock=clock)
    try:
        yield server
    finally:
        await server.stop(grace=0)


@pytest.fixture
async def sp_channel(speech: SpeechServer) -> AsyncIterator[grpc.aio.Channel]:
    ch = open_channel(speech.endpoint)
    try:
        yield ch
    finally:
        await ch.close()


@dataclass
class SpeechCustomer:
    tenant: TenantFixture
    speech: SpeechClient

    @property
    def subscription_id(self) -> str:
        return self.tenant.subscription_id


async def make_speech_customer(operator, channel, sp_channel, clock, name: str) -> SpeechCustomer:
    tenant = await make_tenant(operator, channel, clock, name)
    await operator.create_role_assignment(
        tenant.admin.object_id, idres.OWNER, f"/subscriptions/{tenant.subscription_id}"
    )
    return SpeechCustomer(tenant, SpeechClient(sp_channel, tenant.admin_client.token_for))


@pytest.fixture
async def speech_customer(operator, channel, sp_channel, clock) -> SpeechCustomer:
    return await make_speech_customer(operator, channel, sp_channel, clock, "Contoso")
