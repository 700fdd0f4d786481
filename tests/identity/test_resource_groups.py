"""Resource groups over the wire: their life, who may do what (authorization before
existence, as in Azure Resource Manager), what deleting one takes with it, a role assignment
id the caller chooses, the audiences accepted, and bad input that changes nothing."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from cmk_trio.proto.identity.v1 import identity_service_pb2 as pb
from cmk_trio.proto.identity.v1 import identity_service_pb2_grpc as pb_grpc
from cmk_trio.proto.identity.v1 import resources_pb2 as res
from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.testing import expect_rpc_error
from tests import raw_database
from tests.identity.helpers import make_principal, make_tenant, resource_id

BAD = grpc.StatusCode.INVALID_ARGUMENT


async def test_a_group_lives_and_dies(operator, channel, clock):
    t = await make_tenant(operator, channel, clock, "Contoso")
    admin = t.admin_client
    made = await admin.create_resource_group(t.subscription_id, "Rg-One", "West Europe", {"env": "test"})
    assert made.name == f"/subscriptions/{t.subscription_id}/resourceGroups/Rg-One"
    assert (made.location, dict(made.tags), made.tenant_id) == ("westeurope", {"env": "test"}, t.tenant_id)
    assert made.HasField("create_time") and not made.HasField("update_time")
    # Names compare ignoring case, and keep the case they were made with.
    got = await admin.get_resource_group(t.subscription_id, "rg-one")
    assert got.resource_group == "Rg-One"
    with pytest.raises(AlreadyExists) as caught:
        await admin.create_resource_group(t.subscription_id, "RG-ONE", "westeurope")
    assert caught.value.reason is Reason.RESOURCE_GROUP_EXISTS
    retagged = await admin.update_resource_group_tags(t.subscription_id, "RG-one", {"env": "prod", "team": "a"})
    assert dict(retagged.tags) == {"env": "prod", "team": "a"} and retagged.HasField("update_time")
    assert dict((await admin.get_resource_group(t.subscription_id, "Rg-One")).tags) == {"env": "prod", "team": "a"}
    listed = await admin.list_resource_groups(t.subscription_id)
    assert [g.resource_group for g in listed.resource_groups] == ["Rg-One"]
    await admin.delete_resource_group(t.subscription_id, "rg-ONE")
    for missing in (admin.get_resource_group, admin.delete_resource_group):
        with pytest.raises(NotFound) as gone:
            await missing(t.subscription_id, "Rg-One")
        assert gone.value.reason is Reason.RESOURCE_GROUP_NOT_FOUND
    assert not (await admin.list_resource_groups(t.subscription_id)).resource_groups


async def test_authorization_comes_before_existence(operator, channel, clock):
    """Without a role, an existing group and a missing one are refused alike; a Reader reads
    what it was granted and changes nothing; another tenant's subscription does not exist."""
    t = await make_tenant(operator, channel, clock, "Contoso")
    other = await make_tenant(operator, channel, clock, "Fabrikam")
    sub = t.subscription_id
    await t.admin_client.create_resource_group(sub, "shown", "westeurope")
    await t.admin_client.create_resource_group(sub, "hidden", "westeurope")
    bob, _, bob_client = await make_principal(operator, channel, clock, t.tenant_id, "bob", kind=res.USER)
    for name in ("shown", "no-such-group"):
        with pytest.raises(PermissionDenied) as caught:
            await bob_client.get_resource_group(sub, name)
        assert caught.value.reason is Reason.ROLE_REQUIRED
    assert not (await bob_client.list_resource_groups(sub)).resource_groups

    await t.admin_client.create_role_assignment(bob.object_id, res.READER, f"/subscriptions/{sub}/resourceGroups/SHOWN")
    assert (await bob_client.get_resource_group(sub, "shown")).resource_group == "shown"
    assert [g.resource_group for g in (await bob_client.list_resource_groups(sub)).resource_groups] == ["shown"]
    for change in (
        bob_client.create_resource_group(sub, "mine", "westeurope"),
        bob_client.update_resource_group_tags(sub, "shown", {"a": "b"}),
        bob_client.delete_resource_group(sub, "shown"),
    ):
        with pytest.raises(PermissionDenied) as caught:
            await change
        assert caught.value.reason is Reason.ROLE_REQUIRED

    # Contributor on the subscription creates and deletes anywhere in it.
    await t.admin_client.create_role_assignment(bob.object_id, res.CONTRIBUTOR, f"/subscriptions/{sub}")
    await bob_client.create_resource_group(sub, "mine", "westeurope")
    await bob_client.delete_resource_group(sub, "hidden")

    for call in (
        other.admin_client.get_resource_group(sub, "shown"),
        other.admin_client.list_resource_groups(sub),
        other.admin_client.create_resource_group(sub, "theirs", "westeurope"),
        t.admin_client.get_resource_group(str(uuid.uuid4()), "shown"),
    ):
        with pytest.raises(NotFound) as hidden:
            await call
        assert hidden.value.reason is Reason.SUBSCRIPTION_NOT_FOUND


async def test_deleting_a_group_removes_the_role_assignments_on_it_and_below(operator, channel, clock):
    t = await make_tenant(operator, channel, clock, "Contoso")
    sub = t.subscription_id
    bob, _, bob_client = await make_principal(operator, channel, clock, t.tenant_id, "bob", kind=res.USER)
    await t.admin_client.create_resource_group(sub, "rg1", "westeurope")
    rg1 = f"/subscriptions/{sub}/resourceGroups/rg1"
    kept_scopes = [f"/subscriptions/{sub}", f"/subscriptions/{sub}/resourceGroups/rg10"]  # (rg10 is not under rg1)
    gone_scopes = [rg1.upper().replace("SUBSCRIPTIONS", "subscriptions"), resource_id(sub)]
    for scope in kept_scopes[1:] + gone_scopes:
        await t.admin_client.create_role_assignment(bob.object_id, res.CONTRIBUTOR, scope)
    await t.admin_client.create_role_assignment(bob.object_id, res.READER, kept_scopes[0])
    assert (await bob_client.check_access(resource_id(sub), res.WRITE)).allowed

    await t.admin_client.delete_resource_group(sub, "RG1")
    left = (await operator.list_role_assignments(principal_id=bob.object_id)).role_assignments
    assert sorted(a.scope for a in left) == sorted(kept_scopes)
    assert not (await bob_client.check_access(resource_id(sub), res.WRITE)).allowed
    assert (await bob_client.check_access(resource_id(sub), res.READ)).allowed  # the Reader on the subscription
    events = []
    async for event in operator.watch_events(0):
        if event.type == res.ROLE_ASSIGNMENTS_CHANGED and event.principal_id == bob.object_id:
            events.append(event)
        if len(events) == len(kept_scopes) + 2 * len(gone_scopes):  # made, then the removals
            break
    removed = events[-len(gone_scopes) :]
    assert sorted(e.scope.lower() for e in removed) == sorted(s.lower() for s in gone_scopes)
    assert {e.subscription_id for e in removed} == {sub}


async def test_a_role_assignment_id_the_caller_chose(operator, channel, clock):
    t = await make_tenant(operator, channel, clock, "Contoso")
    bob, _, bob_client = await make_principal(operator, channel, clock, t.tenant_id, "bob", kind=res.USER)
    chosen = str(uuid.uuid4())
    scope = f"/subscriptions/{t.subscription_id}/resourceGroups/rg1"
    made = await t.admin_client.create_role_assignment(bob.object_id, res.READER, scope, chosen)
    assert made.role_assignment_id == chosen and made.name == f"roleAssignments/{chosen}"
    assert (await operator.get_role_assignment(chosen)).scope == scope
    with pytest.raises(AlreadyExists) as caught:  # the same id for another grant
        await t.admin_client.create_role_assignment(bob.object_id, res.OWNER, scope, chosen)
    assert caught.value.reason is Reason.ROLE_ASSIGNMENT_EXISTS
    # One who may not grant learns nothing of which ids are taken.
    with pytest.raises(PermissionDenied) as denied:
        await bob_client.create_role_assignment(bob.object_id, res.OWNER, scope, chosen)
    assert denied.value.reason is Reason.ROLE_REQUIRED
    with pytest.raises(InvalidArgument) as bad:
        await t.admin_client.create_role_assignment(bob.object_id, res.OWNER, scope, "not-a-uuid")
    assert bad.value.reason is Reason.UUID_MALFORMED


def _stub(channel: grpc.aio.Channel) -> Any:
    return pb_grpc.ResourceGroupServiceStub(channel)  # (its methods typed as the synchronous stub's)


async def test_management_and_directory_tokens_are_accepted_and_no_other(operator, channel, clock):
    t = await make_tenant(operator, channel, clock, "Contoso")
    await t.admin_client.create_resource_group(t.subscription_id, "rg1", "westeurope")
    request = pb.GetResourceGroupRequest(name=f"/subscriptions/{t.subscription_id}/resourceGroups/rg1")
    for audience in (audiences.MANAGEMENT, audiences.DIRECTORY):
        token = await t.admin_client.token_for(audience)
        got = await _stub(channel).GetResourceGroup(request, metadata=(("authorization", f"Bearer {token}"),))
        assert got.resource_group == "rg1"
        # The subscriptions Azure Resource Manager lists, too.
        subs = await pb_grpc.IdentityServiceStub(channel).ListSubscriptions(
            pb.ListSubscriptionsRequest(), metadata=(("authorization", f"Bearer {token}"),)
        )
        assert [s.subscription_id for s in subs.subscriptions] == [t.subscription_id]
    token = await t.admin_client.token_for(audiences.VAULT)
    call = _stub(channel).GetResourceGroup(request, metadata=(("authorization", f"Bearer {token}"),))
    await expect_rpc_error(call, grpc.StatusCode.UNAUTHENTICATED, Reason.TOKEN_AUDIENCE_INVALID)
    # The directory's own calls still take only the directory's audience.
    token = await t.admin_client.token_for(audiences.MANAGEMENT)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await pb_grpc.IdentityServiceStub(channel).ListPrincipals(
            pb.ListPrincipalsRequest(parent=f"tenants/{t.tenant_id}"), metadata=(("authorization", f"Bearer {token}"),)
        )
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_groups_page_through_the_ones_the_caller_reads(operator, channel, clock):
    t = await make_tenant(operator, channel, clock, "Contoso")
    sub = t.subscription_id
    names = [f"g{i:02d}" for i in range(7)]
    for name in reversed(names):
        await t.admin_client.create_resource_group(sub, name, "westeurope")
    bob, _, bob_client = await make_principal(operator, channel, clock, t.tenant_id, "bob", kind=res.USER)
    readable = names[1::2]
    for name in readable:
        await t.admin_client.create_role_assignment(
            bob.object_id, res.READER, f"/subscriptions/{sub}/resourceGroups/{name}"
        )

    async def every(client, size: int) -> list[str]:
        seen, token = [], ""
        while True:
            page = await client.list_resource_groups(sub, page_size=size, page_token=token)
            assert len(page.resource_groups) == size or not page.next_page_token
            seen += [g.resource_group for g in page.resource_groups]
            token = page.next_page_token
            if not token:
                return seen

    assert await every(t.admin_client, 2) == names
    assert await every(bob_client, 2) == readable
    assert await every(bob_client, 1) == readable


def _bad_requests():
    sub = str(uuid.uuid4())
    group = f"/subscriptions/{sub}/resourceGroups/rg1"

    def create(**fields):
        values = {"subscription_id": sub, "resource_group": "rg1", "location": "westeurope", **fields}
        return "CreateResourceGroup", pb.CreateResourceGroupRequest(resource_group=res.ResourceGroup(**values))

    def tags(value):
        mask = field_mask_pb2.FieldMask(paths=["tags"])
        return "UpdateResourceGroup", pb.UpdateResourceGroupRequest(
            resource_group=res.ResourceGroup(name=group, tags=value), update_mask=mask
        )

    return [
        (*create(resource_group="ends-with-dot."), Reason.FIELD_INVALID),
        (*create(resource_group="x" * 91), Reason.FIELD_INVALID),
        (*create(resource_group="sl/ash"), Reason.FIELD_INVALID),
        (*create(resource_group="café"), Reason.FIELD_INVALID),
        (*create(subscription_id="not-a-uuid"), Reason.UUID_MALFORMED),
        (*create(location="West/Europe"), Reason.FIELD_INVALID),
        (*create(location=""), Reason.FIELD_INVALID),
        (*create(tags={f"t{i}": "v" for i in range(51)}), Reason.TAGS_INVALID),
        (*create(tags={"a/b": "v"}), Reason.TAGS_INVALID),
        (*create(tags={"a": "v" * 257}), Reason.TAGS_INVALID),
        (*tags({"k" * 513: "v"}), Reason.TAGS_INVALID),
        ("UpdateResourceGroup", pb.UpdateResourceGroupRequest(
            resource_group=res.ResourceGroup(name=group, location="northeurope"),
            update_mask=field_mask_pb2.FieldMask(paths=["location"])), Reason.UPDATE_MASK_INVALID),
        ("GetResourceGroup", pb.GetResourceGroupRequest(name=f"subscriptions/{sub}/resourceGroups/rg1"),
         Reason.NAME_MALFORMED),
        ("GetResourceGroup", pb.GetResourceGroupRequest(name=f"{group}/providers/x"), Reason.NAME_MALFORMED),
        ("DeleteResourceGroup", pb.DeleteResourceGroupRequest(name=""), Reason.NAME_MALFORMED),
        ("ListResourceGroups", pb.ListResourceGroupsRequest(parent=f"subscriptions/{sub}"), Reason.NAME_MALFORMED),
        ("ListResourceGroups", pb.ListResourceGroupsRequest(parent=f"/subscriptions/{sub}", page_token="forged"),
         Reason.PAGE_TOKEN_INVALID),
    ]  # fmt: skip


@pytest.mark.parametrize(("method", "request_", "reason"), _bad_requests())
async def test_bad_input_is_invalid_argument_and_stores_nothing(identity, operator, channel, method, request_, reason):
    tenant = (await operator.list_tenants()).tenants[0].tenant_id
    sub = (await operator.create_subscription(tenant, "s")).subscription_id
    await operator.create_resource_group(sub, "kept", "westeurope")
    before = await raw_database.row_counts(identity.config.database_location, "identity")
    assert before["resource_groups"] == 1  # the database that was counted is the service's
    token = await operator.token_for(audiences.MANAGEMENT)
    call = getattr(_stub(channel), method)(request_, metadata=(("authorization", f"Bearer {token}"),))
    await expect_rpc_error(call, BAD, reason)
    assert await raw_database.row_counts(identity.config.database_location, "identity") == before
