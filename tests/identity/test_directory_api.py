"""The directory over the wire: tenants, subscriptions, principals, role assignments,
CheckAccess, transfers, pagination, and bad input that changes nothing."""

from __future__ import annotations

import uuid
from typing import Any, cast

import grpc
import pytest
from google.protobuf import field_mask_pb2

from cmk_trio.proto.identity.v1 import identity_service_pb2 as pb
from cmk_trio.proto.identity.v1 import identity_service_pb2_grpc as pb_grpc
from cmk_trio.proto.identity.v1 import resources_pb2 as res
from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.errors import AlreadyExists, FailedPrecondition, NotFound, PermissionDenied
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.testing import expect_rpc_error
from tests import raw_database
from tests.identity.helpers import make_principal, make_tenant, resource_id

BAD = grpc.StatusCode.INVALID_ARGUMENT


async def test_only_the_operator_creates_tenants_and_subscriptions(operator, channel, clock):
    t = await make_tenant(operator, channel, clock, "Contoso")
    with pytest.raises(PermissionDenied) as caught:
        await t.admin_client.create_tenant("Mine")
    assert caught.value.reason is Reason.OPERATOR_REQUIRED
    with pytest.raises(PermissionDenied):
        await t.admin_client.create_subscription(t.tenant_id, "More")
    mine = await t.admin_client.list_tenants()
    assert [x.tenant_id for x in mine.tenants] == [t.tenant_id]


async def test_a_non_admin_cannot_create_principals(operator, channel, clock):
    t = await make_tenant(operator, channel, clock, "Contoso")
    _, _, user = await make_principal(operator, channel, clock, t.tenant_id, "bob", kind=res.USER)
    with pytest.raises(PermissionDenied) as caught:
        await user.create_principal(t.tenant_id, res.SERVICE_PRINCIPAL, "app")
    assert caught.value.reason is Reason.TENANT_ADMIN_REQUIRED
    with pytest.raises(PermissionDenied) as caught:
        await t.admin_client.create_principal(t.tenant_id, res.SERVICE_PRINCIPAL, "p", platform_service="speech")
    assert caught.value.reason is Reason.OPERATOR_REQUIRED


async def test_the_operator_cannot_be_disabled_or_deleted(identity, operator):
    op = identity.operator
    for action in (operator.disable_principal, operator.delete_principal):
        with pytest.raises(FailedPrecondition) as caught:
            await action(op.tenant_id, op.object_id)
        assert caught.value.reason is Reason.OPERATOR_PROTECTED


async def test_role_assignments_grant_by_scope_and_role(operator, channel, clock):
    t = await make_tenant(operator, channel, clock, "Contoso")
    bob, _, bob_client = await make_principal(operator, channel, clock, t.tenant_id, "bob", kind=res.USER)
    sub_scope = f"/subscriptions/{t.subscription_id}"
    rg_scope = f"{sub_scope}/resourceGroups/rg1"
    resource = resource_id(t.subscription_id)
    await t.admin_client.create_role_assignment(bob.object_id, res.CONTRIBUTOR, rg_scope)
    with pytest.raises(AlreadyExists):
        await t.admin_client.create_role_assignment(
            bob.object_id, res.CONTRIBUTOR, rg_scope.upper().replace("SUBSCRIPTIONS", "subscriptions")
        )

    async def allowed(scope: str, action: int) -> bool:
        return (await bob_client.check_access(scope, action)).allowed

    assert await allowed(resource, res.WRITE)
    assert await allowed(rg_scope, res.READ)
    assert not await allowed(resource, res.MANAGE_ACCESS)
    assert not await allowed(sub_scope, res.READ)
    assert not await allowed(f"{sub_scope}/resourceGroups/rg10", res.READ)  # whole segments only
    # Bob may not grant; an Owner may, under its scope only.
    with pytest.raises(PermissionDenied) as caught:
        await bob_client.create_role_assignment(bob.object_id, res.OWNER, rg_scope)
    assert caught.value.reason is Reason.ROLE_REQUIRED
    await t.admin_client.create_role_assignment(bob.object_id, res.OWNER, rg_scope)
    carol, _, _ = await make_principal(operator, channel, clock, t.tenant_id, "carol", kind=res.USER)
    await bob_client.create_role_assignment(carol.object_id, res.READER, resource)
    with pytest.raises(PermissionDenied):
        await bob_client.create_role_assignment(carol.object_id, res.READER, sub_scope)
    listed = await t.admin_client.list_role_assignments(scope=resource)
    assert {a.principal_id for a in listed.role_assignments} == {bob.object_id, carol.object_id}


async def test_check_access_about_others_needs_a_platform_principal(operator, channel, clock):
    t = await make_tenant(operator, channel, clock, "Contoso")
    bob, _, bob_client = await make_principal(operator, channel, clock, t.tenant_id, "bob", kind=res.USER)
    with pytest.raises(PermissionDenied) as caught:
        await bob_client.check_access(f"/subscriptions/{t.subscription_id}", res.READ, t.admin.object_id)
    assert caught.value.reason is Reason.PLATFORM_PRINCIPAL_REQUIRED
    reply = await operator.check_access(f"/subscriptions/{t.subscription_id}", res.READ, bob.object_id)
    assert not reply.allowed


async def test_a_transfer_removes_role_assignments_and_leaves_managed_identities_behind(operator, channel, clock):
    a = await make_tenant(operator, channel, clock, "A")
    b = await make_tenant(operator, channel, clock, "B")
    platform_tid = next(x.tenant_id for x in (await operator.list_tenants()).tenants if x.platform)
    _, _, speech = await make_principal(operator, channel, clock, platform_tid, "speech", platform_service="speech")
    mi = await speech.create_managed_identity(a.tenant_id, resource_id(a.subscription_id))
    scope = f"/subscriptions/{a.subscription_id}"
    await a.admin_client.create_role_assignment(a.admin.object_id, res.OWNER, scope)
    assert (await a.admin_client.check_access(scope, res.READ)).allowed
    moved = await operator.transfer_subscription(a.subscription_id, b.tenant_id)
    assert moved.tenant_id == b.tenant_id and moved.HasField("transfer_time")
    assert not (await a.admin_client.check_access(scope, res.READ)).allowed
    assert not (await operator.list_role_assignments(scope=scope)).role_assignments
    # The managed identity was not transferred: it is gone from tenant A, and said so.
    with pytest.raises(NotFound):
        await operator.get_principal(a.tenant_id, mi.object_id)
    events = [e async for e in _until(operator, res.SUBSCRIPTION_TRANSFERRED)]
    assert (events[-1].tenant_id, events[-1].new_tenant_id) == (a.tenant_id, b.tenant_id)
    assert (events[-2].type, events[-2].principal_id) == (res.PRINCIPAL_DELETED, mi.object_id)
    with pytest.raises(FailedPrecondition):
        await operator.transfer_subscription(a.subscription_id, b.tenant_id)


async def _until(client, event_type):
    async for event in client.watch_events(0):
        yield event
        if event.type == event_type:
            return


async def test_one_managed_identity_per_resource_in_its_subscriptions_tenant(operator, channel, clock):
    a = await make_tenant(operator, channel, clock, "A")
    b = await make_tenant(operator, channel, clock, "B")
    platform_tid = next(x.tenant_id for x in (await operator.list_tenants()).tenants if x.platform)
    _, _, speech = await make_principal(operator, channel, clock, platform_tid, "speech", platform_service="speech")
    made = await speech.create_managed_identity(a.tenant_id, resource_id(a.subscription_id))
    # Asking again (say after a crash before the answer was recorded) gives the same identity...
    again = await speech.create_managed_identity(
        a.tenant_id, resource_id(a.subscription_id).upper().replace("SUBSCRIPTIONS", "subscriptions")
    )
    assert again.object_id == made.object_id
    # ...but another principal of the platform cannot take over the resource's identity...
    _, _, other = await make_principal(operator, channel, clock, platform_tid, "other", platform_service="speech")
    with pytest.raises(AlreadyExists) as exists:
        await other.create_managed_identity(a.tenant_id, resource_id(a.subscription_id))
    assert exists.value.reason is Reason.MANAGED_IDENTITY_EXISTS
    # ...and a platform service acts only for its own resource provider's resources (issue 12,
    # finding 9: the key vault's principal made speech resources' identities).
    _, _, vault = await make_principal(operator, channel, clock, platform_tid, "vault", platform_service="keyvault")
    _, _, unknown = await make_principal(operator, channel, clock, platform_tid, "x", platform_service="other")
    for stranger in (vault, unknown):
        with pytest.raises(PermissionDenied) as wrong:
            await stranger.create_managed_identity(a.tenant_id, resource_id(a.subscription_id, "fresh"))
        assert wrong.value.reason is Reason.PROVIDER_NOT_OWNED
    vault_id = f"/subscriptions/{a.subscription_id}/resourceGroups/rg1/providers/Microsoft.KeyVault/vaults/kv1"
    assert (await vault.create_managed_identity(a.tenant_id, vault_id)).resource_id.endswith("/vaults/kv1")
    with pytest.raises(FailedPrecondition) as caught:
        await speech.create_managed_identity(b.tenant_id, resource_id(a.subscription_id, "other"))
    assert caught.value.reason is Reason.RESOURCE_NOT_IN_TENANT
    with pytest.raises(PermissionDenied) as denied:
        await a.admin_client.create_managed_identity(a.tenant_id, resource_id(a.subscription_id, "x"))
    assert denied.value.reason is Reason.PLATFORM_PRINCIPAL_REQUIRED


async def test_lists_page_through_everything_once(operator, channel, clock):
    t = await make_tenant(operator, channel, clock, "Paged")
    for i in range(7):
        await operator.create_principal(t.tenant_id, res.SERVICE_PRINCIPAL, f"app{i}")
    seen, token = [], ""
    while True:
        page = await operator.list_principals(t.tenant_id, page_size=3, page_token=token)
        seen += [p.object_id for p in page.principals]
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen)) == 8  # seven apps and the admin


def _stub(channel):
    return pb_grpc.IdentityServiceStub(channel)


def _bad_requests() -> list[tuple[str, object, Reason]]:
    ra = res.RoleAssignment
    p = res.Principal
    return [
        ("CreateTenant", lambda t: pb.CreateTenantRequest(tenant=res.Tenant(display_name="")), Reason.FIELD_REQUIRED),
        (
            "CreateTenant",
            lambda t: pb.CreateTenantRequest(tenant=res.Tenant(display_name="x" * 257)),
            Reason.FIELD_TOO_LONG,
        ),
        (
            "CreateTenant",
            lambda t: pb.CreateTenantRequest(tenant=res.Tenant(display_name="a\x00b")),
            Reason.FIELD_INVALID,
        ),
        ("GetTenant", lambda t: pb.GetTenantRequest(name="tenants/not-a-uuid"), Reason.UUID_MALFORMED),
        ("GetTenant", lambda t: pb.GetTenantRequest(name="tenant/" + t), Reason.NAME_MALFORMED),
        ("GetTenant", lambda t: pb.GetTenantRequest(name=""), Reason.FIELD_REQUIRED),
        ("GetTenant", lambda t: pb.GetTenantRequest(name="tenants/" + "1" * 600), Reason.FIELD_TOO_LONG),
        (
            "CreateSubscription",
            lambda t: pb.CreateSubscriptionRequest(subscription=res.Subscription(tenant_id="1234", display_name="s")),
            Reason.UUID_MALFORMED,
        ),
        (
            "CreatePrincipal",
            lambda t: pb.CreatePrincipalRequest(parent=f"tenants/{t}", principal=p(display_name="p")),
            Reason.ENUM_UNKNOWN,
        ),
        (
            "CreatePrincipal",
            lambda t: pb.CreatePrincipalRequest(
                parent=f"tenants/{t}", principal=p(kind=cast(Any, 42), display_name="p")
            ),
            Reason.ENUM_UNKNOWN,
        ),
        (
            "CreateRoleAssignment",
            lambda t: pb.CreateRoleAssignmentRequest(
                role_assignment=ra(principal_id=str(uuid.uuid4()), role=cast(Any, 99), scope="/subscriptions/x")
            ),
            Reason.ENUM_UNKNOWN,
        ),
        (
            "CreateRoleAssignment",
            lambda t: pb.CreateRoleAssignmentRequest(
                role_assignment=ra(principal_id=str(uuid.uuid4()), role=res.OWNER, scope="/subscriptions/../../etc")
            ),
            Reason.SCOPE_MALFORMED,
        ),
        (
            "ListPrincipals",
            lambda t: pb.ListPrincipalsRequest(parent=f"tenants/{t}", page_size=-1),
            Reason.PAGE_SIZE_INVALID,
        ),
        (
            "ListPrincipals",
            lambda t: pb.ListPrincipalsRequest(parent=f"tenants/{t}", page_token="garbage!"),
            Reason.PAGE_TOKEN_INVALID,
        ),
        (
            "UpdatePrincipal",
            lambda t: pb.UpdatePrincipalRequest(
                principal=p(name=f"tenants/{t}/principals/{uuid.uuid4()}"),
                update_mask=field_mask_pb2.FieldMask(paths=["kind"]),
            ),
            Reason.UPDATE_MASK_INVALID,
        ),
        (
            "AddClientSecret",
            lambda t: pb.AddClientSecretRequest(parent=f"tenants/{t}/principals/{uuid.uuid4()}", lifetime_days=10_000),
            Reason.FIELD_INVALID,
        ),
    ]


@pytest.mark.parametrize(("method", "make_request", "reason"), _bad_requests())
async def test_bad_input_is_invalid_argument_and_stores_nothing(
    identity, operator, channel, method, make_request, reason
):
    tenant = (await operator.list_tenants()).tenants[0].tenant_id
    before = await raw_database.row_counts(identity.config.database_location, "identity")
    assert before["tenants"] >= 1  # the database that was counted is the service's
    request = make_request(tenant)
    token = await operator.token_for(audiences.DIRECTORY)
    call = getattr(_stub(channel), method)(request, metadata=(("authorization", f"Bearer {token}"),))
    await expect_rpc_error(call, BAD, reason)
    assert await raw_database.row_counts(identity.config.database_location, "identity") == before


async def test_an_oversized_request_is_refused_by_the_server(identity, operator, channel):
    token = await operator.token_for(audiences.DIRECTORY)
    huge = pb.CreateTenantRequest(tenant=res.Tenant(display_name="x" * (5 * 1024 * 1024)))
    before = await raw_database.row_counts(identity.config.database_location, "identity")
    assert before["tenants"] >= 1  # the database that was counted is the service's
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _stub(channel).CreateTenant(huge, metadata=(("authorization", f"Bearer {token}"),))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert await raw_database.row_counts(identity.config.database_location, "identity") == before
