"""The synchronous SpeechClient: generated from cmk_trio.client.speech by
scripts/gen_sync_clients.py. Do not edit; `python scripts/gen_sync_clients.py` makes it again."""

# @generated

from __future__ import annotations

from datetime import datetime

from cmk_trio.client.blocking import Blocking
from cmk_trio.client.speech import SpeechClient
from cmk_trio.proto.speech.v1 import resources_pb2 as res
from cmk_trio.proto.speech.v1 import speech_service_pb2 as pb


class SyncSpeechClient(Blocking[SpeechClient]):
    """The speech service's API; `tokens(audience)` gives bearer tokens.

    (Synchronous: each call blocks.)"""

    def create_resource(
        self,
        subscription_id: str,
        resource_group: str,
        account_name: str,
        location: str,
        *,
        tier: int = res.S0,
        customer_managed: bool = False,
        backdate: datetime | None = None,
    ) -> res.SpeechResource:
        return self._runner.run(
            self._inner.create_resource(
                subscription_id,
                resource_group,
                account_name,
                location,
                tier=tier,
                customer_managed=customer_managed,
                backdate=backdate,
            )
        )

    def get_resource(self, resource_id: str) -> res.SpeechResource:
        return self._runner.run(self._inner.get_resource(resource_id))

    def list_resources(
        self, subscription_id: str, page_token: str = "", page_size: int = 0
    ) -> pb.ListSpeechResourcesResponse:
        return self._runner.run(self._inner.list_resources(subscription_id, page_token, page_size))

    def delete_resource(self, resource_id: str) -> None:
        self._runner.run(self._inner.delete_resource(resource_id))

    def move_resource(self, resource_id: str, subscription_id: str, resource_group: str) -> res.SpeechResource:
        return self._runner.run(self._inner.move_resource(resource_id, subscription_id, resource_group))

    def assign_identity(self, resource_id: str) -> res.SpeechResource:
        return self._runner.run(self._inner.assign_identity(resource_id))

    def remove_identity(self, resource_id: str, *, confirm: bool = False) -> res.SpeechResource:
        return self._runner.run(self._inner.remove_identity(resource_id, confirm=confirm))

    def set_encryption(
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
        return self._runner.run(
            self._inner.set_encryption(
                resource_id,
                key_uri=key_uri,
                key_subscription_id=key_subscription_id,
                vault_name=vault_name,
                key_name=key_name,
                key_version=key_version,
                skip_grant=skip_grant,
            )
        )

    def disable_encryption(self, resource_id: str) -> res.SpeechResource:
        return self._runner.run(self._inner.disable_encryption(resource_id))

    def request_approval(self, subscription_id: str, note: str = "") -> res.CmkApproval:
        return self._runner.run(self._inner.request_approval(subscription_id, note))

    def approve(self, subscription_id: str, note: str = "") -> res.CmkApproval:
        return self._runner.run(self._inner.approve(subscription_id, note))

    def reject(self, subscription_id: str, note: str = "") -> res.CmkApproval:
        return self._runner.run(self._inner.reject(subscription_id, note))

    def get_approval(self, subscription_id: str) -> res.CmkApproval:
        return self._runner.run(self._inner.get_approval(subscription_id))

    def create_application(self, resource_id: str, display_name: str, configuration_json: str) -> res.Application:
        return self._runner.run(self._inner.create_application(resource_id, display_name, configuration_json))

    def get_application(self, name: str) -> res.Application:
        return self._runner.run(self._inner.get_application(name))

    def list_applications(
        self, resource_id: str, page_size: int = 0, page_token: str = ""
    ) -> pb.ListApplicationsResponse:
        return self._runner.run(self._inner.list_applications(resource_id, page_size, page_token))

    def update_application(
        self, name: str, etag: str, display_name: str | None = None, configuration_json: str | None = None
    ) -> res.Application:
        """Change what is given (the update mask names it); `etag` is the one read last."""
        return self._runner.run(self._inner.update_application(name, etag, display_name, configuration_json))

    def delete_application(self, name: str, etag: str = "") -> None:
        self._runner.run(self._inner.delete_application(name, etag))

    def set_luis_keys(self, resource_id: str, authoring: str, prediction: str) -> res.LuisKeys:
        return self._runner.run(self._inner.set_luis_keys(resource_id, authoring, prediction))

    def get_luis_keys(self, resource_id: str) -> res.LuisKeys:
        return self._runner.run(self._inner.get_luis_keys(resource_id))
