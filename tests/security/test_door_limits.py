"""The key vault's HTTPS door takes its calls from the same shares as gRPC (issue 24, item 7):
one count (the service's CallLimits) for both doors, so that a caller cannot double its share
by using both, and a flood over HTTPS is held to a caller's share while another tenant's calls,
on either door, go on. Counts and ratios only: nothing here depends on how fast the machine is.

    CMK_DOOR_FLOOD_CALLS   the well-behaved tenant's calls during the flood (default 40; dev.py security 200)
    CMK_DOOR_FLOOD_REPORT  write the flood's figures as JSON to this path (SECURITY.md is rendered from them)
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cmk_trio.client.keyvault import KeyVaultClient
from cmk_trio.proto.identity.v1 import resources_pb2 as idres
from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.admission import Budget, Caller, CallLimits
from cmk_trio.rpckit.errors import ResourceExhausted
from cmk_trio.rpckit.reasons import Reason
from tests.identity.helpers import make_tenant
from tests.speech.cmk_world import World

CALLS = int(os.environ.get("CMK_DOOR_FLOOD_CALLS", "40"))
REPORT = os.environ.get("CMK_DOOR_FLOOD_REPORT")
CAP = 40
"""The key vault's CMK_MAX_CALLS here: 4 calls per caller (10 %), 10 per tenant (25 %)."""
IN_FLIGHT = 48
"""The flood's requests in flight at once: twelve times a caller's share, more than the whole cap."""


@pytest.fixture
def keyvault_http_port(monkeypatch: pytest.MonkeyPatch) -> int:
    """The door on a free port, and a cap small enough that a flood in one process passes it
    (read by every service of the test as it starts)."""
    monkeypatch.setenv("CMK_MAX_CALLS", str(CAP))
    return 0


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Door:
    """Plain requests to the door (loopback, plain HTTP), as a caller's token source signs them."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session, self.base = session, base

    async def unwrap(self, key_id: str, wrapped: bytes, token: str | None) -> tuple[int, str, dict[str, str]]:
        vault, _, path = key_id.removeprefix("https://").partition("/")
        headers = {"Host": vault} | ({"Authorization": f"Bearer {token}"} if token else {})
        body = {"alg": "RSA-OAEP-256", "value": b64url(wrapped)}
        async with self.session.post(f"{self.base}/{path}/unwrapkey?api-version=7.6", json=body,
                                     headers=headers) as response:  # fmt: skip
            found = await response.json(content_type=None)
            return response.status, found.get("error", {}).get("innererror", {}).get("code", ""), dict(response.headers)


@pytest.fixture
async def door(keyvault) -> AsyncIterator[Door]:
    assert keyvault.http_url is not None
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        yield Door(session, keyvault.http_url)


async def test_a_callers_share_is_one_for_both_doors(
    world: World, keyvault, door: Door, operator, channel, clock, kv_channel_for
):
    """With the caller's share taken (as by calls in progress on gRPC), its HTTPS call is refused
    CALLER_TOO_MANY_CALLS with Key Vault's 429 and a Retry-After, and so is its next gRPC call;
    another principal of the tenant is served meanwhile; the place freed, the caller is served
    again. An anonymous address's share holds the door's challenges the same way."""
    limits: CallLimits = keyvault.limits
    assert limits is not None
    admin = next(p for p in (await operator.list_principals(world.tenant_id)).principals if p.tenant_admin)
    token = await world.vaults._tokens(audiences.VAULT)
    key_id = world.key.key_id
    wrapped = (await world.vaults.wrap(key_id, b"k" * 32)).ciphertext
    caller = Caller(Budget.TENANTS, admin.object_id, world.tenant_id)
    share = limits.shares.per_caller
    assert share < limits.shares.per_tenant, "another principal of the tenant has room"
    for _ in range(share):
        limits.admit(caller)
    try:
        status, reason, headers = await door.unwrap(key_id, wrapped, token)
        assert (status, reason) == (429, Reason.CALLER_TOO_MANY_CALLS.value) and headers.get("Retry-After")
        with pytest.raises(ResourceExhausted) as on_grpc:
            await world.vaults.unwrap(key_id, wrapped)
        assert on_grpc.value.reason is Reason.CALLER_TOO_MANY_CALLS
        other = await make_tenant(operator, channel, clock, "Northwind")  # another tenant
        theirs = KeyVaultClient(kv_channel_for, other.admin_client.token_for)
        await operator.create_role_assignment(
            other.admin.object_id, idres.OWNER, f"/subscriptions/{other.subscription_id}"
        )
        await theirs.create_vault("northwind-kv", other.subscription_id, "rg1", "westeurope")
        their_key = await theirs.create_key("northwind-kv", "k")
        their_wrapped = (await theirs.wrap(their_key.key_id, b"n" * 32)).ciphertext
        their_token = await other.admin_client.token_for(audiences.VAULT)
        assert (await door.unwrap(their_key.key_id, their_wrapped, their_token))[0] == 200
    finally:
        for _ in range(share):
            limits.release(caller)
    assert (await door.unwrap(key_id, wrapped, token))[:2] == (200, "")
    # No token: the challenge takes a place of the anonymous address's share.
    anonymous = Caller.anonymous("127.0.0.1", sign_in=False)
    for _ in range(share):
        limits.admit(anonymous)
    try:
        status, reason, headers = await door.unwrap(key_id, wrapped, None)
        assert (status, reason) == (429, Reason.CALLER_TOO_MANY_CALLS.value), (status, reason)
    finally:
        for _ in range(share):
            limits.release(anonymous)
    assert (await door.unwrap(key_id, wrapped, None))[0] == 401  # the challenge again


async def test_a_flood_over_https_is_held_to_its_share_and_starves_no_one(
    world: World, keyvault, door: Door, operator, channel, clock, kv_channel_for
):
    """Tenant B keeps IN_FLIGHT unwraps in flight on the door, each sent again as soon as it is
    answered; meanwhile tenant A makes CALLS unwraps one after another, alternately on the door
    and on gRPC. Every call of tenant A's is served; tenant B never holds more than its share at
    once, and is refused beyond it."""
    limits: CallLimits = keyvault.limits
    assert limits is not None
    held: Counter[str] = Counter()
    most: Counter[str] = Counter()
    admit, release = limits.admit, limits.release

    def counting_admit(caller: Caller) -> None:
        admit(caller)
        held[caller.key] += 1
        most[caller.key] = max(most[caller.key], held[caller.key])

    def counting_release(caller: Caller) -> None:
        release(caller)
        held[caller.key] -= 1

    b = await make_tenant(operator, channel, clock, "Tenant B")
    await operator.create_role_assignment(b.admin.object_id, idres.OWNER, f"/subscriptions/{b.subscription_id}")
    b_vaults = KeyVaultClient(kv_channel_for, b.admin_client.token_for)
    await b_vaults.create_vault("tenant-b-kv", b.subscription_id, "rg1", "westeurope")
    b_key = await b_vaults.create_key("tenant-b-kv", "k")
    b_wrapped = (await b_vaults.wrap(b_key.key_id, b"b" * 32)).ciphertext
    b_token = await b.admin_client.token_for(audiences.VAULT)
    a_token = await world.vaults._tokens(audiences.VAULT)
    a_wrapped = (await world.vaults.wrap(world.key.key_id, b"a" * 32)).ciphertext
    limits.admit, limits.release = counting_admit, counting_release  # type: ignore[method-assign]
    flood: Counter[str] = Counter()
    stop, at_strength = asyncio.Event(), asyncio.Event()

    async def flooder() -> None:
        while not stop.is_set():
            status, reason, _ = await door.unwrap(b_key.key_id, b_wrapped, b_token)
            flood[f"{status} {reason}".strip()] += 1
            if sum(flood.values()) >= IN_FLIGHT:
                at_strength.set()

    workers = [asyncio.ensure_future(flooder()) for _ in range(IN_FLIGHT)]
    a_outcomes: Counter[str] = Counter()
    try:
        await at_strength.wait()  # the flood at full strength first
        for n in range(CALLS):
            if n % 2:
                status, reason, _ = await door.unwrap(world.key.key_id, a_wrapped, a_token)
                a_outcomes["HTTPS " + f"{status} {reason}".strip()] += 1
            else:
                try:
                    await world.vaults.unwrap(world.key.key_id, a_wrapped)
                    a_outcomes["gRPC OK"] += 1
                except ResourceExhausted as exc:
                    a_outcomes[f"gRPC {exc.reason.value}"] += 1
    finally:
        stop.set()
        await asyncio.gather(*workers, return_exceptions=True)
        limits.admit, limits.release = admit, release  # type: ignore[method-assign]
    share = limits.shares.per_caller
    figures: dict[str, Any] = {
        "cap": CAP, "per_caller": share, "in_flight": IN_FLIGHT, "calls": CALLS,
        "tenant_a": dict(a_outcomes), "flood": dict(flood.most_common()),
        "flood_most_held": most[b.admin.object_id], "tenant_a_most_held": most[
            next(p for p in (await operator.list_principals(world.tenant_id)).principals if p.tenant_admin).object_id],
    }  # fmt: skip
    if REPORT:
        await asyncio.to_thread(Path(REPORT).write_text, json.dumps(figures, indent=1) + "\n")
    print(figures)
    assert a_outcomes == {"HTTPS 200": CALLS // 2, "gRPC OK": CALLS - CALLS // 2}, a_outcomes
    assert figures["flood_most_held"] <= share, figures
    assert flood["200"] > 0 and flood[f"429 {Reason.CALLER_TOO_MANY_CALLS.value}"] > 0, figures
    assert set(flood) <= {"200", f"429 {Reason.CALLER_TOO_MANY_CALLS.value}"}, figures
