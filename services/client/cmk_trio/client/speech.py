"""Client of the speech service: resources and approvals with a management token,
applications and LUIS keys with a speech token."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

import grpc
from google.protobuf import field_mask_pb2, timestamp_pb2
from google.protobuf.message import Message

from cmk_trio.client.calls import DEFAULT_TIMEOUT, Tokens, call_as
from cmk_trio.proto.speech.v1 import resources_pb2 as res
from cmk_trio.proto.speech.v1 import speech_service_pb2 as pb
from cmk_trio.proto.speech.v1 import speech_service_pb2_grpc as pb_grpc
from cmk_trio.rpckit import audiences

R = TypeVar("R")


class SpeechClient:
    """The speech service's API; `tokens(audience)` gives bearer tokens."""

    def __init__(self, channel: grpc.aio.Channel, tokens: Tokens, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.channel = channel
        self.resources = pb_grpc.SpeechResourceServiceStub(channel)
        self.apps = pb_grpc.ApplicationServiceStub(channel)
        self.dev = pb_grpc.SpeechDevServiceStub(channel)
        self._tokens = tokens
        self.timeout = timeout
        """Seconds each call may take (a `deadline` block overrides it)."""

    async def _mgmt(self, method: Callable[..., Awaitable[R]], request: Message) -> R:
        return await call_as(self._tokens, audiences.MANAGEMENT, method, request, timeout=self.timeout)

    async def _data(self, method: Callable[..., Awaitable[R]], request: Message) -> R:
        return await call_as(self._tokens, audiences.SPEECH, method, request, timeout=self.timeout)

    # --- resources and approvals ------------------------------------------------------

    async def create_resource(
        self, subscription_id: str, resource_group: str, account_name: str, location: str, *,
        tier: int = res.S0, customer_managed: bool = False, backdate: datetime | None = None,
    ) -> res.SpeechResource:  # fmt: skip
        resource = res.SpeechResource(
            subscription_id=subscription_id, resource_group=resource_group, account_name=account_name,
            location=location, pricing_tier=res.PricingTier.ValueType(tier),
        )  # fmt: skip
        if customer_managed:
            resource.encryption.key_source = res.CUSTOMER_MANAGED
        if backdate is not None:  # the development service's (the operator only)
            stamp = timestamp_pb2.Timestamp()
            stamp.FromDatetime(backdate)
            backdated = pb.CreateBackdatedSpeechResourceRequest(resource=resource, create_time=stamp)
            return await self._mgmt(self.dev.CreateBackdatedSpeechResource, backdated)
        return await self._mgmt(self.resources.CreateSpeechResource, pb.CreateSpeechResourceRequest(resource=resource))

    async def get_resource(self, resource_id: str) -> res.SpeechResource:
        return await self._mgmt(self.resources.GetSpeechResource, pb.GetSpeechResourceRequest(name=resource_id))

    async def list_resources(
        self, subscription_id: str, page_token: str = "", page_size: int = 0
    ) -> pb.ListSpeechResourcesResponse:
        request = pb.ListSpeechResourcesRequest(
            parent=f"subscriptions/{subscription_id}", page_token=page_token, page_size=page_size
        )
        return await self._mgmt(self.resources.ListSpeechResources, request)

    async def delete_resource(self, resource_id: str) -> None:
        await self._mgmt(self.resources.DeleteSpeechResource, pb.DeleteSpeechResourceRequest(name=resource_id))

    async def move_resource(self, resource_id: str, subscription_id: str, resource_group: str) -> res.SpeechResource:
        request = pb.MoveSpeechResourceRequest(
            name=resource_id, target_subscription_id=subscription_id, target_resource_group=resource_group
        )
        return await self._mgmt(self.resources.MoveSpeechResource, request)

    async def assign_identity(self, resource_id: str) -> res.SpeechResource:
        return await self._mgmt(self.resources.AssignIdentity, pb.AssignIdentityRequest(name=resource_id))

    async def remove_identity(self, resource_id: str, *, confirm: bool = False) -> res.SpeechResource:
        request = pb.RemoveIdentityRequest(name=resource_id, confirm_data_inaccessible=confirm)
        return await self._mgmt(self.resources.RemoveIdentity, request)

    async def set_encryption(
        self,
        resource_id: str,
        *,
        key_uri: str = "",
        key_subscription_id: str = "",
        vault_name: str = "",
        key_name: str = "",
        key_version: str = "",
        skip_grant: bool = False,
    ) -> res.SpeechResource:
        """Customer-managed keys, named by `key_uri` + `key_subscription_id` (the vault's
        subscription, always required with a key URI, even when it is the resource's: the
        seed's "key URI and subscription"), or by `vault_name` + `key_name` [+ `key_version`].
        `skip_grant`: the identity's access policy is already in place."""
        request = pb.SetEncryptionRequest(
            name=resource_id, key_uri=key_uri, key_subscription_id=key_subscription_id, vault_name=vault_name,
            key_name=key_name, key_version=key_version,
            skip_grant=skip_grant,
        )  # fmt: skip
        return await self._mgmt(self.resources.SetEncryption, request)

    async def disable_encryption(self, resource_id: str) -> res.SpeechResource:
        return await self._mgmt(self.resources.DisableEncryption, pb.DisableEncryptionRequest(name=resource_id))

    async def request_approval(self, subscription_id: str, note: str = "") -> res.CmkApproval:
        request = pb.RequestCmkApprovalRequest(name=approval_name(subscription_id), note=note)
        return await self._mgmt(self.resources.RequestCmkApproval, request)

    async def approve(self, subscription_id: str, note: str = "") -> res.CmkApproval:
        request = pb.ApproveCmkApprovalRequest(name=approval_name(subscription_id), note=note)
        return await self._mgmt(self.resources.ApproveCmkApproval, request)

    async def reject(self, subscription_id: str, note: str = "") -> res.CmkApproval:
        request = pb.RejectCmkApprovalRequest(name=approval_name(subscription_id), note=note)
        return await self._mgmt(self.resources.RejectCmkApproval, request)

    async def get_approval(self, subscription_id: str) -> res.CmkApproval:
        request = pb.GetCmkApprovalRequest(name=approval_name(subscription_id))
        return await self._mgmt(self.resources.GetCmkApproval, request)

    # --- applications and LUIS keys ---------------------------------------------------

    async def create_application(self, resource_id: str, display_name: str, configuration_json: str) -> res.Application:
        app = res.Application(display_name=display_name, configuration_json=configuration_json)
        return await self._data(
            self.apps.CreateApplication, pb.CreateApplicationRequest(parent=resource_id, application=app)
        )

    async def get_application(self, name: str) -> res.Application:
        return await self._data(self.apps.GetApplication, pb.GetApplicationRequest(name=name))

    async def list_applications(
        self, resource_id: str, page_size: int = 0, page_token: str = ""
    ) -> pb.ListApplicationsResponse:
        request = pb.ListApplicationsRequest(parent=resource_id, page_size=page_size, page_token=page_token)
        return await self._data(self.apps.ListApplications, request)

    async def update_application(
        self, name: str, etag: str, display_name: str | None = None, configuration_json: str | None = None
    ) -> res.Application:
        """Change what is given (the update mask names it); `etag` is the one read last."""
        app = res.Application(name=name, etag=etag, display_name=display_name or "",
                              configuration_json=configuration_json or "")  # fmt: skip
        given = {"display_name": display_name, "configuration_json": configuration_json}
        mask = field_mask_pb2.FieldMask(paths=[path for path, value in given.items() if value is not None])
        request = pb.UpdateApplicationRequest(application=app, update_mask=mask)
        return await self._data(self.apps.UpdateApplication, request)

    async def delete_application(self, name: str, etag: str = "") -> None:
        await self._data(self.apps.DeleteApplication, pb.DeleteApplicationRequest(name=name, etag=etag))

    async def set_luis_keys(self, resource_id: str, authoring: str, prediction: str) -> res.LuisKeys:
        keys = res.LuisKeys(authoring_key=authoring, prediction_key=prediction)
        return await self._data(self.apps.SetLuisKeys, pb.SetLuisKeysRequest(parent=resource_id, luis_keys=keys))

    async def get_luis_keys(self, resource_id: str) -> res.LuisKeys:
        return await self._data(self.apps.GetLuisKeys, pb.GetLuisKeysRequest(parent=resource_id))


def approval_name(subscription_id: str) -> str:
    """A subscription's CMK approval, as the API names it."""
    return f"subscriptions/{subscription_id}/cmkApproval"
