"""Speech resources, applications and LUIS keys with Microsoft-managed keys, over the wire
against real identity and speech servers."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime

import grpc
import pytest

from cmk_trio.client.speech import SpeechClient
from cmk_trio.proto.identity.v1 import resources_pb2 as idres
from cmk_trio.proto.speech.v1 import resources_pb2 as res
from cmk_trio.proto.speech.v1 import speech_service_pb2 as pb
from cmk_trio.proto.speech.v1 import speech_service_pb2_grpc as pb_grpc
from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.errors import Aborted, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.testing import expect_rpc_error
from cmk_trio.speech.model import CMK_EARLIEST_CREATION, ApprovalState, CmkApproval, Tier
from cmk_trio.speech.resources import check_eligibility
from tests import raw_database
from tests.identity.helpers import make_principal
from tests.waiting import eventually

CONFIG = json.dumps({"commands": [{"name": "TurnOnLight", "example": "turn on the light"}], "secret": "s3cr3t-value"})


async def test_a_resource_is_created_with_microsoft_managed_keys_and_cmk_at_creation_is_refused(speech_customer):
    created = await speech_customer.speech.create_resource(
        speech_customer.subscription_id, "rg1", "speech1", "westeurope"
    )
    assert created.name.endswith("/providers/Microsoft.CognitiveServices/accounts/speech1")
    assert created.encryption.key_source == res.MICROSOFT_MANAGED and created.encryption.status == res.HEALTHY
    assert created.tenant_id == speech_customer.tenant.tenant_id and not created.identity.system_assigned
    with pytest.raises(InvalidArgument) as caught:
        await speech_customer.speech.create_resource(
            speech_customer.subscription_id, "rg1", "speech2", "westeurope", customer_managed=True
        )
    assert caught.value.reason is Reason.CMK_AT_CREATION
    listed = await speech_customer.speech.list_resources(speech_customer.subscription_id)
    assert [r.name for r in listed.resources] == [created.name]


async def test_applications_and_luis_keys_round_trip_transparently(speech_customer):
    resource = await speech_customer.speech.create_resource(speech_customer.subscription_id, "rg1", "s1", "westeurope")
    app = await speech_customer.speech.create_application(resource.name, "Lights", CONFIG)
    assert app.etag == '"1"' and app.configuration_json == CONFIG
    read = await speech_customer.speech.get_application(app.name)
    assert (read.configuration_json, read.display_name) == (CONFIG, "Lights")
    await speech_customer.speech.set_luis_keys(resource.name, "authoring-key-123", "prediction-key-456")
    keys = await speech_customer.speech.get_luis_keys(resource.name)
    assert (keys.authoring_key, keys.prediction_key) == ("authoring-key-123", "prediction-key-456")


async def test_an_update_changes_what_its_mask_names_and_no_more(speech_customer, sp_channel):
    """UpdateApplication's update_mask (AIP-134): a named field changes and the other stays,
    the configuration sealed again under the new version and readable; no mask means the
    fields the request sets; nothing to change is refused."""
    speech = speech_customer.speech
    resource = await speech.create_resource(speech_customer.subscription_id, "rg1", "masked", "westeurope")
    app = await speech.create_application(resource.name, "Lights", CONFIG)
    renamed = await speech.update_application(app.name, app.etag, display_name="Lamps")
    assert (renamed.display_name, renamed.configuration_json, renamed.etag) == ("Lamps", CONFIG, '"2"')
    read = await speech.get_application(app.name)
    assert (read.display_name, read.configuration_json) == ("Lamps", CONFIG)
    reconfigured = await speech.update_application(app.name, renamed.etag, configuration_json='{"v": 3}')
    assert (reconfigured.display_name, reconfigured.configuration_json) == ("Lamps", '{"v": 3}')
    token = await speech._tokens(audiences.SPEECH)
    stub = pb_grpc.ApplicationServiceStub(sp_channel)
    unmasked = pb.UpdateApplicationRequest(application=res.Application(name=app.name, etag=reconfigured.etag,
                                                                       display_name="Bulbs"))  # fmt: skip
    answer = await stub.UpdateApplication(unmasked, metadata=(("authorization", f"Bearer {token}"),))
    assert (answer.display_name, answer.configuration_json) == ("Bulbs", '{"v": 3}')
    nothing = pb.UpdateApplicationRequest(application=res.Application(name=app.name, etag=answer.etag))
    call = stub.UpdateApplication(nothing, metadata=(("authorization", f"Bearer {token}"),))
    await expect_rpc_error(call, grpc.StatusCode.INVALID_ARGUMENT, Reason.UPDATE_MASK_INVALID)


async def test_an_update_needs_the_current_etag_and_exactly_one_of_two_concurrent_wins(speech_customer):
    resource = await speech_customer.speech.create_resource(speech_customer.subscription_id, "rg1", "s1", "westeurope")
    app = await speech_customer.speech.create_application(resource.name, "Lights", CONFIG)
    assert (await speech_customer.speech.get_application(app.name)).etag == app.etag  # now in the read cache
    results = await asyncio.gather(
        *(
            speech_customer.speech.update_application(app.name, app.etag, f"v{i}", json.dumps({"i": i}))
            for i in range(5)
        ),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, res.Application)]
    losers = [r for r in results if isinstance(r, Aborted)]
    assert len(winners) == 1 and len(losers) == 4
    assert all(e.reason is Reason.ETAG_MISMATCH for e in losers)
    current = await speech_customer.speech.get_application(app.name)
    assert current.etag == '"2"' and current.configuration_json == winners[0].configuration_json
    with pytest.raises(Aborted):
        await speech_customer.speech.delete_application(app.name, app.etag)
    assert (await speech_customer.speech.get_application(app.name)).etag == '"2"'
    await speech_customer.speech.delete_application(app.name, current.etag)
    with pytest.raises(NotFound):
        await speech_customer.speech.get_application(app.name)


async def test_listing_pages_through_every_application_once(speech_customer):
    resource = await speech_customer.speech.create_resource(speech_customer.subscription_id, "rg1", "s1", "westeurope")
    for i in range(7):
        await speech_customer.speech.create_application(resource.name, f"app{i}", json.dumps({"n": i}))
    seen, token = [], ""
    while True:
        page = await speech_customer.speech.list_applications(resource.name, page_size=3, page_token=token)
        seen += [json.loads(a.configuration_json)["n"] for a in page.applications]
        token = page.next_page_token
        if not token:
            break
    assert seen == list(range(7))


async def test_no_plaintext_reaches_the_database(speech_customer, speech):
    resource = await speech_customer.speech.create_resource(speech_customer.subscription_id, "rg1", "s1", "westeurope")
    await speech_customer.speech.create_application(resource.name, "Lights", CONFIG)
    await speech_customer.speech.set_luis_keys(resource.name, "authoring-key-123", "prediction-key-456")
    stored = await raw_database.stored_bytes(speech.config.database_location, "speech")
    for secret in (b"s3cr3t-value", b"TurnOnLight", b"authoring-key-123", b"prediction-key-456"):
        assert secret not in stored


async def test_a_ciphertext_copied_onto_another_record_does_not_decrypt(speech_customer, speech):
    s = speech_customer.speech
    first = await s.create_resource(speech_customer.subscription_id, "rg1", "s1", "westeurope")
    second = await s.create_resource(speech_customer.subscription_id, "rg1", "s2", "westeurope")
    a = await s.create_application(first.name, "a", json.dumps({"a": 1}))
    b = await s.create_application(first.name, "b", json.dumps({"b": 2}))
    c = await s.create_application(second.name, "c", json.dumps({"c": 3}))
    where = speech.config.database_location
    [(sealed,)] = await raw_database.rows(
        where, "speech", "SELECT sealed_configuration FROM applications WHERE application_id = ?", (a.application_id,)
    )
    for target in (b.application_id, c.application_id):
        await raw_database.execute(
            where,
            "speech",
            "UPDATE applications SET sealed_configuration = ? WHERE application_id = ?",
            (sealed, target),
        )
    for name in (b.name, c.name):
        with pytest.raises(FailedPrecondition) as caught:
            await s.get_application(name)
        assert caught.value.reason is Reason.DATA_UNREADABLE
    assert json.loads((await s.get_application(a.name)).configuration_json) == {"a": 1}


@pytest.mark.parametrize(
    ("config", "reason"),
    [("not json", Reason.CONFIGURATION_NOT_JSON), ("[1, 2]", Reason.CONFIGURATION_NOT_JSON),
     (json.dumps({"x": "y" * 300_000}), Reason.CONFIGURATION_TOO_LARGE), ("", Reason.FIELD_REQUIRED)],
)  # fmt: skip
async def test_bad_configuration_is_refused_and_nothing_is_stored(speech_customer, config, reason):
    resource = await speech_customer.speech.create_resource(speech_customer.subscription_id, "rg1", "s1", "westeurope")
    with pytest.raises(InvalidArgument) as caught:
        await speech_customer.speech.create_application(resource.name, "bad", config)
    assert caught.value.reason is reason
    assert not (await speech_customer.speech.list_applications(resource.name)).applications


async def test_data_needs_a_role_on_the_resource(speech_customer, operator, channel, clock, sp_channel):
    resource = await speech_customer.speech.create_resource(speech_customer.subscription_id, "rg1", "s1", "westeurope")
    app = await speech_customer.speech.create_application(resource.name, "Lights", CONFIG)
    bob, _, bob_client = await make_principal(operator, channel, clock, speech_customer.tenant.tenant_id, "bob",
                                              kind=idres.USER)  # fmt: skip
    bob_speech = SpeechClient(sp_channel, bob_client.token_for)
    with pytest.raises(NotFound) as caught:  # without a role, the resource is not there for Bob
        await bob_speech.get_application(app.name)
    assert caught.value.reason is Reason.SPEECH_RESOURCE_NOT_FOUND
    await speech_customer.tenant.admin_client.create_role_assignment(bob.object_id, idres.READER, resource.name)
    with pytest.raises(PermissionDenied):
        await bob_speech.update_application(app.name, app.etag, "x", "{}")
    # A Reader sees metadata, never the secrets (issue 12, finding 6).
    seen = await bob_speech.get_application(app.name)
    assert (seen.display_name, seen.configuration_json, seen.configuration_withheld) == ("Lights", "", True)
    (listed,) = (await bob_speech.list_applications(resource.name)).applications
    assert (listed.configuration_json, listed.configuration_withheld) == ("", True)
    await speech_customer.speech.set_luis_keys(resource.name, "authoring-key-123", "prediction-key-456")
    with pytest.raises(PermissionDenied) as secret:
        await bob_speech.get_luis_keys(resource.name)
    assert secret.value.reason is Reason.ROLE_REQUIRED and "Contributor" in secret.value.message
    # A Contributor reads them.
    await speech_customer.tenant.admin_client.create_role_assignment(bob.object_id, idres.CONTRIBUTOR, resource.name)
    opened = await bob_speech.get_application(app.name)
    assert (opened.configuration_json, opened.configuration_withheld) == (CONFIG, False)
    assert (await bob_speech.get_luis_keys(resource.name)).authoring_key == "authoring-key-123"


async def test_cmk_approval_is_requested_by_an_owner_and_decided_by_the_operator(speech_customer, operator, sp_channel):
    s = speech_customer.speech
    requested = await s.request_approval(speech_customer.subscription_id, "we need BYOK")
    assert requested.state == res.REQUESTED
    with pytest.raises(PermissionDenied) as caught:
        await s.approve(speech_customer.subscription_id)
    assert caught.value.reason is Reason.OPERATOR_REQUIRED
    platform = SpeechClient(sp_channel, operator.token_for)
    approved = await platform.approve(speech_customer.subscription_id, "ok")
    assert approved.state == res.APPROVED and approved.HasField("decision_time")
    with pytest.raises(FailedPrecondition) as decided:
        await platform.reject(speech_customer.subscription_id)
    assert decided.value.reason is Reason.APPROVAL_ALREADY_DECIDED
    assert (await s.get_approval(speech_customer.subscription_id)).state == res.APPROVED


async def test_only_the_operator_backdates_a_resource(speech_customer, operator, sp_channel):
    old = datetime(2019, 1, 1, tzinfo=UTC)
    with pytest.raises(PermissionDenied) as caught:
        await speech_customer.speech.create_resource(speech_customer.subscription_id, "rg1", "old", "westeurope",
                                                     backdate=old)  # fmt: skip
    assert caught.value.reason is Reason.OPERATOR_REQUIRED
    platform = SpeechClient(sp_channel, operator.token_for)
    created = await platform.create_resource(speech_customer.subscription_id, "rg1", "old", "westeurope", backdate=old)
    assert created.create_time.ToDatetime(tzinfo=UTC) == old
    assert (await speech_customer.speech.get_resource(created.name)).tenant_id == speech_customer.tenant.tenant_id


async def test_the_operator_reads_records_as_stored_and_no_one_else(speech_customer, operator, speech, sp_channel):
    """SpeechDevService.GetSealedRecord hands over the bytes the database holds, unopened (what
    `cmk demo` shows at rest); to the resource's own Owner it is refused like to anyone but the
    operator, and a name that is neither an application's nor the LUIS keys' is malformed."""
    s = speech_customer.speech
    resource = await s.create_resource(speech_customer.subscription_id, "rg1", "sealed", "westeurope")
    app = await s.create_application(resource.name, "Lights", CONFIG)
    stub = pb_grpc.SpeechDevServiceStub(sp_channel)

    async def as_(tokens, name: str) -> pb.SealedRecord:
        token = await tokens(audiences.MANAGEMENT)
        request = pb.GetSealedRecordRequest(name=name)
        record: pb.SealedRecord = await stub.GetSealedRecord(request, metadata=(("authorization", f"Bearer {token}"),))
        return record

    luis = f"{resource.name}/luisKeys"
    await expect_rpc_error(as_(operator.token_for, luis), grpc.StatusCode.NOT_FOUND, Reason.LUIS_KEYS_NOT_SET)
    await s.set_luis_keys(resource.name, "authoring-key-123", "prediction-key-456")
    records = [await as_(operator.token_for, name) for name in (app.name, luis)]
    assert [(r.name, r.version) for r in records] == [(app.name, 1), (luis, 1)]
    assert [r.sealed for r in records] == await raw_database.speech_sealed_values(speech.config.database_location)
    assert b"s3cr3t-value" not in records[0].sealed and b"authoring-key-123" not in records[1].sealed
    for name in (app.name, luis):
        await expect_rpc_error(as_(s._tokens, name), grpc.StatusCode.PERMISSION_DENIED, Reason.OPERATOR_REQUIRED)
    missing = f"{resource.name}/applications/{'0' * 8}-0000-4000-8000-{'0' * 12}"
    await expect_rpc_error(as_(operator.token_for, missing), grpc.StatusCode.NOT_FOUND, Reason.APPLICATION_NOT_FOUND)
    for malformed in (resource.name, f"{resource.name}/luisKeys/x", f"{resource.name}/applications"):
        await expect_rpc_error(
            as_(operator.token_for, malformed), grpc.StatusCode.INVALID_ARGUMENT, Reason.NAME_MALFORMED
        )


def _resource(created: datetime, tier: Tier = Tier.S0):
    from cmk_trio.speech.model import KeySource, SpeechResource

    resource_id = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/a"
    return SpeechResource(resource_id, "uid", "s", "rg", "a", "westeurope", tier, created, "t",
                          KeySource.MICROSOFT, "v1", b"")  # fmt: skip


@pytest.mark.parametrize(
    ("created", "tier", "approved", "reason"),
    [
        (datetime(2020, 6, 26, tzinfo=UTC), Tier.S0, datetime(2020, 1, 1, tzinfo=UTC), Reason.CMK_RESOURCE_TOO_OLD),
        (datetime(2024, 1, 1, tzinfo=UTC), Tier.F0, datetime(2023, 1, 1, tzinfo=UTC), Reason.CMK_TIER_NOT_SUPPORTED),
        (datetime(2024, 1, 1, tzinfo=UTC), Tier.S0, None, Reason.CMK_NOT_APPROVED),
        (
            datetime(2024, 1, 1, tzinfo=UTC),
            Tier.S0,
            datetime(2024, 2, 1, tzinfo=UTC),
            Reason.CMK_APPROVED_AFTER_CREATION,
        ),
        (CMK_EARLIEST_CREATION, Tier.S0, datetime(2020, 6, 1, tzinfo=UTC), None),
    ],
)
def test_the_seeds_eligibility_rules(created, tier, approved, reason):
    approval = None
    if approved is not None:
        approval = CmkApproval("s", ApprovalState.APPROVED, approved, "o", approved)
    if reason is None:
        check_eligibility(_resource(created, tier), approval)
        return
    with pytest.raises(FailedPrecondition) as caught:
        check_eligibility(_resource(created, tier), approval)
    assert caught.value.reason is reason
    assert "create a new" in caught.value.message or "request approval" in caught.value.message


async def test_a_rotated_master_key_ring_rewraps_data_keys_at_start_and_data_is_untouched(
    speech_customer, speech, tmp_path, identity, operator, channel, clock
):
    from cmk_trio.speech.envelope import rotate_ring_file
    from cmk_trio.speech.server import build_server

    s = speech_customer.speech
    resource = await s.create_resource(speech_customer.subscription_id, "rg1", "s1", "westeurope")
    app = await s.create_application(resource.name, "Lights", CONFIG)
    sealed = "SELECT sealed_configuration FROM applications ORDER BY seq"
    sealed_before = await raw_database.rows(speech.config.database_location, "speech", sealed)
    await speech.stop(grace=0)
    ring = rotate_ring_file(speech.config.ring_path)
    assert ring.current == "v2" and set(ring.keys) == {"v1", "v2"}
    assert speech.config.ring_path.stat().st_mode & 0o777 == 0o600
    restarted = await build_server(speech.config, clock=clock)
    try:
        stored = await restarted.store.get_resource(resource.name)
        assert stored is not None and stored.wrapping_key == "v2"
        from cmk_trio.client.channel import open_channel

        ch = open_channel(restarted.endpoint)
        try:
            again = SpeechClient(ch, speech_customer.tenant.admin_client.token_for)
            assert (await again.get_application(app.name)).configuration_json == CONFIG
        finally:
            await ch.close()
        assert await raw_database.rows(speech.config.database_location, "speech", sealed) == sealed_before
    finally:
        await restarted.stop(grace=0)


async def test_a_ring_file_that_does_not_belong_with_the_database_is_refused_at_start(speech_customer, speech, clock):
    from cmk_trio.rpckit.datadir import StartupError
    from cmk_trio.speech.envelope import MasterKeyRing
    from cmk_trio.speech.server import build_server

    resource = await speech_customer.speech.create_resource(speech_customer.subscription_id, "rg1", "s1", "westeurope")
    await speech.stop(grace=0)
    right = speech.config.ring_path.read_text()
    speech.config.ring_path.write_text(MasterKeyRing({"v1": os.urandom(32)}, "v1").to_json())
    with pytest.raises(StartupError) as caught:
        await build_server(speech.config, clock=clock)
    assert str(speech.config.ring_path) in str(caught.value) and "restore the ring file" in str(caught.value)
    # The refusal let go of everything: with the right ring file back, the service starts.
    speech.config.ring_path.write_text(right)
    restarted = await build_server(speech.config, clock=clock)
    try:
        assert await restarted.resources.unopened_by_ring() is None
        assert (await restarted.store.get_resource(resource.name)) is not None
    finally:
        await restarted.stop(grace=0)


async def test_a_removed_role_stops_working_by_the_directory_event_despite_the_decision_cache(
    speech_customer, operator, channel, clock, sp_channel
):
    resource = await speech_customer.speech.create_resource(speech_customer.subscription_id, "rg1", "s1", "westeurope")
    app = await speech_customer.speech.create_application(resource.name, "Lights", CONFIG)
    bob, _, bob_client = await make_principal(operator, channel, clock, speech_customer.tenant.tenant_id, "bob",
                                              kind=idres.USER)  # fmt: skip
    grant = await speech_customer.tenant.admin_client.create_role_assignment(bob.object_id, idres.READER, resource.name)
    bob_speech = SpeechClient(sp_channel, bob_client.token_for)
    for _ in range(3):  # the yes-answer is cached now
        await bob_speech.get_application(app.name)
    await speech_customer.tenant.admin_client.delete_role_assignment(grant.role_assignment_id)

    async def refused() -> bool | None:
        try:
            await bob_speech.get_application(app.name)
        except NotFound:  # no role left: not even there
            return True
        return None

    await eventually(refused, "the removed role refused")
