"""Azure Resource Manager's door held to the gRPC side's rules: every ARM operation it serves,
by every kind of caller of the gRPC matrix (each with a token for the management audience, as
ARM clients have), answered as the calls it makes would be answered on gRPC.

The door decides nothing itself: each operation is one or more calls of the services, made
with the caller's token. So an operation's expectation is not written again: it is allowed
exactly when every call it makes is allowed for that caller by the gRPC matrix
(authz_matrix.EXPECTED), and denied otherwise. A door answer is classified as the key vault
door's are: 401, 403 and the 404 of an object that exists are denials; anything else (2xx,
400 for a rule, 409) passed authorization. No answer is a 500. A new ARM route must become a
row of OPERATIONS (test_every_route_is_a_row) before this passes.

The world is the gRPC matrix's (test_authz_matrix.matrix), with a resource group `rg1` for
the vaults and accounts it already has; the door listens on a free loopback port over plain
HTTP and dials the services over plain gRPC (the services of that world have no certificates;
the door's TLS is tested in tests/arm and the witnesses)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import pathlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import grpc
import pytest

from cmk_trio.arm.front import Services
from cmk_trio.arm.resources import Cloud
from cmk_trio.arm.routing import Router
from cmk_trio.arm.server import RunningArm, providers_of, start_arm
from cmk_trio.proto.identity.v1 import resources_pb2 as idres
from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.config import TlsConfig
from tests.security.authz_matrix import CALLERS, EXPECTED
from tests.security.test_authz_matrix import Matrix, matrix  # noqa: F401 (the fixture)

ID, RG = "cmk.identity.v1.IdentityService/", "cmk.identity.v1.ResourceGroupService/"
VAULT, SPEECH = "cmk.keyvault.v1.VaultService/", "cmk.speech.v1.SpeechResourceService/"
RGV, SUBV, KVV, CSV, AUV = (f"api-version={v}" for v in ("2025-04-01", "2022-12-01", "2026-05-15", "2025-09-01",
                                                            "2022-04-01"))  # fmt: skip
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
READER_ID = f"/providers/Microsoft.Authorization/roleDefinitions/{READER}"

REPORT = os.environ.get("CMK_ARM_MATRIX_REPORT")
"""Write each cell's verdict as JSON to this path (SECURITY.md is rendered from it)."""

Path = Callable[["World", str], Awaitable[str]]
Body = Callable[["World", str], Any]


@dataclass(frozen=True)
class Operation:
    """One ARM operation: its route's name (ArmFront's), method, path (made per cell: some
    aim at a throwaway made for the cell), body, and the RPCs it makes for an allowed caller,
    in order."""

    route: str
    method: str
    path: Path
    rpcs: tuple[str, ...]
    body: Body | None = None
    own: bool = False
    """What every signed-in caller may ask of its own (its subscriptions): allowed to all but
    the anonymous, whatever the gRPC row for another tenant's says."""


@dataclass
class World:
    m: Matrix
    session: aiohttp.ClientSession
    arm: RunningArm
    made: int = 0
    tokens: dict[str, Callable[[str], Awaitable[str]] | None] = field(default_factory=dict)

    @property
    def sub(self) -> str:
        return self.m.sub

    def fresh(self, stem: str, caller: str) -> str:
        self.made += 1
        return f"{stem}-{caller}-{self.made}"[:24].rstrip("-")

    async def call(self, operation: Operation, caller: str) -> tuple[int, dict[str, Any], str]:
        """The answer's status and body, and the path asked."""
        path = await operation.path(self, caller)
        body = operation.body(self, caller) if operation.body is not None else None
        status, answer = await self.request(operation.method, path, caller, body)
        return status, answer, path

    async def request(self, method: str, path: str, caller: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        source = self.tokens[caller]
        headers = {"Authorization": f"Bearer {await source(audiences.MANAGEMENT)}"} if source is not None else {}
        async with self.session.request(method, f"{self.arm.url}{path}", json=body, headers=headers) as r:
            raw = await r.read()
            return r.status, json.loads(raw) if raw else {}


def fixed(path: str) -> Path:
    async def made(w: World, caller: str) -> str:
        return path.format(sub=w.sub)

    return made


async def throwaway_group(w: World, caller: str) -> str:
    name = w.fresh("del", caller)
    await w.m.operator.create_resource_group(w.sub, name, "westeurope")
    return f"/subscriptions/{w.sub}/resourcegroups/{name}?{RGV}"


async def throwaway_assignment(w: World, caller: str) -> str:
    scope = f"/subscriptions/{w.sub}/resourceGroups/ra-{w.fresh('d', caller)}"
    made = await w.m.operator.create_role_assignment(w.m.victim.object_id, idres.READER, scope)
    return f"{made.scope}/providers/Microsoft.Authorization/roleAssignments/{made.role_assignment_id}?{AUV}"


async def new_assignment(w: World, caller: str) -> str:
    scope = f"/subscriptions/{w.sub}/resourceGroups/ra-{w.fresh('n', caller)}"
    return f"{scope}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}?{AUV}"


async def stale_operation(w: World, caller: str) -> str:
    """A group deletion's operation result, for rg1 as it was before it was made again (so the
    poll reads the group and says done, deleting nothing)."""
    named = json.dumps({"group": f"/subscriptions/{w.sub}/resourceGroups/rg1", "created": 0}).encode()
    return f"/subscriptions/{w.sub}/operationresults/{base64.urlsafe_b64encode(named).decode()}?{RGV}"


async def new_group(w: World, caller: str) -> str:
    return f"/subscriptions/{w.sub}/resourcegroups/{w.fresh('new', caller)}?{RGV}"


def vault_path(name: str) -> str:
    return f"/subscriptions/{{sub}}/resourceGroups/rg1/providers/Microsoft.KeyVault/vaults/{name}?{KVV}"


async def new_vault(w: World, caller: str) -> str:
    return vault_path(w.fresh("arm", caller)).format(sub=w.sub)


async def throwaway_vault(w: World, caller: str) -> str:
    name = w.fresh("dv", caller)
    await w.m.admin_kv.create_vault(name, w.sub, "rg1", "westeurope", retention_days=7)
    return vault_path(name).format(sub=w.sub)


async def deleted_vault(w: World, caller: str) -> str:
    name = w.fresh("pv", caller)
    await w.m.admin_kv.create_vault(name, w.sub, "rg1", "westeurope", retention_days=7)
    await w.m.admin_kv.delete_vault(name)
    return f"/subscriptions/{w.sub}/providers/Microsoft.KeyVault/locations/westeurope/deletedVaults/{name}?{KVV}"


async def purged_vault(w: World, caller: str) -> str:
    return (await deleted_vault(w, caller)).replace("?", "/purge?")


def account_path(name: str) -> str:
    return (f"/subscriptions/{{sub}}/resourceGroups/rg1/providers/Microsoft.CognitiveServices/accounts/{name}"
            f"?{CSV}")  # fmt: skip


async def new_account(w: World, caller: str) -> str:
    return account_path(w.fresh("arm", caller)).format(sub=w.sub)


async def throwaway_account(w: World, caller: str) -> str:
    made = await w.m.admin_sp.create_resource(w.sub, "rg1", w.fresh("da", caller), "westeurope")
    return account_path(made.account_name).format(sub=w.sub)


def victim_policy(w: World, caller: str) -> dict[str, Any]:
    return {"properties": {"accessPolicies": [{"tenantId": w.m.tenant, "objectId": w.m.victim.object_id,
                                               "permissions": {"keys": ["get"]}}]}}  # fmt: skip


def new_vault_body(w: World, caller: str) -> dict[str, Any]:
    return {"location": "westeurope", "properties": {"tenantId": w.m.tenant, "sku": {"family": "A", "name": "standard"},
                                                      "accessPolicies": []}}  # fmt: skip


OPERATIONS = (
    Operation("ListSubscriptions", "GET", fixed(f"/subscriptions?{SUBV}"), (ID + "ListSubscriptions",), own=True),
    Operation("GetSubscription", "GET", fixed(f"/subscriptions/{{sub}}?{SUBV}"), (ID + "GetSubscription",)),
    Operation("ListTenants", "GET", fixed(f"/tenants?{SUBV}"), (ID + "ListTenants",)),
    Operation("ListResourceGroups", "GET", fixed(f"/subscriptions/{{sub}}/resourcegroups?{RGV}"),
              (RG + "ListResourceGroups",)),
    Operation("GetResourceGroup", "GET", fixed(f"/subscriptions/{{sub}}/resourcegroups/rg1?{RGV}"),
              (RG + "GetResourceGroup",)),
    Operation("CheckResourceGroupExistence", "HEAD", fixed(f"/subscriptions/{{sub}}/resourcegroups/rg1?{RGV}"),
              (RG + "GetResourceGroup",)),
    Operation("CreateOrUpdateResourceGroup", "PUT", new_group, (RG + "CreateResourceGroup",),
              lambda w, c: {"location": "westeurope"}),
    Operation("UpdateResourceGroup", "PATCH", fixed(f"/subscriptions/{{sub}}/resourcegroups/rg1?{RGV}"),
              (RG + "UpdateResourceGroup",), lambda w, c: {"tags": {"cell": c}}),
    Operation("DeleteResourceGroup", "DELETE", throwaway_group,
              (RG + "GetResourceGroup", SPEECH + "ListSpeechResources", VAULT + "ListVaults",
               RG + "DeleteResourceGroup")),
    Operation("GetOperationResult", "GET", stale_operation, (ID + "GetSubscription", RG + "GetResourceGroup")),
    Operation("ListProviders", "GET", fixed(f"/subscriptions/{{sub}}/providers?{RGV}"), (ID + "GetSubscription",)),
    Operation("GetProvider", "GET", fixed(f"/subscriptions/{{sub}}/providers/Microsoft.KeyVault?{RGV}"),
              (ID + "GetSubscription",)),
    Operation("ListResources", "GET", fixed(f"/subscriptions/{{sub}}/resources?{RGV}"),
              (VAULT + "ListVaults", SPEECH + "ListSpeechResources")),
    Operation("ListRoleDefinitions", "GET",
              fixed(f"/subscriptions/{{sub}}/providers/Microsoft.Authorization/roleDefinitions?{AUV}"),
              (ID + "GetSubscription",)),
    Operation("GetRoleDefinition", "GET",
              fixed(f"/subscriptions/{{sub}}/providers/Microsoft.Authorization/roleDefinitions/{READER}?{AUV}"),
              (ID + "GetSubscription",)),
    Operation("ListRoleAssignments", "GET",
              fixed(f"/subscriptions/{{sub}}/providers/Microsoft.Authorization/roleAssignments?{AUV}"),
              (ID + "ListRoleAssignments",)),
    Operation("CreateRoleAssignment", "PUT", new_assignment, (ID + "CreateRoleAssignment",),
              lambda w, c: {"properties": {"principalId": w.m.victim.object_id, "roleDefinitionId": READER_ID}}),
    Operation("GetRoleAssignment", "GET", lambda w, c: _reader_assignment(w), (ID + "GetRoleAssignment",)),
    Operation("DeleteRoleAssignment", "DELETE", throwaway_assignment,
              (ID + "GetRoleAssignment", ID + "DeleteRoleAssignment")),
    Operation("GetVault", "GET", fixed(vault_path("contoso-cmk")), (VAULT + "GetVault",)),
    Operation("ListVaultsBySubscription", "GET",
              fixed(f"/subscriptions/{{sub}}/providers/Microsoft.KeyVault/vaults?{KVV}"), (VAULT + "ListVaults",)),
    Operation("ListVaultsByResourceGroup", "GET",
              fixed(f"/subscriptions/{{sub}}/resourceGroups/rg1/providers/Microsoft.KeyVault/vaults?{KVV}"),
              (RG + "GetResourceGroup", VAULT + "ListVaults")),
    Operation("CreateOrUpdateVault", "PUT", new_vault, (RG + "GetResourceGroup", VAULT + "CreateVault"),
              new_vault_body),
    Operation("UpdateVault", "PATCH", fixed(vault_path("contoso-cmk")), (VAULT + "GetVault", VAULT + "UpdateVault"),
              lambda w, c: {"tags": {"cell": c}}),
    Operation("DeleteVault", "DELETE", throwaway_vault, (VAULT + "GetVault", VAULT + "DeleteVault")),
    Operation("UpdateAccessPolicy", "PUT",
              fixed(vault_path("contoso-cmk").replace("?", "/accessPolicies/add?")),
              (VAULT + "GetVault", VAULT + "UpdateAccessPolicy"), victim_policy),
    Operation("ListDeletedVaults", "GET",
              fixed(f"/subscriptions/{{sub}}/providers/Microsoft.KeyVault/deletedVaults?{KVV}"),
              (VAULT + "ListDeletedVaults",)),
    Operation("GetDeletedVault", "GET", deleted_vault, (VAULT + "ListDeletedVaults",)),
    Operation("PurgeDeletedVault", "POST", purged_vault, (VAULT + "ListDeletedVaults", VAULT + "PurgeVault")),
    Operation("CheckNameAvailability", "POST",
              fixed(f"/subscriptions/{{sub}}/providers/Microsoft.KeyVault/checkNameAvailability?{KVV}"),
              (VAULT + "CheckVaultNameAvailability",),
              lambda w, c: {"name": "contoso-cmk", "type": "Microsoft.KeyVault/vaults"}),
    Operation("GetAccount", "GET", fixed(account_path("speech1")), (SPEECH + "GetSpeechResource",)),
    Operation("ListAccounts", "GET",
              fixed(f"/subscriptions/{{sub}}/providers/Microsoft.CognitiveServices/accounts?{CSV}"),
              (SPEECH + "ListSpeechResources",)),
    Operation("ListAccountsByResourceGroup", "GET",
              fixed(f"/subscriptions/{{sub}}/resourceGroups/rg1/providers/Microsoft.CognitiveServices/accounts?{CSV}"),
              (RG + "GetResourceGroup", SPEECH + "ListSpeechResources")),
    Operation("CreateAccount", "PUT", new_account, (RG + "GetResourceGroup", SPEECH + "CreateSpeechResource"),
              lambda w, c: {"kind": "SpeechServices", "sku": {"name": "S0"}, "location": "westeurope"}),
    Operation("UpdateAccount", "PATCH", fixed(account_path("plain1")),
              (SPEECH + "GetSpeechResource", SPEECH + "AssignIdentity"),
              lambda w, c: {"identity": {"type": "SystemAssigned"}}),
    Operation("ListDeletedAccounts", "GET",
              fixed(f"/subscriptions/{{sub}}/providers/Microsoft.CognitiveServices/deletedAccounts?{CSV}"),
              (SPEECH + "ListSpeechResources",)),
    Operation("DeleteAccount", "DELETE", throwaway_account,
              (SPEECH + "GetSpeechResource", SPEECH + "DeleteSpeechResource")),
)  # fmt: skip


async def _reader_assignment(w: World) -> str:
    scope = f"/subscriptions/{w.sub}"
    return f"{scope}/providers/Microsoft.Authorization/roleAssignments/{w.m.reader_assignment}?{AUV}"


def expected(operation: Operation, caller: str) -> str:
    """Allowed exactly when every call the operation makes is, for this caller."""
    if operation.own:
        return "deny" if caller == "none" else "allow"
    return "allow" if all(EXPECTED[rpc][caller].startswith("allow") for rpc in operation.rpcs) else "deny"


def verdict(operation: Operation, status: int) -> str:
    """401, 403 and the 404 of what exists are denials; so is a DELETE's 204, ARM's answer
    when there is nothing to delete (the caller was told its target is missing: the test
    checks that it is still there)."""
    if status in (401, 403, 404) or (operation.method == "DELETE" and status == 204):
        return "deny"
    return "allow"


@pytest.fixture
async def world(matrix: Matrix, identity, keyvault, speech_cmk) -> AsyncIterator[World]:  # noqa: F811 (the fixture)
    m = matrix
    await m.operator.create_resource_group(m.sub, "rg1", "westeurope")
    endpoints = {"identity": identity.endpoint, "keyvault": keyvault.endpoint, "speech": speech_cmk.endpoint}
    arm = await start_arm(host="127.0.0.1", port=0, tls=TlsConfig(), endpoints=endpoints, channel_tls=None,
                          cloud=Cloud("Test", "https://login.example", "vault.azure.net"))  # fmt: skip
    try:
        async with aiohttp.ClientSession() as session:
            yield World(m, session, arm, tokens=dict(m.tokens))
    finally:
        await arm.stop()


NOT_ROWS = {
    "GetCloudMetadata": "public: the cloud's endpoints, which clients read before they sign in",
    "GetDeletedAccount": "404 to everyone: a deleted speech account is gone at once (tests/witness)",
}


async def test_every_route_is_a_row():
    router = Router()
    channel = grpc.aio.insecure_channel("127.0.0.1:9")  # (never dialled: the routes are only listed)
    try:
        for provider in providers_of(Services(channel, channel, channel)):
            provider(router)
    finally:
        await channel.close()
    routes = {r.name for r in router.routes}
    assert routes - set(NOT_ROWS) == {o.route for o in OPERATIONS}, "a route of the door is not a row of OPERATIONS"
    assert all(rpc in EXPECTED for o in OPERATIONS for rpc in o.rpcs)


async def test_arm_authorizes_every_caller_as_grpc_does(world: World):
    wrong, counts = [], {"cells": 0, "allow": 0, "deny": 0, "5xx": 0}
    rows: dict[str, dict[str, str]] = {}
    for operation in OPERATIONS:
        for caller in CALLERS:
            status, body, path = await world.call(operation, caller)
            counts["cells"] += 1
            counts["5xx"] += status >= 500
            got, want = verdict(operation, status), expected(operation, caller)
            counts[got] += 1
            rows.setdefault(f"{operation.method} {operation.route}", {})[caller] = f"{got} {status}"
            if operation.method == "DELETE" and got == "deny":  # nothing was deleted
                there, _ = await world.request("GET", path, "tenant-admin")
                if there != 200:
                    wrong.append(f"  {operation.route} / {caller}: refused ({status}), yet its target is gone")
            if status >= 500 or got != want:
                code = body.get("error", {}).get("code", "") if isinstance(body, dict) else ""
                wrong.append(f"  {operation.route} / {caller}: expected {want}, got {status} {code}")
    print(counts)
    if REPORT:
        cells = {"counts": counts, "callers": list(CALLERS), "rows": rows, "wrong": wrong}
        await asyncio.to_thread(pathlib.Path(REPORT).write_text, json.dumps(cells, indent=1) + "\n")
    assert counts["5xx"] == 0 and not wrong, "ARM's door differs from the rules:\n" + "\n".join(wrong)
    assert counts["cells"] == len(OPERATIONS) * len(CALLERS)
