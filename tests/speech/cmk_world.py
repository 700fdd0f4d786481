"""Three real services and one customer ready for customer-managed keys: a tenant whose
administrator owns its subscription, an approved S0 speech resource with applications and
LUIS keys, and a purge-protected vault with a key (the `world` of the CMK flow tests)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import pytest

from cmk_trio.client.channel import open_channel
from cmk_trio.client.keyvault import KeyVaultClient
from cmk_trio.client.speech import SpeechClient
from cmk_trio.proto.identity.v1 import resources_pb2 as idres
from cmk_trio.proto.keyvault.v1 import resources_pb2 as kvres
from cmk_trio.proto.speech.v1 import resources_pb2 as res
from cmk_trio.rpckit.errors import ServiceError
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.speech.config import SpeechConfig
from cmk_trio.speech.server import SpeechServer, build_server
from tests import raw_database
from tests.conftest import platform_credentials
from tests.identity.helpers import make_tenant
from tests.waiting import eventually

CONFIG = json.dumps({"commands": ["TurnOn"], "secret": "cmk-protected-config"})


@pytest.fixture
async def speech_cmk(
    tmp_path, identity, keyvault, operator, channel, clock, dev_time_control, database_url, tracer_provider
) -> AsyncIterator[SpeechServer]:
    config = SpeechConfig(
        data_dir=tmp_path / "speech", identity_endpoint=identity.endpoint, keyvault_endpoint=keyvault.endpoint,
        credentials=await platform_credentials(operator, channel, clock, "speech"), port=0,
        data_key_max_age=timedelta(minutes=5), dev_time_control=dev_time_control, database_url=database_url,
    )  # fmt: skip
    server = await build_server(config, clock=clock, tracer_provider=tracer_provider)
    try:
        yield server
    finally:
        await server.stop(grace=0)


@dataclass
class World:
    tenant_id: str
    subscription_id: str
    speech: SpeechClient
    vaults: KeyVaultClient
    operator_speech: SpeechClient
    resource: res.SpeechResource
    key: kvres.KeyVersion
    server: SpeechServer

    async def read_all(self) -> tuple[list[str], tuple[str, str]]:
        apps = await self.speech.list_applications(self.resource.name)
        keys = await self.speech.get_luis_keys(self.resource.name)
        return [a.configuration_json for a in apps.applications], (keys.authoring_key, keys.prediction_key)

    async def set_encryption(self, **fields) -> res.SpeechResource:
        return await self.speech.set_encryption(self.resource.name, **fields)

    async def disable_encryption(self) -> res.SpeechResource:
        return await self.speech.disable_encryption(self.resource.name)

    async def identity(self, assign: bool, confirm: bool = False) -> res.SpeechResource:
        if assign:
            return await self.speech.assign_identity(self.resource.name)
        return await self.speech.remove_identity(self.resource.name, confirm=confirm)

    async def ciphertexts(self) -> list[bytes]:
        """The sealed values as the database holds them (read around the service)."""
        return await raw_database.speech_sealed_values(self.server.config.database_location)


@pytest.fixture
async def kv_channel_for(keyvault) -> AsyncIterator[object]:
    channel = open_channel(keyvault.endpoint)
    try:
        yield channel
    finally:
        await channel.close()


@pytest.fixture
async def world(speech_cmk, keyvault, operator, channel, clock) -> AsyncIterator[World]:
    tenant = await make_tenant(operator, channel, clock, "Contoso")
    await operator.create_role_assignment(
        tenant.admin.object_id, idres.OWNER, f"/subscriptions/{tenant.subscription_id}"
    )
    sp = open_channel(speech_cmk.endpoint)
    kv = open_channel(keyvault.endpoint)
    try:
        speech = SpeechClient(sp, tenant.admin_client.token_for)
        operator_speech = SpeechClient(sp, operator.token_for)
        await speech.request_approval(tenant.subscription_id, "BYOK please")
        await operator_speech.approve(tenant.subscription_id)
        clock.advance(1)
        resource = await speech.create_resource(tenant.subscription_id, "rg1", "speech1", "westeurope")
        for i in range(3):
            await speech.create_application(resource.name, f"app{i}", CONFIG)
        await speech.set_luis_keys(resource.name, "luis-authoring-secret", "luis-prediction-secret")
        vaults = KeyVaultClient(kv, tenant.admin_client.token_for)
        await vaults.create_vault("contoso-cmk", tenant.subscription_id, "rg1", "westeurope", purge_protection=True,
                                  retention_days=7)  # fmt: skip
        key = await vaults.create_key("contoso-cmk", "cmk")
        yield World(
            tenant.tenant_id, tenant.subscription_id, speech, vaults, operator_speech, resource, key, speech_cmk
        )
    finally:
        await sp.close()
        await kv.close()


async def refusal(attempt) -> Reason | None:
    try:
        await attempt()
    except ServiceError as refused:
        return refused.reason
    return None


async def until_refused(world: World, reason: Reason) -> None:
    assert await eventually(lambda: refusal(world.read_all), f"reads refused with {reason.value}") is reason
