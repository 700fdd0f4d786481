"""The gRPC face of the speech service: requests to domain calls and back. No rules here."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime

from google.protobuf import empty_pb2

from cmk_trio.proto.speech.v1 import resources_pb2 as res
from cmk_trio.proto.speech.v1 import speech_service_pb2 as pb
from cmk_trio.proto.speech.v1 import speech_service_pb2_grpc as pb_grpc
from cmk_trio.rpckit.auth import current_caller
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.storage import decode_page_token, decode_sequence_token, encode_page_token, page_size_of
from cmk_trio.rpckit.timestamps import from_timestamp, to_timestamp
from cmk_trio.rpckit.types import Context
from cmk_trio.rpckit.validation import cmk_approval_subscription, mask_paths, subscription_parent
from cmk_trio.speech.data import Data, DataKeySource, LuisKeys, OpenedApplication
from cmk_trio.speech.encryption import Encryption, choose_key
from cmk_trio.speech.errors import ServiceError, invalid_field
from cmk_trio.speech.model import ApprovalState, CmkApproval, KeySource, SpeechResource
from cmk_trio.speech.resources import Resources

APPLICATION_NAME = re.compile(
    r"(?P<resource>/subscriptions/.+/accounts/[^/]+)/applications/(?P<app>[^/]+)", re.IGNORECASE
)
LUIS_KEYS_NAME = re.compile(r"(?P<resource>/subscriptions/.+/accounts/[^/]+)/luisKeys", re.IGNORECASE)
TIERS = {res.F0: "F0", res.S0: "S0"}
TIER_PB = {"F0": res.F0, "S0": res.S0}
APPROVAL_PB = {ApprovalState.REQUESTED: res.REQUESTED, ApprovalState.APPROVED: res.APPROVED,
               ApprovalState.REJECTED: res.REJECTED}  # fmt: skip


def resource_pb(r: SpeechResource, problem: ServiceError | None) -> res.SpeechResource:
    """The resource, with its encryption status: healthy if its data key can be had now,
    otherwise inaccessible with the reason why."""
    customer = r.key_source is KeySource.CUSTOMER
    # The key in use, https://{vault}.{suffix}/keys/{name}/{version}: its vault's URI and name.
    vault_part, _, key_part = r.wrapping_key.partition("/keys/") if customer else ("", "", "")
    return res.SpeechResource(
        name=r.resource_id,
        subscription_id=r.subscription_id,
        resource_group=r.resource_group,
        account_name=r.account_name,
        location=r.location,
        pricing_tier=TIER_PB[r.tier.value],
        create_time=to_timestamp(r.create_time),
        identity=res.ResourceIdentity(
            system_assigned=bool(r.identity_principal_id),
            principal_id=r.identity_principal_id,
            tenant_id=r.identity_tenant_id,
        ),
        encryption=res.Encryption(
            key_source=res.CUSTOMER_MANAGED if customer else res.MICROSOFT_MANAGED,
            key_uri=r.key_uri,
            key_version=r.wrapping_key.rsplit("/", 1)[-1] if customer else "",
            vault_uri=f"{vault_part}/" if key_part else "",
            key_name=key_part.split("/", 1)[0],
            follow_latest_version=r.follow_latest,
            status=res.HEALTHY if problem is None else res.KEY_INACCESSIBLE,
            inaccessible_reason="" if problem is None else problem.reason.value,
        ),
        tenant_id=r.tenant_id,
    )


def approval_pb(a: CmkApproval) -> res.CmkApproval:
    return res.CmkApproval(
        name=f"subscriptions/{a.subscription_id}/cmkApproval", subscription_id=a.subscription_id,
        state=APPROVAL_PB[a.state], request_time=to_timestamp(a.request_time),
        decision_time=to_timestamp(a.decision_time), requested_by=a.requested_by, note=a.note,
    )  # fmt: skip


def application_pb(a: OpenedApplication) -> res.Application:
    r = a.record
    return res.Application(
        name=f"{r.resource_id}/applications/{r.application_id}", application_id=r.application_id,
        display_name=r.display_name, configuration_json=a.configuration_json or "", etag=r.etag,
        create_time=to_timestamp(r.create_time), update_time=to_timestamp(r.update_time),
        configuration_withheld=a.configuration_json is None,
    )  # fmt: skip


def luis_pb(resource_id: str, keys: LuisKeys) -> res.LuisKeys:
    when = keys.update_time
    return res.LuisKeys(
        name=f"{resource_id}/luisKeys", authoring_key=keys.authoring_key, prediction_key=keys.prediction_key,
        update_time=to_timestamp(when),
    )  # fmt: skip


def _application_name(name: str) -> tuple[str, str]:
    match = APPLICATION_NAME.fullmatch(name)
    if match is None:
        raise invalid_field("name", Reason.NAME_MALFORMED, "must be {resource id}/applications/{application_id}")
    return match.group("resource"), match.group("app")


def _record_name(name: str) -> tuple[str, str | None]:
    """(resource id, application id) of an application's name; (resource id, None) of the LUIS keys'."""
    luis = LUIS_KEYS_NAME.fullmatch(name)
    if luis is not None:
        return luis.group("resource"), None
    if APPLICATION_NAME.fullmatch(name) is None:
        raise invalid_field(
            "name", Reason.NAME_MALFORMED,
            "must be {resource id}/applications/{application_id} or {resource id}/luisKeys",
        )  # fmt: skip
    return _application_name(name)


class SpeechResourceApi(pb_grpc.SpeechResourceServiceServicer):
    """cmk.speech.v1.SpeechResourceService."""

    def __init__(self, resources: Resources, keys: DataKeySource, encryption: Encryption) -> None:
        self._r = resources
        self._keys = keys
        self._e = encryption

    @property
    def resources(self) -> Resources:
        return self._r

    async def describe(self, resource: SpeechResource) -> res.SpeechResource:
        """The resource as the API shows it, with its encryption status."""
        return await self._pb(resource)

    async def _pb(self, resource: SpeechResource) -> res.SpeechResource:
        try:
            await self._keys.data_key(resource)
        except ServiceError as problem:
            return resource_pb(resource, problem)
        return resource_pb(resource, None)

    async def CreateSpeechResource(
        self, request: pb.CreateSpeechResourceRequest, context: Context
    ) -> res.SpeechResource:
        return await self._pb(await create_resource(self._r, request.resource, None))

    async def GetSpeechResource(self, request: pb.GetSpeechResourceRequest, context: Context) -> res.SpeechResource:
        return await self._pb(await self._r.get(current_caller(), request.name))

    async def ListSpeechResources(
        self, request: pb.ListSpeechResourcesRequest, context: Context
    ) -> pb.ListSpeechResourcesResponse:
        after, limit = decode_page_token("resources", request.page_token), page_size_of(request.page_size)
        subscription_id = subscription_parent("parent", request.parent)
        found = await self._r.list_resources(current_caller(), subscription_id, after=after, limit=limit)
        return pb.ListSpeechResourcesResponse(
            # Each customer-managed resource's status asks its vault (on a cold cache): together, not in turn.
            resources=await asyncio.gather(*(self._pb(r) for r in found)),
            next_page_token=encode_page_token("resources", found[-1].resource_id.lower())
            if len(found) == limit
            else "",
        )

    async def DeleteSpeechResource(self, request: pb.DeleteSpeechResourceRequest, context: Context) -> empty_pb2.Empty:
        await self._e.delete(current_caller(), request.name)
        return empty_pb2.Empty()

    async def MoveSpeechResource(self, request: pb.MoveSpeechResourceRequest, context: Context) -> res.SpeechResource:
        moved = await self._e.move(
            current_caller(), request.name, request.target_subscription_id, request.target_resource_group
        )
        return await self._pb(moved)

    async def AssignIdentity(self, request: pb.AssignIdentityRequest, context: Context) -> res.SpeechResource:
        return await self._pb(await self._e.assign_identity(current_caller(), request.name))

    async def RemoveIdentity(self, request: pb.RemoveIdentityRequest, context: Context) -> res.SpeechResource:
        removed = await self._e.remove_identity(current_caller(), request.name, request.confirm_data_inaccessible)
        return await self._pb(removed)

    async def SetEncryption(self, request: pb.SetEncryptionRequest, context: Context) -> res.SpeechResource:
        choice = choose_key(
            self._e.dns_suffix, key_uri=request.key_uri, key_subscription_id=request.key_subscription_id,
            vault=request.vault_name, key=request.key_name, version=request.key_version,
        )  # fmt: skip
        updated = await self._e.set_customer_managed(
            current_caller(), request.name, choice, skip_grant=request.skip_grant
        )
        return await self._pb(updated)

    async def DisableEncryption(self, request: pb.DisableEncryptionRequest, context: Context) -> res.SpeechResource:
        return await self._pb(await self._e.set_microsoft_managed(current_caller(), request.name))

    async def RequestCmkApproval(self, request: pb.RequestCmkApprovalRequest, context: Context) -> res.CmkApproval:
        subscription_id = cmk_approval_subscription("name", request.name)
        return approval_pb(await self._r.request_approval(current_caller(), subscription_id, request.note))

    async def ApproveCmkApproval(self, request: pb.ApproveCmkApprovalRequest, context: Context) -> res.CmkApproval:
        subscription_id = cmk_approval_subscription("name", request.name)
        return approval_pb(await self._r.decide(current_caller(), subscription_id, True, request.note))

    async def RejectCmkApproval(self, request: pb.RejectCmkApprovalRequest, context: Context) -> res.CmkApproval:
        subscription_id = cmk_approval_subscription("name", request.name)
        return approval_pb(await self._r.decide(current_caller(), subscription_id, False, request.note))

    async def GetCmkApproval(self, request: pb.GetCmkApprovalRequest, context: Context) -> res.CmkApproval:
        subscription_id = cmk_approval_subscription("name", request.name)
        return approval_pb(await self._r.get_approval(current_caller(), subscription_id))


async def create_resource(resources: Resources, r: res.SpeechResource, backdate: datetime | None) -> SpeechResource:
    if r.pricing_tier not in TIERS:
        raise invalid_field("resource.pricing_tier", Reason.ENUM_UNKNOWN, "must be F0 or S0")
    return await resources.create(
        current_caller(),
        subscription_id=r.subscription_id,
        resource_group=r.resource_group,
        account_name=r.account_name,
        location=r.location,
        tier=TIERS[r.pricing_tier],
        customer_managed=r.encryption.key_source == res.CUSTOMER_MANAGED,
        backdate=backdate,
    )


class SpeechDevApi(pb_grpc.SpeechDevServiceServicer):
    """cmk.speech.v1.SpeechDevService: what only tests and demonstrations need."""

    def __init__(self, resources: SpeechResourceApi, data: Data) -> None:
        self._api = resources
        self._data = data

    async def CreateBackdatedSpeechResource(
        self, request: pb.CreateBackdatedSpeechResourceRequest, context: Context
    ) -> res.SpeechResource:
        if not request.HasField("create_time"):
            raise invalid_field("create_time", Reason.FIELD_REQUIRED, "is required")
        backdate = from_timestamp("create_time", request.create_time)
        # (the operator only: Resources.create says so to anyone else)
        return await self._api.describe(await create_resource(self._api.resources, request.resource, backdate))

    async def GetSealedRecord(self, request: pb.GetSealedRecordRequest, context: Context) -> pb.SealedRecord:
        resource_id, app_id = _record_name(request.name)
        record = await self._data.sealed_record(current_caller(), resource_id, app_id)
        return pb.SealedRecord(name=request.name, sealed=record.sealed, version=record.version)


class ApplicationApi(pb_grpc.ApplicationServiceServicer):
    """cmk.speech.v1.ApplicationService."""

    def __init__(self, data: Data) -> None:
        self._d = data

    async def CreateApplication(self, request: pb.CreateApplicationRequest, context: Context) -> res.Application:
        a = request.application
        return application_pb(
            await self._d.create_application(current_caller(), request.parent, a.display_name, a.configuration_json)
        )

    async def GetApplication(self, request: pb.GetApplicationRequest, context: Context) -> res.Application:
        resource_id, app_id = _application_name(request.name)
        return application_pb(await self._d.get_application(current_caller(), resource_id, app_id))

    async def ListApplications(
        self, request: pb.ListApplicationsRequest, context: Context
    ) -> pb.ListApplicationsResponse:
        after = decode_sequence_token("applications", request.page_token)
        limit = page_size_of(request.page_size)
        found = await self._d.list_applications(current_caller(), request.parent, after=after, limit=limit)
        return pb.ListApplicationsResponse(
            applications=[application_pb(a) for _, a in found],
            next_page_token=encode_page_token("applications", str(found[-1][0])) if len(found) == limit else "",
        )

    async def UpdateApplication(self, request: pb.UpdateApplicationRequest, context: Context) -> res.Application:
        a = request.application
        resource_id, app_id = _application_name(a.name)
        updatable = {"display_name", "configuration_json"}
        if request.update_mask.paths:
            paths = mask_paths(request.update_mask, updatable)
        else:  # AIP-134: no mask means the fields the request sets
            paths = {name for name in updatable if getattr(a, name)}
            if not paths:
                raise invalid_field("update_mask", Reason.UPDATE_MASK_INVALID, "nothing to change: set a field")
        updated = await self._d.update_application(
            current_caller(), resource_id, app_id, a.etag,
            a.display_name if "display_name" in paths else None,
            a.configuration_json if "configuration_json" in paths else None,
        )  # fmt: skip
        return application_pb(updated)

    async def DeleteApplication(self, request: pb.DeleteApplicationRequest, context: Context) -> empty_pb2.Empty:
        resource_id, app_id = _application_name(request.name)
        await self._d.delete_application(current_caller(), resource_id, app_id, request.etag)
        return empty_pb2.Empty()

    async def SetLuisKeys(self, request: pb.SetLuisKeysRequest, context: Context) -> res.LuisKeys:
        k = request.luis_keys
        keys = await self._d.set_luis_keys(current_caller(), request.parent, k.authoring_key, k.prediction_key)
        return luis_pb(request.parent, keys)

    async def GetLuisKeys(self, request: pb.GetLuisKeysRequest, context: Context) -> res.LuisKeys:
        return luis_pb(request.parent, await self._d.get_luis_keys(current_caller(), request.parent))
