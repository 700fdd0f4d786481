"""Azure Resource Manager's door, fuzzed (tests/security/arm_fuzz.py's inputs) on a real trio
started as `cmk up` starts it (TLS, every door), as the subscription's Owner: no answer is a
5xx, every complete request is answered, every refusal is ARM's error body with our reason,
and a refused request changed nothing in any service's tables (audit aside): an ARM operation
is several calls of the services, and a refusal after the first must not leave it half done.

    CMK_ARM_FUZZ_INPUTS  random inputs after the sweep (default 200, the everyday run; dev.py
                         security runs 2000)
    CMK_FUZZ_SEED        the random seed (as the other fuzzers')
    CMK_ARM_FUZZ_REPORT  write the figures as JSON to this path (SECURITY.md is rendered from them)
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import ssl
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import pytest

from cmk_trio.rpckit import audiences
from tests import raw_database
from tests.keyvault.doors import PERMISSIONS, Doors, open_doors
from tests.security import door_fuzz
from tests.security.arm_fuzz import CS, KV, RG, ArmInputs
from tests.security.door_fuzz import Probe, Reply, exchange
from tests.security.fuzz import DEFAULT_SEED, LOG_TABLES
from tests.security.test_door_fuzz import PARSER_REFUSALS, Tally

INPUTS = int(os.environ.get("CMK_ARM_FUZZ_INPUTS", "200"))
SEED = int(os.environ.get("CMK_FUZZ_SEED", DEFAULT_SEED))
REPORT = os.environ.get("CMK_ARM_FUZZ_REPORT")
SERVICES = ("identity", "keyvault", "speech")


@pytest.fixture
async def doors(tmp_path: Path) -> AsyncIterator[Doors]:
    async with open_doors(tmp_path) as opened:
        yield opened


def reason(reply: Reply) -> str:
    body = reply.json()
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        for info in body["error"].get("additionalInfo") or []:
            if isinstance(info, dict) and info.get("type") == "CmkTrioReason":
                return str(info.get("info", {}).get("reason", ""))
        return "(no reason)"
    return "(parser)" if reply.status in PARSER_REFUSALS else "(no body of ours)"


def checked(tally: Tally, probe: Probe, reply: Reply) -> None:
    """There, in time, not a 5xx, and a refusal in ARM's body with its reason (a HEAD has no body)."""
    tally.inputs += 1
    tally.kinds[probe.kind] += 1
    said = "none" if reply.status is None else f"{reply.status} {reason(reply)}" if reply.status >= 400 else "2xx"
    tally.statuses[said] += 1
    if reply.timed_out:
        tally.fail(probe, reply, "no answer within the guard (a hang)")
    elif reply.status is None:
        tally.fail(probe, reply, "the connection closed without an answer")
    elif reply.status >= 500:
        tally.fail(probe, reply, "a server error")
    elif reply.status >= 400 and not probe.data.startswith(b"HEAD ") and reason(reply).startswith("(no"):
        tally.fail(probe, reply, "a refusal without a reason")


async def _world(doors: Doors) -> ArmInputs:
    """A group, a vault with a key and a speech account, made through the door itself."""
    contoso, sub = doors.contoso, doors.contoso.subscription_id
    token = await contoso.admin_client.token_for(audiences.MANAGEMENT)
    assert doors.arm is not None
    vault, group = f"fz{uuid.uuid4().hex[:10]}", "fz-rg"
    base = f"{doors.arm}/subscriptions/{sub}/resourceGroups/{group}"
    trust = ssl.create_default_context(cafile=str(doors.ca))
    admin = {"tenantId": contoso.tenant_id, "objectId": contoso.admin.object_id, "permissions": {"keys": PERMISSIONS}}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trust),
                                     headers={"Authorization": f"Bearer {token}"}) as session:  # fmt: skip
        for url, body in (
            (f"{base}?api-version={RG}", {"location": "westeurope"}),
            (f"{base}/providers/Microsoft.KeyVault/vaults/{vault}?api-version={KV}", {"location": "westeurope",
             "properties": {"tenantId": contoso.tenant_id, "sku": {"family": "A", "name": "standard"},
                            "accessPolicies": [admin], "enablePurgeProtection": True}}),
            (f"{base}/providers/Microsoft.CognitiveServices/accounts/fz-speech?api-version={CS}",
             {"kind": "SpeechServices", "sku": {"name": "S0"}, "location": "westeurope",
              "identity": {"type": "SystemAssigned"}, "properties": {}}),
        ):  # fmt: skip
            async with session.put(url, json=body) as r:
                assert r.status in (200, 201), await r.text()
    await doors.vaults.create_key(vault, "cmk")
    host = doors.arm.removeprefix("https://")
    return ArmInputs(sub, contoso.tenant_id, contoso.admin.object_id, group, vault, "fz-speech", token, host)


@pytest.mark.timeout(180 + INPUTS * 0.5)
async def test_no_input_breaks_arms_door(doors: Doors) -> None:
    inputs = await _world(doors)
    inputs.rng = random.Random(SEED)  # noqa: S311 (reproducible inputs, no secret)
    tally = Tally()
    host, _, port = inputs.host.rpartition(":")
    tls = door_fuzz.client_tls()
    trio = doors.running
    locations = {"identity": trio.identity.config.database_location,
                 "keyvault": trio.keyvault.config.database_location,
                 "speech": trio.speech.config.database_location}  # fmt: skip
    async with AsyncExitStack() as stack:
        queries = {s: await stack.enter_async_context(raw_database.reader(locations[s], s)) for s in SERVICES}

        async def stored() -> dict[str, dict[str, str]]:
            return {s: await raw_database.digests(locations[s], s, queries[s], skip=LOG_TABLES) for s in SERVICES}

        before = await stored()
        assert all(before.values()), "no tables found: the wrong databases are watched"
        probes = inputs.sweep()
        probes += [inputs.probe() for _ in range(INPUTS)]
        for probe in probes:
            reply = await exchange(host, int(port), probe.data, tls)
            checked(tally, probe, reply)
            after = await stored()
            if reply.status is None or reply.status >= 400:
                tally.store_checks += 1
                if after != before:
                    changed = sorted(f"{s}.{t}" for s in SERVICES for t in after[s] if after[s][t] != before[s].get(t))
                    tally.fail(probe, reply, f"a refused request changed {changed}")
            before = after
    # The door still serves, as it did before (the subscription: an odd method may have deleted the group,
    # which its Owner may).
    healthy = door_fuzz.request("GET", f"/subscriptions/{inputs.subscription}?api-version=2022-12-01",
                                inputs.headers())  # fmt: skip
    assert (await exchange(host, int(port), healthy, tls)).status == 200
    found = {"seed": SEED, "arm_door": tally.as_json()}
    if REPORT:
        await asyncio.to_thread(Path(REPORT).write_text, json.dumps(found, indent=1, ensure_ascii=False) + "\n")
    print(json.dumps(found, indent=1, ensure_ascii=False)[:4000])
    assert not tally.failures, json.dumps(tally.failures[:10], indent=1, ensure_ascii=False)
