"""The key vault's HTTPS door (Azure Key Vault's data plane), held to the gRPC side's rules:

- the authorization matrix (door_matrix.py): every door operation by every caller of the gRPC
  matrix and five more, each call made on both doors against the same kind of object, each
  answer compared with the rule and with the other door's;
- the existence rule: a caller without rights on a vault or key gets exactly what a missing
  one gets (status, code, reason, body and headers but for the names given and request ids),
  as test_existence.EXISTENCE_RULE says for the data plane.

The world is the gRPC matrix's (test_authz_matrix.matrix), its key vault serving the door on a
free loopback port (plain HTTP: the test services have no certificate; the listener's TLS is
tested in tests/keyvault/test_azure_door.py and test_door_fuzz.py). With CMK_DOOR_MATRIX_REPORT
naming a file, the figures are written there as JSON (SECURITY.md is rendered from them).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from google.protobuf.message import Message

from cmk_trio.client.identity import IdentityClient
from cmk_trio.keyvault.rest_door import CRYPTO_OPERATIONS, KeyVaultDoor
from cmk_trio.proto.keyvault.v1 import keyvault_service_pb2_grpc as kv_grpc
from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.status import error_info_of
from tests.identity.helpers import make_principal
from tests.security.door_matrix import (
    DOOR_CALLERS,
    EXTRA_CALLERS,
    OPERATIONS,
    PERMISSIONS,
    Aim,
    Answer,
    Cell,
    DoorOperation,
    Target,
    classify_grpc,
    classify_http,
    figures,
    permissions_for,
    split,
)
from tests.security.test_authz_matrix import Matrix, matrix  # noqa: F401 (the fixture)
from tests.security.test_existence import EXISTENCE_RULE
from tests.waiting import eventually

API = "api-version=2025-07-01"
TokenSource = Callable[[str], Awaitable[str]]
REPORT = os.environ.get("CMK_DOOR_MATRIX_REPORT")


@pytest.fixture
def keyvault_http_port() -> int:
    return 0


@dataclass
class Doors:
    """Both doors of the matrix's key vault, and every caller's token source."""

    m: Matrix
    session: aiohttp.ClientSession
    base: str
    stubs: dict[str, Any]
    """The gRPC stub of each service, by its full name."""
    tokens: dict[str, TokenSource | None]
    principals: dict[tuple[str, str], TokenSource]
    """(caller, the permission needed) -> token source, for the callers whose policy depends on the row."""
    made: int = 0

    def source(self, caller: str, operation: DoorOperation) -> TokenSource | None:
        if caller in ("only-needed", "all-but-needed"):
            return self.principals[caller, PERMISSIONS[operation.rpc]]
        return self.tokens[caller]

    async def target(self, operation: DoorOperation, door: str, caller: str) -> Target:
        m = self.m
        payloads = Target(vault="contoso-cmk", import_jwk=m.import_jwk, wrapped=m.wrapped, encrypted=m.encrypted,
                          backup=m.backup, secret_backup=m.secret_backup)  # fmt: skip
        key_name, version = m.key.split("/keys/", 1)[1].split("/")
        aim = operation.aim
        if aim is Aim.KEY:
            return replace(payloads, name=key_name, version=version)
        if aim is Aim.SECRET:
            secret_name, secret_version = m.secret.split("/secrets/", 1)[1].split("/")
            return replace(payloads, name=secret_name, version=secret_version)
        if aim is Aim.VAULT:
            return payloads
        if aim is Aim.NEW:
            self.made += 1
            return replace(payloads, name=f"{door}-new-{self.made}")
        scratch = replace(payloads, vault="contoso-scratch")
        if aim is Aim.SCRATCH:
            return replace(scratch, name=m.scratch_key.rsplit("/", 1)[1])
        if aim is Aim.SCRATCH_VAULT:
            return scratch
        if aim is Aim.DELETED:
            return replace(scratch, name=m.deleted_key.rsplit("/", 1)[1])
        if aim is Aim.DELETED_SECRET:
            return replace(scratch, name=m.deleted_secret.rsplit("/", 1)[1])
        self.made += 1
        name = f"{door}-{operation.route.lower()}-{self.made}"
        if aim in (Aim.FRESH_SECRET, Aim.FRESH_DELETED_SECRET):
            made = await m.admin_kv.set_secret("contoso-scratch", name, "scratch value")
            if aim is Aim.FRESH_DELETED_SECRET:
                await m.admin_kv.delete_secret(made.secret_id)
            return replace(scratch, name=name)
        # Imported (no key generation): a throwaway for one cell, deleted if the cell needs it.
        await m.admin_kv.import_key("contoso-scratch", name, m.import_jwk)
        if aim is Aim.FRESH_DELETED:
            await m.admin_kv.delete_key(f"https://contoso-scratch.vault.azure.net/keys/{name}")
        return replace(scratch, name=name)

    async def https(
        self, operation: DoorOperation, target: Target, source: TokenSource | None, audience: str = audiences.VAULT
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        headers = {"Host": target.host}
        if source is not None:
            headers["Authorization"] = f"Bearer {await source(audience)}"
        body = operation.body(target) if operation.body is not None else None
        url = f"{self.base}{operation.path_for(target)}?{API}"
        async with self.session.request(operation.method, url, json=body, headers=headers) as response:
            raw = await response.read()
            return response.status, json.loads(raw) if raw else {}, dict(response.headers)

    async def grpc(self, operation: DoorOperation, target: Target, source: TokenSource | None) -> Answer:
        request: Message = operation.grpc(target)
        metadata = (("authorization", f"Bearer {await source(audiences.VAULT)}"),) if source is not None else None
        try:
            service, _, method = operation.rpc.partition("/")
            await getattr(self.stubs[service], method)(request, metadata=metadata, timeout=20)
        except grpc.aio.AioRpcError as failed:
            info = error_info_of(failed)
            return classify_grpc(failed.code().name, info.reason if info is not None else "")
        return classify_grpc("OK", "")


def reason_of(body: dict[str, Any]) -> str:
    return str(body.get("error", {}).get("innererror", {}).get("code", ""))


async def fixed_token(client: IdentityClient, audience: str) -> TokenSource:
    token = await client.token_for(audience)

    async def source(_: str) -> str:
        return token

    return source


async def principal_with(m: Matrix, name: str, permissions: list[str]) -> tuple[str, IdentityClient]:
    """A principal of Contoso (its object id, a client signed in as it) with an access policy
    granting `permissions` (keys', and secrets' marked "secrets:") on both vaults (none: no policy)."""
    principal, _, client = await make_principal(m.operator, m.channel, m.clock, m.tenant, name)
    keys, secrets = split(permissions)
    for vault in ("contoso-cmk", "contoso-scratch"):
        if permissions:
            await m.admin_kv.set_access_policy(vault, m.tenant, principal.object_id, keys, secrets)
    return principal.object_id, client


@pytest.fixture
async def doors(matrix: Matrix, keyvault) -> AsyncIterator[Doors]:  # noqa: F811 (the fixture imported above)
    m = matrix
    tokens: dict[str, TokenSource | None] = dict(m.tokens)
    admin = m.tokens["tenant-admin"]
    assert admin is not None

    async def management_token(_: str) -> str:
        return await admin(audiences.MANAGEMENT)

    tokens["wrong-audience"] = management_token
    tokens["no-policy"] = (await principal_with(m, "no policy", []))[1].token_for
    disabled_id, disabled = await principal_with(m, "disabled", permissions_for("disabled", OPERATIONS[0]))
    tokens["disabled"] = await fixed_token(disabled, audiences.VAULT)
    principals: dict[tuple[str, str], TokenSource] = {}
    for needed in sorted({PERMISSIONS[o.rpc] for o in OPERATIONS}):
        for caller in ("only-needed", "all-but-needed"):
            probe = next(o for o in OPERATIONS if PERMISSIONS[o.rpc] == needed)
            _, client = await principal_with(m, f"{caller} {needed}", permissions_for(caller, probe))
            principals[caller, needed] = client.token_for
    assert keyvault.http_url is not None
    async with aiohttp.ClientSession() as session:
        stubs = {"cmk.keyvault.v1.KeyService": kv_grpc.KeyServiceStub(m.kv),
                 "cmk.keyvault.v1.SecretService": kv_grpc.SecretServiceStub(m.kv)}  # fmt: skip
        d = Doors(m, session, keyvault.http_url, stubs, tokens, principals)
        # Disabled after signing in: its token is refused once the key vault has the revocation.
        await m.operator.disable_principal(m.tenant, disabled_id)
        key = next(o for o in OPERATIONS if o.aim is Aim.KEY)

        async def refused() -> bool | None:
            answer = await d.grpc(key, await d.target(key, "probe", "disabled"), tokens["disabled"])
            return True if answer.status == "UNAUTHENTICATED" else None

        await eventually(refused, "the disabled principal's token refused")
        yield d


def test_every_route_of_the_door_is_a_row():
    """A new door operation must be added to OPERATIONS (and its RPC to PERMISSIONS) first."""
    door = KeyVaultDoor(api=None, secrets=None, store=None, validator=None, trail=None, limits=None, metrics=None,  # type: ignore[arg-type]
                        dns_suffix="vault.azure.net", authority="https://login.microsoftonline.com")  # fmt: skip
    routes = {r.name for r in door.app().router.routes() if r.name}
    assert routes == {o.route for o in OPERATIONS}, routes ^ {o.route for o in OPERATIONS}
    crypto = {o.path.rpartition("/")[2] for o in OPERATIONS if o.route == "KeyOperation"}
    assert crypto == set(CRYPTO_OPERATIONS)
    assert all(o.rpc in PERMISSIONS for o in OPERATIONS)
    assert set(DOOR_CALLERS) >= set(EXTRA_CALLERS)


async def test_the_door_and_grpc_authorize_every_caller_alike(doors: Doors):
    cells: list[Cell] = []
    for operation in OPERATIONS:
        for caller in DOOR_CALLERS:
            source = doors.source(caller, operation)
            on_grpc = await doors.grpc(operation, await doors.target(operation, "grpc", caller), source)
            target = await doors.target(operation, "https", caller)
            status, body, _ = await doors.https(operation, target, source)
            cells.append(Cell(operation, caller, classify_http(status, reason_of(body)), on_grpc))
    found = figures(cells)
    if REPORT:
        Path(REPORT).write_text(json.dumps(found, indent=1) + "\n")  # noqa: ASYNC240 (once, after every call)
    print(found["counts"])
    problems = [f"  {c.operation.label} / {c.caller}: {'; '.join(c.problems)}" for c in cells if c.problems]
    assert found["counts"]["unexpected_grants"] == 0, "\n".join(problems)
    assert not problems, "the door differs from the rules or from gRPC:\n" + "\n".join(problems)
    assert found["counts"]["cells"] == len(OPERATIONS) * len(DOOR_CALLERS)


# --- the existence rule over HTTPS ----------------------------------------------------------

VOLATILE_HEADERS = {"date", "content-length", "x-request-id", "x-ms-request-id"}
NOBODY = "nothing-here"


def shape(status: int, body: dict[str, Any], headers: dict[str, str], names: tuple[str, ...]) -> tuple[Any, ...]:
    """An answer as a caller compares answers: the names it gave and request ids taken out."""
    text = json.dumps(body, sort_keys=True)
    for name in names:
        text = re.sub(rf"\b{re.escape(name)}\b", "<name>", text)
    kept = {k.lower(): v for k, v in headers.items() if k.lower() not in VOLATILE_HEADERS}
    return status, text, tuple(sorted(kept.items()))


async def test_a_caller_without_rights_gets_a_missing_objects_answer(doors: Doors):
    """For every door operation: the vault's own tenant's principals without a policy (a plain
    one, an administrator) are told FORBIDDEN_BY_POLICY for an existing vault and VAULT_NOT_FOUND
    for a missing one (Azure's exception, as on gRPC); another tenant's administrator gets for
    the existing vault and key exactly what a missing vault, and a missing key of the vault, get."""
    m = doors.m
    second_admin = await make_principal(m.operator, m.channel, m.clock, m.tenant, "second admin", admin=True)
    who = {
        "same tenant, no role or policy": doors.tokens["no-policy"],
        "same tenant's administrator, no role or policy": second_admin[2].token_for,
        "another tenant (Owner of its own subscription)": doors.tokens["other-tenant"],
    }
    secrets = {m.tenant, m.sub}
    for operation in OPERATIONS:
        target = await doors.target(operation, "exists", "probe")
        missing_vault = replace(target, vault=NOBODY)
        missing_key = replace(target, name=NOBODY) if target.name else None
        for caller, source in who.items():
            status, body, headers = await doors.https(operation, target, source)
            told = json.dumps(body)
            assert not [s for s in secrets if s in told], (operation.label, caller, told)
            want_code, want_reason = EXISTENCE_RULE[caller, "existing", "data"]
            assert (status, reason_of(body)) == (403 if want_code.name == "PERMISSION_DENIED" else 404,
                                                 want_reason.value), (operation.label, caller, body)  # fmt: skip
            gone = await doors.https(operation, missing_vault, source)
            want_code, want_reason = EXISTENCE_RULE[caller, "missing", "data"]
            assert (gone[0], reason_of(gone[1])) == (404, want_reason.value), (operation.label, caller, gone)
            if status != 404:
                continue  # (the vault's own tenant: told why, as the rule says)
            names = (target.vault, NOBODY)
            assert shape(status, body, headers, names) == shape(*gone, names), (operation.label, caller)
            if missing_key is not None:
                other = await doors.https(operation, missing_key, source)
                assert shape(status, body, headers, names) == shape(*other, names), (operation.label, caller)
