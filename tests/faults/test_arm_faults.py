"""Azure Resource Manager's door on a bad day, with the services as processes (harness.py) and
the door as `cmk serve arm` beside them. An ARM operation is several calls of the services
(a speech account: created, then its identity assigned; a group's deletion: its accounts and
vaults, then the group), so a fault between two calls must leave something a retry finishes:

- callers that go away: storms of ARM writes (accounts with a system-assigned identity, vaults
  with access policies, groups deleted with what they hold), each connection closed by its
  client after 0-30 ms, at whatever call the door has reached. Then the same requests again:
  each converges (the account has its identity, the vault its policy, the group is gone), and
  no answer was a 500;
- a service killed under ARM: the key vault's process SIGKILLed while vaults are made through
  ARM; meanwhile the door answers ARM's 503 or 502-free refusals with a reason, never a 500 nor
  a hang, and once the vault is back the door serves again without a restart of its own, and
  every vault it acknowledged is there.

    python3 dev.py faults            6 storms and 3 kills, writes RELIABILITY.md's section
    python3 dev.py faults --bounded  2 storms and 1 kill, as .ci/run runs it
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import ssl
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.devca import ensure_dev_pki
from tests.faults.harness import Service, Trio, environment, free_port, start_trio, until
from tests.faults.world import World, prepare
from tests.reports import write_section

pytestmark = [pytest.mark.faults, pytest.mark.timeout(1800)]

FULL = int(os.environ.get("CMK_FAULT_KILLS", "3")) >= 10
STORMS, KILLS = (6, 3) if FULL else (2, 1)
CALLS_PER_STORM = 12
CANCEL_AFTER_S = (0.0, 0.03)
REPORT = os.environ.get("CMK_FAULT_REPORT", "")
SEED = int(os.environ.get("CMK_FAULT_SEED", "20261203"))
RG, KV, CS = "api-version=2025-04-01", "api-version=2026-02-01", "api-version=2025-09-01"
ANSWER_GUARD_S = 30.0  # a hang guard, not a speed claim


@dataclass
class Door:
    url: str
    session: aiohttp.ClientSession
    world: World
    statuses: dict[int, int] = field(default_factory=dict)

    async def send(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        assert self.world.admin is not None
        token = await self.world.admin.token_for(audiences.MANAGEMENT)
        async with asyncio.timeout(ANSWER_GUARD_S):
            async with self.session.request(method, f"{self.url}{path}", json=body,
                                            headers={"Authorization": f"Bearer {token}"}) as r:  # fmt: skip
                raw = await r.read()
        self.statuses[r.status] = self.statuses.get(r.status, 0) + 1
        return r.status, json.loads(raw) if raw else None

    async def abandoned(self, method: str, path: str, body: Any, after: float) -> None:
        """The request sent, and its connection closed by the client `after` seconds later."""
        assert self.world.admin is not None
        token = await self.world.admin.token_for(audiences.MANAGEMENT)
        connector = aiohttp.TCPConnector(ssl=self.session.connector._ssl, force_close=True)  # type: ignore[union-attr]
        async with aiohttp.ClientSession(connector=connector) as one:
            try:
                async with asyncio.timeout(after):
                    async with one.request(method, f"{self.url}{path}", json=body,
                                           headers={"Authorization": f"Bearer {token}"}) as r:  # fmt: skip
                        self.statuses[r.status] = self.statuses.get(r.status, 0) + 1
                        await r.read()
            except TimeoutError:
                pass


def _group(sub: str, name: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{name}"


@pytest.fixture
async def door(tmp_path: Path) -> AsyncIterator[tuple[Trio, Service, Door]]:
    trio = await start_trio(tmp_path)
    pki = ensure_dev_pki(tmp_path / "tls", hosts=("127.0.0.1", "localhost"), names=("arm",))
    files = pki.identity("arm")
    arm = Service("arm", ["--identity-endpoint", trio.identity.endpoint, "--keyvault-endpoint", trio.keyvault.endpoint,
                          "--speech-endpoint", trio.speech.endpoint, "--login-endpoint", "https://127.0.0.1:1",
                          "--tls-cert", str(files.cert_file), "--tls-key", str(files.key_file), "--host", "127.0.0.1"],
                  environment(3), free_port(), tmp_path / "arm.log")  # fmt: skip
    arm.start()
    world = await prepare(trio)
    trust = ssl.create_default_context(cafile=str(pki.ca_file))
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trust))
    opened = Door(f"https://127.0.0.1:{arm.port}", session, world)

    async def answering() -> bool:
        try:
            return (await opened.send("GET", "/subscriptions?api-version=2022-12-01"))[0] == 200
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False

    await until(answering, "ARM's door answers")
    try:
        yield trio, arm, opened
    finally:
        await session.close()
        await world.close()
        arm.stop()
        await trio.stop()


def _writes(sub: str, tenant: str, n: int) -> list[tuple[str, str, Any]]:
    """The multi-call writes of storm `n`: an account with its identity, a vault with a
    policy, and a group holding a vault deleted."""
    policy = {"tenantId": tenant, "objectId": str(uuid.UUID(int=n)), "permissions": {"keys": ["get", "wrapKey"]}}
    return [
        ("PUT", f"{_group(sub, 'storm')}/providers/Microsoft.CognitiveServices/accounts/acct-{n}?{CS}",
         {"kind": "SpeechServices", "sku": {"name": "S0"}, "location": "westeurope",
          "identity": {"type": "SystemAssigned"}, "properties": {}}),
        ("PUT", f"{_group(sub, 'storm')}/providers/Microsoft.KeyVault/vaults/storm{n}?{KV}",
         {"location": "westeurope", "properties": {"tenantId": tenant, "sku": {"family": "A", "name": "standard"},
                                                   "accessPolicies": [policy]}}),
        ("DELETE", f"{_group(sub, f'doomed-{n}')}?{RG}", None),
    ]  # fmt: skip


async def test_arm_writes_abandoned_at_any_call_converge_on_retry(door: tuple[Trio, Service, Door]) -> None:
    _, _, d = door
    world, rng = d.world, random.Random(SEED)  # noqa: S311 (repeatable moments, no secret)
    sub, tenant = world.subscription_id, world.tenant_id
    assert (await d.send("PUT", f"{_group(sub, 'storm')}?{RG}", {"location": "westeurope"}))[0] in (200, 201)
    requests: list[tuple[str, str, Any]] = []
    for storm in range(STORMS):
        for i in range(CALLS_PER_STORM // 3):
            n = storm * 100 + i
            status, _ = await d.send("PUT", f"{_group(sub, f'doomed-{n}')}?{RG}", {"location": "westeurope"})
            assert status in (200, 201)
            await world.vaults.create_vault(f"doomed{n}", sub, f"doomed-{n}", "westeurope")
            requests += _writes(sub, tenant, n)
        batch = requests[-CALLS_PER_STORM:]
        await asyncio.gather(*(d.abandoned(m, p, b, rng.uniform(*CANCEL_AFTER_S)) for m, p, b in batch))
    # The same requests again, as a client that retries: each converges.
    for method, path, body in requests:
        status, answer = await d.send(method, path, body)
        done = (200, 202, 404) if method == "DELETE" else (200, 201)  # (a group the first try deleted: 404, as ARM)
        assert status in done, (method, path, status, answer)
        if method == "DELETE" and status == 202:
            assert (await _polled(d, path)) == 200
    for method, path, body in requests:
        status, answer = await d.send("GET" if method == "PUT" else "HEAD", path, None)
        if "/accounts/" in path:
            assert status == 200 and answer["identity"]["principalId"], answer
        elif "/vaults/" in path:
            assert status == 200 and [p["objectId"] for p in answer["properties"]["accessPolicies"]] == [
                body["properties"]["accessPolicies"][0]["objectId"]
            ], answer  # fmt: skip
        else:
            assert status == 404, path  # the group is gone
    assert not [s for s in d.statuses if s >= 500], d.statuses
    _report("abandoned", {"storms": STORMS, "requests": len(requests), "statuses": dict(sorted(d.statuses.items()))})


async def _polled(d: Door, path: str) -> int:
    """A group deletion answered 202 asked again until it is done."""
    for _ in range(300):
        status, _ = await d.send("DELETE", path)
        if status != 202:
            return status
        await asyncio.sleep(0.1)
    raise AssertionError(f"{path}: still deleting")


async def test_a_vault_killed_under_arm_is_a_refusal_and_then_served_again(door: tuple[Trio, Service, Door]) -> None:
    trio, _, d = door
    world, rng = d.world, random.Random(SEED + 1)  # noqa: S311 (repeatable moments, no secret)
    sub, tenant = world.subscription_id, world.tenant_id
    assert (await d.send("PUT", f"{_group(sub, 'killed')}?{RG}", {"location": "westeurope"}))[0] in (200, 201)
    vaults = f"{_group(sub, 'killed')}/providers/Microsoft.KeyVault/vaults"
    sku = {"family": "A", "name": "standard"}
    body = {"location": "westeurope", "properties": {"tenantId": tenant, "sku": sku, "accessPolicies": []}}
    acknowledged: list[str] = []
    outage: dict[int, int] = {}
    recoveries: list[float] = []
    made = 0
    for _ in range(KILLS):
        stop = time.monotonic() + rng.uniform(0.5, 1.5)

        async def maker(stop: float = stop) -> None:
            nonlocal made
            while time.monotonic() < stop + 3:
                made += 1
                name = f"killed{made}"
                status, _ = await d.send("PUT", f"{vaults}/{name}?{KV}", body)
                if status in (200, 201):
                    acknowledged.append(name)
                else:
                    outage[status] = outage.get(status, 0) + 1

        makers = [asyncio.create_task(maker()) for _ in range(4)]
        await asyncio.sleep(max(0.0, stop - time.monotonic()))
        trio.keyvault.kill9()
        await asyncio.sleep(1.0)  # down a while, the door still asked
        started = time.monotonic()
        trio.keyvault.start()
        await trio.keyvault.wait_ready()
        await asyncio.gather(*makers)

        async def served() -> bool:
            return (await d.send("GET", f"{vaults}?{KV}"))[0] == 200

        await until(served, "ARM serves the vault again")
        recoveries.append(round(time.monotonic() - started, 2))
    assert outage, "no request met the outage: the kill came too late to test anything"
    assert not [s for s in outage if s >= 500 and s != 503], outage
    listed = (await d.send("GET", f"{vaults}?{KV}"))[1]
    there = {v["name"] for v in listed["value"]}
    assert set(acknowledged) <= there, set(acknowledged) - there
    _report("killed", {"kills": KILLS, "acknowledged": len(acknowledged), "refused_in_outage": outage,
                       "seconds_to_serve_again": recoveries})  # fmt: skip


_FOUND: dict[str, dict[str, Any]] = {}
"""What each test of this module measured in this run (the section says what it has)."""


def _report(part: str, figures: dict[str, Any]) -> None:
    print(part, figures)
    _FOUND[part] = figures
    if not REPORT:
        return
    path, found = Path(REPORT), _FOUND
    lines = [
        "## Azure Resource Manager's door under faults",
        "",
        "An ARM operation is several calls of the services; a fault between two must leave what a retry "
        "finishes (tests/faults/test_arm_faults.py, the door as `cmk serve arm` beside the three processes).",
    ]
    if "abandoned" in found:
        a = found["abandoned"]
        lines += [
            "",
            f"Callers that go away: {a['storms']} storms of ARM writes (accounts with their identity, "
            f"vaults with a policy, groups deleted with a vault), each connection closed after 0-30 ms; then "
            f"the same {a['requests']} requests again, each converged. Answers: {a['statuses']} (no 500).",
        ]
    if "killed" in found:
        k = found["killed"]
        lines += [
            "",
            f"The key vault SIGKILLed {k['kills']} times while vaults were made through ARM: "
            f"{k['acknowledged']} acknowledged and all there afterwards; refused during the outage: "
            f"{k['refused_in_outage']}; the door served again {k['seconds_to_serve_again']} s after each "
            "restart began, with no restart of its own.",
        ]
    write_section(path, "arm-faults", "\n".join(lines))
