"""The gRPC face of resource groups (cmk.identity.v1.ResourceGroupService): requests to the
directory's resource_groups part, groups to messages."""

from __future__ import annotations

from google.protobuf import empty_pb2

from cmk_trio.identity import model, names
from cmk_trio.identity.api import mask_paths, next_token, page_of
from cmk_trio.identity.directory import Directory
from cmk_trio.proto.identity.v1 import identity_service_pb2 as pb
from cmk_trio.proto.identity.v1 import identity_service_pb2_grpc as pb_grpc
from cmk_trio.proto.identity.v1 import resources_pb2 as res
from cmk_trio.rpckit.auth import current_caller
from cmk_trio.rpckit.timestamps import to_timestamp
from cmk_trio.rpckit.types import Context
from cmk_trio.rpckit.validation import require_uuid, resource_group_name


def resource_group_pb(g: model.ResourceGroup, tenant_id: str) -> res.ResourceGroup:
    return res.ResourceGroup(
        name=g.resource_id,
        subscription_id=g.subscription_id,
        resource_group=g.name,
        location=g.location,
        tags=g.tags,
        tenant_id=tenant_id,
        create_time=to_timestamp(g.create_time),
        update_time=to_timestamp(g.update_time),
    )


class ResourceGroupApi(pb_grpc.ResourceGroupServiceServicer):
    """cmk.identity.v1.ResourceGroupService."""

    def __init__(self, directory: Directory) -> None:
        self._d = directory
        self._groups = directory.resource_groups

    async def _actor(self) -> model.Principal:
        caller = current_caller()
        return await self._d.actor(caller.object_id, caller.tenant_id)

    async def CreateResourceGroup(self, request: pb.CreateResourceGroupRequest, context: Context) -> res.ResourceGroup:
        wanted = request.resource_group
        sub_id = require_uuid("resource_group.subscription_id", wanted.subscription_id.lower())
        name = resource_group_name("resource_group.resource_group", wanted.resource_group)
        group, tenant_id = await self._groups.create(
            await self._actor(), sub_id, name, wanted.location, dict(wanted.tags)
        )
        return resource_group_pb(group, tenant_id)

    async def GetResourceGroup(self, request: pb.GetResourceGroupRequest, context: Context) -> res.ResourceGroup:
        sub_id, name = names.resource_group("name", request.name)
        group, tenant_id = await self._groups.get(await self._actor(), sub_id, name)
        return resource_group_pb(group, tenant_id)

    async def ListResourceGroups(
        self, request: pb.ListResourceGroupsRequest, context: Context
    ) -> pb.ListResourceGroupsResponse:
        sub_id = names.subscription_resource_id("parent", request.parent)
        after, limit = page_of("resourceGroups", request.page_size, request.page_token)
        found, tenant_id = await self._groups.list(await self._actor(), sub_id, after=after, limit=limit)
        return pb.ListResourceGroupsResponse(
            resource_groups=[resource_group_pb(g, tenant_id) for g in found],
            next_page_token=next_token("resourceGroups", found, limit, lambda g: g.name),
        )

    async def UpdateResourceGroup(self, request: pb.UpdateResourceGroupRequest, context: Context) -> res.ResourceGroup:
        sub_id, name = names.resource_group("resource_group.name", request.resource_group.name)
        mask_paths(request.update_mask, {"tags"})
        group, tenant_id = await self._groups.set_tags(
            await self._actor(), sub_id, name, dict(request.resource_group.tags)
        )
        return resource_group_pb(group, tenant_id)

    async def DeleteResourceGroup(self, request: pb.DeleteResourceGroupRequest, context: Context) -> empty_pb2.Empty:
        sub_id, name = names.resource_group("name", request.name)
        await self._groups.delete(await self._actor(), sub_id, name)
        return empty_pb2.Empty()
