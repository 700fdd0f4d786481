"""The management witnesses: Microsoft's management SDKs, unmodified (azure-mgmt-resource and
its subscriptions client, ...), against Azure Resource Manager's door of a real trio, both ways
of naming the hosts (tests/keyvault/doors.py): ARM's door as the client's `base_url`, and
Azure's defaults untouched through the trio's CONNECT proxy. What they make is checked through
the gRPC API too: one engine behind both doors."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from azure.core.credentials import TokenCredential
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient
from azure.mgmt.resource.subscriptions import SubscriptionClient

from cmk_trio.proto.identity.v1 import resources_pb2 as idres
from cmk_trio.rpckit.clock import SystemClock
from tests.identity.helpers import make_principal
from tests.keyvault.doors import WAYS, Doors, open_doors

pytestmark = pytest.mark.witness


@pytest.fixture(params=WAYS)
async def doors(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Doors]:
    async with open_doors(tmp_path) as opened:
        yield opened.use(request.param, monkeypatch)
        if request.param == "defaults":
            assert opened.trio is not None and opened.trio.proxy is not None
            assert opened.trio.proxy.count.refused == 0


def _resources(doors: Doors, credential: TokenCredential | None = None) -> ResourceManagementClient:
    return ResourceManagementClient(credential or doors.credential(), doors.contoso.subscription_id,
                                    **doors.arm_options())  # fmt: skip


async def test_subscriptions_and_resource_groups(doors: Doors) -> None:
    contoso = doors.contoso
    subs = SubscriptionClient(doors.credential(), **doors.arm_options())
    listed = await asyncio.to_thread(lambda: list(subs.subscriptions.list()))
    assert [(s.subscription_id, s.tenant_id, s.state) for s in listed] == [
        (contoso.subscription_id, contoso.tenant_id, "Enabled")
    ]
    got = await asyncio.to_thread(subs.subscriptions.get, contoso.subscription_id)
    assert got.id == f"/subscriptions/{contoso.subscription_id}"

    groups = _resources(doors)
    made = await asyncio.to_thread(groups.resource_groups.create_or_update, "speech-rg",
                                   {"location": "West Europe", "tags": {"team": "speech"}})  # fmt: skip
    assert (made.name, made.location, made.tags) == ("speech-rg", "westeurope", {"team": "speech"})
    assert made.properties is not None and made.properties.provisioning_state == "Succeeded"
    assert made.id == f"/subscriptions/{contoso.subscription_id}/resourceGroups/speech-rg"
    # A PUT of the same group again is an update (its tags), never a second group.
    again = await asyncio.to_thread(groups.resource_groups.create_or_update, "SPEECH-RG",
                                    {"location": "westeurope", "tags": {"team": "voice"}})  # fmt: skip
    assert (again.name, again.tags) == ("speech-rg", {"team": "voice"})
    assert await asyncio.to_thread(groups.resource_groups.check_existence, "speech-rg") is True
    assert await asyncio.to_thread(groups.resource_groups.check_existence, "nothing-here") is False
    with pytest.raises(HttpResponseError) as moved:
        await asyncio.to_thread(groups.resource_groups.create_or_update, "speech-rg", {"location": "eastus"})
    assert moved.value.error is not None and moved.value.error.code == "InvalidResourceGroupLocation"

    # The same group through the gRPC API.
    seen = await doors.operator.get_resource_group(contoso.subscription_id, "Speech-RG")
    assert dict(seen.tags) == {"team": "voice"}

    patched = await asyncio.to_thread(groups.resource_groups.update, "speech-rg", {"tags": {"cost": "1"}})
    assert patched.tags == {"cost": "1"}
    names = await asyncio.to_thread(lambda: [g.name for g in groups.resource_groups.list()])
    assert names == ["speech-rg"]

    await asyncio.to_thread(lambda: groups.resource_groups.begin_delete("speech-rg").result())
    with pytest.raises(ResourceNotFoundError) as gone:
        await asyncio.to_thread(groups.resource_groups.get, "speech-rg")
    assert gone.value.error is not None and gone.value.error.code == "ResourceGroupNotFound"


async def test_a_caller_without_a_role_learns_nothing(doors: Doors) -> None:
    """Authorization before existence, as in Azure Resource Manager: a principal of the same
    tenant with no role is refused alike for a group that exists and one that does not, and
    cannot make one."""
    contoso = doors.contoso
    await asyncio.to_thread(_resources(doors).resource_groups.create_or_update, "private", {"location": "westeurope"})
    reader, creds, _ = await make_principal(doors.operator, doors.identity_channel, SystemClock(), contoso.tenant_id,
                                            "nobody")  # fmt: skip
    nobody = _resources(doors, doors.credential(creds))
    answers = []
    for name in ("private", "never-made"):
        with pytest.raises(HttpResponseError) as refused:
            await asyncio.to_thread(nobody.resource_groups.get, name)
        assert refused.value.error is not None
        answers.append((refused.value.status_code, refused.value.error.code))
    assert answers == [(403, "AuthorizationFailed")] * 2
    with pytest.raises(HttpResponseError) as denied:
        await asyncio.to_thread(nobody.resource_groups.create_or_update, "mine", {"location": "westeurope"})
    assert denied.value.status_code == 403 and denied.value.error is not None
    assert denied.value.error.code == "AuthorizationFailed"
    assert await asyncio.to_thread(lambda: list(nobody.resource_groups.list())) == []

    # A Reader of the subscription sees the group, and still cannot change it.
    await doors.operator.create_role_assignment(
        reader.object_id, idres.READER, f"/subscriptions/{contoso.subscription_id}"
    )
    seen = await asyncio.to_thread(nobody.resource_groups.get, "private")
    assert seen.name == "private"
    with pytest.raises(HttpResponseError) as read_only:
        await asyncio.to_thread(nobody.resource_groups.update, "private", {"tags": {"a": "b"}})
    assert read_only.value.status_code == 403


async def test_role_assignments_through_microsoft_authorization(doors: Doors) -> None:
    """Owner, Contributor and Reader under Azure's ids; an assignment made through ARM is the
    directory's (seen over gRPC, and granting what it says at once), and removed through ARM."""
    contoso = doors.contoso
    sub_scope = f"/subscriptions/{contoso.subscription_id}"
    await asyncio.to_thread(_resources(doors).resource_groups.create_or_update, "shared", {"location": "westeurope"})
    bob, creds, _ = await make_principal(doors.operator, doors.identity_channel, SystemClock(), contoso.tenant_id,
                                         "bob")  # fmt: skip
    auth = AuthorizationManagementClient(doors.credential(), contoso.subscription_id, **doors.arm_options())
    readers = await asyncio.to_thread(
        lambda: list(auth.role_definitions.list(sub_scope, filter="roleName eq 'Reader'"))
    )
    assert [(r.role_name, r.name) for r in readers] == [("Reader", "acdd72a7-3385-48ef-bd42-f606fba81ae7")]
    assert readers[0].id is not None
    everything = await asyncio.to_thread(lambda: list(auth.role_definitions.list(sub_scope)))
    assert sorted(r.role_name for r in everything) == ["Contributor", "Owner", "Reader"]

    bob_groups = _resources(doors, doors.credential(creds))
    with pytest.raises(HttpResponseError) as before:
        await asyncio.to_thread(bob_groups.resource_groups.get, "shared")
    assert before.value.status_code == 403
    group_scope = f"{sub_scope}/resourceGroups/shared"
    name = str(uuid.uuid4())
    made = await asyncio.to_thread(auth.role_assignments.create, group_scope, name,
                                   {"role_definition_id": readers[0].id, "principal_id": bob.object_id})  # fmt: skip
    assert (made.name, made.principal_id, made.principal_type, made.scope) == (
        name,
        bob.object_id,
        "ServicePrincipal",
        group_scope,
    )
    assert made.role_definition_id is not None and made.role_definition_id.endswith(readers[0].name or "")
    # The directory's own, at once: over gRPC, and what it grants.
    assert (await doors.operator.get_role_assignment(name)).scope == group_scope
    assert (await asyncio.to_thread(bob_groups.resource_groups.get, "shared")).name == "shared"
    got = await asyncio.to_thread(auth.role_assignments.get, group_scope, name)
    assert got.principal_id == bob.object_id
    listed = await asyncio.to_thread(
        lambda: list(auth.role_assignments.list_for_scope(group_scope, filter=f"principalId eq '{bob.object_id}'"))
    )
    assert [a.name for a in listed] == [name]
    with pytest.raises(HttpResponseError) as twice:
        await asyncio.to_thread(auth.role_assignments.create, group_scope, str(uuid.uuid4()),
                                {"role_definition_id": readers[0].id, "principal_id": bob.object_id})  # fmt: skip
    assert twice.value.status_code == 409 and twice.value.error is not None
    assert twice.value.error.code == "RoleAssignmentExists"
    # Bob, a Reader, may not grant.
    bob_auth = AuthorizationManagementClient(doors.credential(creds), contoso.subscription_id, **doors.arm_options())
    with pytest.raises(HttpResponseError) as denied:
        await asyncio.to_thread(bob_auth.role_assignments.create, group_scope, str(uuid.uuid4()),
                                {"role_definition_id": readers[0].id, "principal_id": bob.object_id})  # fmt: skip
    assert denied.value.status_code == 403

    deleted = await asyncio.to_thread(auth.role_assignments.delete, group_scope, name)
    assert deleted is not None and deleted.name == name
    assert await asyncio.to_thread(auth.role_assignments.delete, group_scope, name) is None  # (204: none left)
    with pytest.raises(HttpResponseError) as after:
        await asyncio.to_thread(bob_groups.resource_groups.get, "shared")
    assert after.value.status_code == 403
