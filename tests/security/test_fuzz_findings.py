"""The inputs the fuzzer found that broke a handler, each kept as a fixed case (the fuzzer
is random, so a finding it made once might not be made again): INTERNAL from page tokens
and etags that Python's str.isdigit accepts but int() and SQLite do not, an update mask
echoed into a status too large for gRPC's metadata (the caller lost the ErrorInfo), an
AdvanceClock step too large for a timedelta, a key URI given beside a vault and key, and a
page token carrying a NUL, which PostgreSQL refuses."""

from __future__ import annotations

import base64
import json

import pytest
from google.protobuf import field_mask_pb2

from cmk_trio.client.calls import call
from cmk_trio.client.channel import open_channel
from cmk_trio.client.identity import IdentityClient
from cmk_trio.identity.server import build_server
from cmk_trio.proto.common.v1 import dev_service_pb2 as devpb
from cmk_trio.proto.common.v1 import dev_service_pb2_grpc as devgrpc
from cmk_trio.proto.identity.v1 import identity_service_pb2 as idpb
from cmk_trio.proto.identity.v1 import resources_pb2 as idres
from cmk_trio.proto.speech.v1 import resources_pb2 as spres
from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.errors import InvalidArgument
from cmk_trio.rpckit.reasons import Reason
from tests.conftest import identity_config, operator_credentials
from tests.speech.cmk_world import CONFIG, World

ODD_NUMBERS = ["²", "9" * 5000, "9" * 19, "١٢"]  # a superscript, too many digits, too big, Arabic-Indic digits


def page_token(kind: str, after: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"k": kind, "a": after}).encode()).decode().rstrip("=")


async def test_a_page_token_with_a_nul_is_refused(world: World):
    """PostgreSQL takes no NUL in text: a page token resuming after "\\u0000" reached the query
    and came back INTERNAL (found on PostgreSQL, in ListSpeechResources)."""
    with pytest.raises(InvalidArgument) as caught:
        await world.speech.list_resources(world.subscription_id, page_token=page_token("resources", "a\x00b"))
    assert caught.value.reason is Reason.PAGE_TOKEN_INVALID


@pytest.mark.parametrize("after", ODD_NUMBERS)
async def test_page_tokens_with_odd_numbers_are_refused(world: World, after):
    with pytest.raises(InvalidArgument) as apps:
        await world.speech.list_applications(world.resource.name, page_token=page_token("applications", after))
    with pytest.raises(InvalidArgument) as audit:
        await world.vaults.list_audit("contoso-cmk", page_token=page_token("audit", after))
    assert apps.value.reason is audit.value.reason is Reason.PAGE_TOKEN_INVALID


@pytest.mark.parametrize("digits", ["²", "99999999999999999999", "9" * 19, "١٢"])
async def test_etags_with_odd_numbers_are_refused(world: World, digits):
    """19 nines fit the etag's 19 digits but not a 64-bit integer: PostgreSQL refused the
    statement (DATABASE_UNAVAILABLE, logged as a defect; found by the fuzzer in .ci/run)."""
    app = await world.speech.create_application(world.resource.name, "odd", CONFIG)
    with pytest.raises(InvalidArgument) as update:
        await world.speech.update_application(app.name, f'"{digits}"', "odd", CONFIG)
    with pytest.raises(InvalidArgument) as delete:
        await world.speech.delete_application(app.name, f'"{digits}"')
    assert update.value.reason is delete.value.reason is Reason.FIELD_INVALID
    assert (await world.speech.get_application(app.name)).etag == app.etag  # unchanged


async def test_a_long_unknown_update_mask_path_is_refused_with_its_reason(world: World, operator):
    request = idpb.UpdateTenantRequest(
        tenant=idres.Tenant(name=f"tenants/{world.tenant_id}", display_name="x"),
        update_mask=field_mask_pb2.FieldMask(paths=["x" * 10_000, *(f"p{i}" for i in range(20))]),
    )
    with pytest.raises(InvalidArgument) as caught:
        await operator._call(operator.directory.UpdateTenant, request)
    assert caught.value.reason is Reason.UPDATE_MASK_INVALID and len(caught.value.message) < 1000


async def test_a_step_too_large_for_a_clock_is_refused(tmp_path, clock):
    server = await build_server(identity_config(tmp_path / "identity", dev_time_control=True), clock=clock)
    channel = open_channel(server.endpoint)
    try:
        client = IdentityClient(channel, operator_credentials(server), clock=clock)
        token = await client.token_for(audiences.DIRECTORY)
        dev = devgrpc.DevServiceStub(channel)
        for seconds in (2**63 - 1, 86_400_000_000_000, -(2**62)):
            with pytest.raises(InvalidArgument) as caught:
                await call(dev.AdvanceClock, devpb.AdvanceClockRequest(seconds=seconds), token=token)
            assert caught.value.reason is Reason.FIELD_INVALID
    finally:
        await channel.close()
        await server.stop(grace=0)


async def test_a_key_uri_beside_a_vault_and_key_is_refused(world: World):
    with pytest.raises(InvalidArgument) as caught:
        await world.set_encryption(
            key_uri=world.key.key_id, key_subscription_id=world.subscription_id, vault_name="elsewhere", key_name="k"
        )
    assert caught.value.reason is Reason.FIELD_INVALID and caught.value.metadata["field"] == "key_uri"
    assert (await world.speech.get_resource(world.resource.name)).encryption.key_source == spres.MICROSOFT_MANAGED
