"""The secrets half of the key vault's Azure door, for azure-keyvault-secrets' SecretClient:

    PUT    /secrets/{name}                 set (a new version)
    GET    /secrets/{name}[/{version}]     get, with the value
    PATCH  /secrets/{name}/{version}       update attributes
    GET    /secrets, /secrets/{name}/versions
    DELETE /secrets/{name}                 delete (soft)
    GET    /deletedsecrets[/{name}], DELETE /deletedsecrets/{name} (purge),
    POST   /deletedsecrets/{name}/recover
    POST   /secrets/{name}/backup, /secrets/restore

Every route runs behind the door's middleware (rest_door.KeyVaultDoor: the challenge, the
token, the limits, the errors) and turns its JSON into the gRPC SecretService's request: the
same method decides both doors.
"""

from __future__ import annotations

from typing import cast

from aiohttp import web

from cmk_trio.keyvault import rest_requests as req
from cmk_trio.keyvault import rest_shapes as shapes
from cmk_trio.keyvault.api.secret_service import SecretApi
from cmk_trio.proto.keyvault.v1 import keyvault_service_pb2 as pb
from cmk_trio.rpckit.types import Context

NO_CONTEXT = cast(Context, None)
"""The servicer's methods are called in-process: the door has authenticated the caller."""


class SecretRoutes:
    """The secret routes, over the gRPC SecretService's servicer."""

    def __init__(self, api: SecretApi) -> None:
        self._api = api

    def add_to(self, router: web.UrlDispatcher) -> None:
        add = router.add_route
        add("GET", "/secrets", self.list_secrets, name="ListSecrets")
        add("POST", "/secrets/restore", self.restore, name="RestoreSecret")
        add("POST", "/secrets/{name}/backup", self.backup, name="BackupSecret")
        add("GET", "/secrets/{name}/versions", self.list_versions, name="ListSecretVersions")
        add("PUT", "/secrets/{name}", self.set, name="SetSecret")
        add("DELETE", "/secrets/{name}", self.delete, name="DeleteSecret")
        add("GET", "/secrets/{name}", self.get, name="GetSecret")
        add("GET", "/secrets/{name}/{version:[^/]*}", self.get, name="GetSecretVersion")
        add("PATCH", "/secrets/{name}/{version:[^/]*}", self.update, name="UpdateSecret")
        add("GET", "/deletedsecrets", self.list_deleted, name="ListDeletedSecrets")
        add("GET", "/deletedsecrets/{name}", self.get_deleted, name="GetDeletedSecret")
        add("DELETE", "/deletedsecrets/{name}", self.purge, name="PurgeDeletedSecret")
        add("POST", "/deletedsecrets/{name}/recover", self.recover, name="RecoverDeletedSecret")

    @staticmethod
    def _name(request: web.Request, version: str | None = None) -> str:
        return req.named(request, "secrets", version)

    async def set(self, request: web.Request) -> web.Response:
        spec, _ = shapes.secret_spec(req.body(request), setting=True)
        made = await self._api.SetSecret(
            pb.SetSecretRequest(parent=req.parent(request), secret_name=request.match_info["name"], secret=spec),
            NO_CONTEXT,
        )
        return web.json_response(shapes.secret_bundle(made, with_value=True))

    async def get(self, request: web.Request) -> web.Response:
        got = await self._api.GetSecret(pb.GetSecretRequest(name=self._name(request, req.path_version(request))),
                                        NO_CONTEXT)  # fmt: skip
        return web.json_response(shapes.secret_bundle(got, with_value=True))

    async def update(self, request: web.Request) -> web.Response:
        spec, given = shapes.secret_spec(req.body(request), setting=False)
        update = pb.UpdateSecretRequest(name=self._name(request, req.path_version(request)), attributes=spec)
        update.update_mask.paths.extend(given)
        updated = await self._api.UpdateSecret(update, NO_CONTEXT)
        return web.json_response(shapes.secret_bundle(updated, with_value=False))

    async def delete(self, request: web.Request) -> web.Response:
        deleted = await self._api.DeleteSecret(pb.DeleteSecretRequest(name=self._name(request)), NO_CONTEXT)
        return web.json_response(shapes.deleted_secret_bundle(deleted))

    async def get_deleted(self, request: web.Request) -> web.Response:
        found = await self._api.GetDeletedSecret(pb.GetDeletedSecretRequest(name=self._name(request)), NO_CONTEXT)
        return web.json_response(shapes.deleted_secret_bundle(found))

    async def recover(self, request: web.Request) -> web.Response:
        recovered = await self._api.RecoverDeletedSecret(
            pb.RecoverDeletedSecretRequest(name=self._name(request)), NO_CONTEXT
        )
        return web.json_response(shapes.secret_bundle(recovered, with_value=False))

    async def purge(self, request: web.Request) -> web.Response:
        await self._api.PurgeDeletedSecret(pb.PurgeDeletedSecretRequest(name=self._name(request)), NO_CONTEXT)
        return web.Response(status=204)

    async def backup(self, request: web.Request) -> web.Response:
        made = await self._api.BackupSecret(pb.BackupSecretRequest(name=self._name(request)), NO_CONTEXT)
        return web.json_response({"value": shapes.b64url(made.backup)})

    async def restore(self, request: web.Request) -> web.Response:
        blob = shapes.from_b64url("value", req.body(request).get("value"))
        restored = await self._api.RestoreSecret(pb.RestoreSecretRequest(parent=req.parent(request), backup=blob),
                                                 NO_CONTEXT)  # fmt: skip
        return web.json_response(shapes.secret_bundle(restored, with_value=False))

    async def list_secrets(self, request: web.Request) -> web.Response:
        size, token = req.page(request)
        found = await self._api.ListSecrets(
            pb.ListSecretsRequest(parent=req.parent(request), page_size=size, page_token=token), NO_CONTEXT
        )
        return req.listing(request, [shapes.secret_item(s, versioned=False) for s in found.secrets], size,
                           found.next_page_token)  # fmt: skip

    async def list_versions(self, request: web.Request) -> web.Response:
        size, token = req.page(request)
        found = await self._api.ListSecretVersions(
            pb.ListSecretVersionsRequest(parent=self._name(request), page_size=size, page_token=token), NO_CONTEXT
        )
        return req.listing(request, [shapes.secret_item(s, versioned=True) for s in found.versions], size,
                           found.next_page_token)  # fmt: skip

    async def list_deleted(self, request: web.Request) -> web.Response:
        size, token = req.page(request)
        found = await self._api.ListDeletedSecrets(
            pb.ListDeletedSecretsRequest(parent=req.parent(request), page_size=size, page_token=token), NO_CONTEXT
        )
        return req.listing(request, [shapes.deleted_secret_item(d) for d in found.deleted_secrets], size,
                           found.next_page_token)  # fmt: skip
