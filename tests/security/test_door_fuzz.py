"""The trio's HTTPS doors and its CONNECT proxy, fuzzed (tests/security/door_fuzz.py) on a real
trio (`start_trio` with TLS, as `cmk up` runs it):

- the key vault's door: no answer is a 5xx, every complete request is answered (no connection
  closed or left hanging without one), every refusal of the door's own is Key Vault's error body
  with a reason, and a refused request changed nothing in the key vault's tables (audit aside);
- identity's token endpoint (Entra's door): no 5xx, every request answered, as an OAuth error;
- the CONNECT proxy, with the production routes to stand-in doors: every complete head answered,
  a tunnel (200) only to a routed name on port 443 and only to its door, and never a connection
  to anything else on this machine (a canary listener counts them: none);
- slow clients: a request head trickled is cut off at the head timeout (door and proxy), a body
  trickled is answered REQUEST_TOO_SLOW (door, token endpoint), each without holding a call.

    CMK_DOOR_FUZZ_INPUTS  random inputs to the key vault's door (default 300, the everyday run; dev.py
                          security runs 3000), after a sweep of every body field with a value of
                          each JSON type; a third as many to the token endpoint and the proxy
    CMK_FUZZ_SEED         the random seed (as the gRPC fuzzer's)
    CMK_DOOR_FUZZ_REPORT  write the figures as JSON to this path (SECURITY.md is rendered from them)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cmk_trio.launcher.trio import azure_routes
from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.connect_proxy import RunningProxy, route_for, start_proxy
from cmk_trio.rpckit.listeners import ConnectionLimits
from tests import raw_database
from tests.keyvault.doors import Doors
from tests.keyvault.test_azure_door import doors  # noqa: F401 (the fixture)
from tests.security import door_fuzz
from tests.security.door_fuzz import Probe, ProxyInputs, Reply, TokenInputs, VaultDoorInputs, exchange
from tests.security.fuzz import DEFAULT_SEED, LOG_TABLES

INPUTS = int(os.environ.get("CMK_DOOR_FUZZ_INPUTS", "300"))
SEED = int(os.environ.get("CMK_FUZZ_SEED", DEFAULT_SEED))
REPORT = os.environ.get("CMK_DOOR_FUZZ_REPORT")
HEAD_TIMEOUT = 2.0
"""The trio's and the proxy's head timeout here (CMK_HEAD_TIMEOUT_SECONDS; 10 s by default)."""
PARSER_REFUSALS = frozenset({400, 405, 413, 414, 417, 431, 501, 505})
"""What aiohttp's own parser answers a request it cannot read (no JSON body of ours)."""


@pytest.fixture(autouse=True)
def _short_head_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Read by every listener as it starts (the trio of the `doors` fixture starts after this)."""
    monkeypatch.setenv("CMK_HEAD_TIMEOUT_SECONDS", str(HEAD_TIMEOUT))


class Tally:
    """What one target's inputs got, and what went wrong."""

    def __init__(self) -> None:
        self.inputs = 0
        self.kinds: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        self.failures: list[dict[str, Any]] = []
        self.store_checks = 0

    def fail(self, probe: Probe, reply: Reply, why: str) -> None:
        self.failures.append({"kind": probe.kind, "why": why, "status": reply.status, "note": probe.note,
                              "input": probe.data[:300].decode("latin-1"),
                              "answer": reply.body[:300].decode("latin-1")})  # fmt: skip

    def as_json(self) -> dict[str, Any]:
        return {"inputs": self.inputs, "kinds": dict(self.kinds.most_common()),
                "statuses": dict(self.statuses.most_common()), "server_errors": sum(
                    n for s, n in self.statuses.items() if s.split()[0].isdigit() and int(s.split()[0]) >= 500),
                "unanswered": self.statuses.get("none", 0), "store_checks": self.store_checks,
                "failures": self.failures[:50], "failure_count": len(self.failures)}  # fmt: skip


def reason(reply: Reply) -> str:
    body = reply.json()
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("innererror", {}).get("code", ""))
    if isinstance(body, dict) and "error" in body:  # an OAuth error (identity's door)
        return str(body.get("reason") or body.get("error"))
    return "(parser)" if reply.status in PARSER_REFUSALS else "(no body of ours)"


def checked(tally: Tally, probe: Probe, reply: Reply) -> None:
    """What every answer must be: there, in time, not a 5xx, a refusal with its reason."""
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
    elif reply.status >= 400 and reason(reply) == "(no body of ours)":
        tally.fail(probe, reply, "a refusal without a reason")


async def fuzz_vault_door(trio_doors: Doors, rng: random.Random, tally: Tally) -> None:
    made = await trio_doors.vaults.create_key(trio_doors.vault, "cmk")
    wrapped = (await trio_doors.vaults.wrap(made.key_id, b"k" * 32)).ciphertext
    secret = await trio_doors.vaults.set_secret(trio_doors.vault, "fz-secret", "fuzzed value")
    backup = door_fuzz.b64url(await trio_doors.vaults.backup_key(made.key_id))
    token = await trio_doors.contoso.admin_client.token_for(audiences.VAULT)
    inputs = VaultDoorInputs(trio_doors.vault, "cmk", made.version, token, door_fuzz.b64url(wrapped), rng=rng,
                             secret="fz-secret", secret_version=secret.version, backup=backup)  # fmt: skip
    host, _, port = trio_doors.door.rpartition(":")
    tls = door_fuzz.client_tls()
    location = trio_doors.running.keyvault.config.database_location
    async with raw_database.reader(location, "keyvault") as query:
        before = await raw_database.digests(location, "keyvault", query, skip=LOG_TABLES)
        assert before, "no tables found: the wrong database is watched"
        probes = inputs.sweep()
        probes += [inputs.probe() for _ in range(INPUTS)]
        for probe in probes:
            reply = await exchange(host, int(port), probe.data, tls)
            checked(tally, probe, reply)
            after = await raw_database.digests(location, "keyvault", query, skip=LOG_TABLES)
            if reply.status is None or reply.status >= 400:
                tally.store_checks += 1
                if after != before:
                    changed = sorted(t for t in after if after[t] != before.get(t))
                    tally.fail(probe, reply, f"a refused request changed {changed}")
            before = after
    # The door still serves, as it did before.
    healthy = door_fuzz.request("GET", "/keys/cmk?api-version=7.6", inputs.headers())
    assert (await exchange(host, int(port), healthy, tls)).status == 200


async def fuzz_token_endpoint(trio_doors: Doors, rng: random.Random, tally: Tally) -> None:
    creds = trio_doors.contoso.admin_credentials
    url = trio_doors.running.identity.http_url or ""
    host, _, port = url.removeprefix("https://").rpartition(":")
    inputs = TokenInputs(creds.tenant_id, creds.client_id, creds.client_secret, f"{host}:{port}", rng=rng)
    tls = door_fuzz.client_tls()
    for _ in range(max(1, INPUTS // 3)):
        probe = inputs.probe()
        checked(tally, probe, await exchange(host, int(port), probe.data, tls))
    # The real client still signs in (a wrong secret now and then is paused, never the right one).
    good = f"grant_type=client_credentials&client_id={creds.client_id}&client_secret={creds.client_secret}" \
           "&scope=https%3A%2F%2Fvault.azure.net%2F.default"  # fmt: skip
    asked = door_fuzz.request("POST", f"/{creds.tenant_id}/oauth2/v2.0/token", [
        ("Host", f"{host}:{port}"), ("Content-Type", "application/x-www-form-urlencoded")], good.encode())  # fmt: skip
    assert (await exchange(host, int(port), asked, tls)).status == 200


class Listener:
    """A loopback listener that counts what connects to it (and says nothing)."""

    def __init__(self) -> None:
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            with contextlib.suppress(Exception):
                await asyncio.wait_for(reader.read(1024), 0.2)
            writer.close()

        self.server = await asyncio.start_server(accepted, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def proxied() -> AsyncIterator[tuple[RunningProxy, dict[str, Listener], Listener, int]]:
    """The proxy with the production routes (azure_routes) to three stand-in doors, and a canary."""
    doors_ = {"identity": Listener(), "keyvault": Listener(), "arm": Listener()}
    ports = {name: await listener.start() for name, listener in doors_.items()}
    canary = Listener()
    canary_port = await canary.start()
    routes = azure_routes(*(f"https://127.0.0.1:{ports[name]}" for name in ("identity", "keyvault", "arm")))
    proxy = await start_proxy(routes, limits=ConnectionLimits(head_timeout=HEAD_TIMEOUT))
    try:
        yield proxy, doors_, canary, canary_port
    finally:
        await proxy.stop()
        for listener in (*doors_.values(), canary):
            await listener.stop()


async def fuzz_proxy(proxied, rng: random.Random, tally: Tally) -> dict[str, Any]:
    proxy, stand_ins, canary, canary_port = proxied
    routes = azure_routes("https://identity:1", "https://keyvault:2", "https://arm:3")
    routed = ["login.microsoftonline.com", "contoso.vault.azure.net", "x-1.vault.azure.net", "management.azure.com"]
    inputs = ProxyInputs(canary_port, routed, rng=rng)
    tunnels = 0
    for _ in range(max(1, INPUTS // 3)):
        probe = inputs.probe()
        reply = await exchange("127.0.0.1", proxy.port, probe.data, None)
        tally.inputs += 1
        tally.kinds[probe.kind] += 1
        tally.statuses["none" if reply.status is None else str(reply.status)] += 1
        line = probe.data.split(b"\r\n", 1)[0].decode("latin-1")
        method, _, rest = line.partition(" ")
        authority, _, version = rest.partition(" ")
        may_tunnel = method == "CONNECT" and version.startswith("HTTP/1.") and route_for(routes, authority) is not None
        if reply.timed_out or reply.status is None:
            if len(probe.data) <= 8 * 1024:  # (a head beyond 8 KiB may be cut off before it is read)
                tally.fail(probe, reply, "no answer to a complete head")
        elif reply.status == 200:
            tunnels += 1
            if not may_tunnel:
                tally.fail(probe, reply, "a tunnel to what is not routed")
        elif reply.status not in (400, 403, 405):
            tally.fail(probe, reply, f"an unexpected answer {reply.status}")
    await asyncio.sleep(0.3)  # (the stand-ins count a connection as they accept it)
    through = sum(listener.connections for listener in stand_ins.values())
    if canary.connections:
        tally.failures.append({"why": f"the canary was reached {canary.connections} times: an open proxy"})
    if through != tunnels:
        tally.failures.append({"why": f"{through} connections reached the doors for {tunnels} tunnels"})
    return {"tunnels": tunnels, "door_connections": through, "canary_connections": canary.connections}


async def slow_clients(trio_doors: Doors, proxy: RunningProxy) -> dict[str, Any]:
    """A head trickled (door, proxy): cut off at the head timeout with no answer. A body trickled
    (door, token endpoint): answered REQUEST_TOO_SLOW within the body timeout. The seconds are
    until the answer (or the cut), for the report: nothing asserts them."""
    tls = door_fuzz.client_tls()
    vault_host, _, vault_port = trio_doors.door.rpartition(":")
    id_host, _, id_port = (trio_doors.running.identity.http_url or "").removeprefix("https://").rpartition(":")
    token = await trio_doors.contoso.admin_client.token_for(audiences.VAULT)

    async def trickle(host: str, port: int, first: bytes, tls_: Any, *, seconds: float = 20.0) -> tuple[Reply, float]:
        started = time.monotonic()
        reader, writer = await asyncio.open_connection(host, port, ssl=tls_)
        writer.write(first)
        chunks: list[bytes] = []

        async def drip() -> None:
            with contextlib.suppress(Exception):
                while True:
                    await asyncio.sleep(0.5)
                    writer.write(b"a")
                    await writer.drain()

        dripping = asyncio.create_task(drip())
        answered = None
        try:
            async with asyncio.timeout(seconds):
                while chunk := await reader.read(65536):
                    chunks.append(chunk)
                    answered = answered or time.monotonic()
        except (TimeoutError, ConnectionError, OSError):
            pass
        finally:
            dripping.cancel()
            writer.close()
        raw = b"".join(chunks)
        status = raw.split(b" ", 2)[1] if raw.startswith(b"HTTP/") else b""
        return Reply(int(status) if status.isdigit() else None, raw, raw.partition(b"\r\n\r\n")[2]), (
            (answered or time.monotonic()) - started
        )

    vault_head = f"GET /keys?api-version=7.6 HTTP/1.1\r\nHost: {trio_doors.vault}.vault.azure.net\r\nX-Slow: ".encode()
    vault_body = (f"POST /keys/cmk/create?api-version=7.6 HTTP/1.1\r\nHost: {trio_doors.vault}.vault.azure.net\r\n"
                  f"Authorization: Bearer {token}\r\nContent-Length: 1000\r\n"
                  "Content-Type: application/json\r\n\r\n{").encode()  # fmt: skip
    token_body = (f"POST /{trio_doors.contoso.tenant_id}/oauth2/v2.0/token HTTP/1.1\r\nHost: {id_host}\r\n"
                  "Content-Type: application/x-www-form-urlencoded\r\n"
                  "Content-Length: 1000\r\n\r\ngrant_type=").encode()  # fmt: skip
    results = await asyncio.gather(
        trickle(vault_host, int(vault_port), vault_head, tls),
        trickle(vault_host, int(vault_port), vault_body, tls),
        trickle(id_host, int(id_port), token_body, tls),
        trickle("127.0.0.1", proxy.port, b"CONNECT login.microsoft", None),
    )
    names = ("door: slow head", "door: slow body", "token endpoint: slow body", "proxy: slow head")
    found = {name: {"status": reply.status, "reason": reason(reply) if reply.status else "", "seconds": round(s, 1)}
             for name, (reply, s) in zip(names, results, strict=True)}  # fmt: skip
    return found


@pytest.mark.timeout(180 + INPUTS * 0.3)
async def test_no_input_breaks_a_door_or_opens_the_proxy(doors: Doors, proxied) -> None:  # noqa: F811
    rng = random.Random(SEED)  # noqa: S311 (reproducible inputs, no secret)
    vault, token, proxy = Tally(), Tally(), Tally()
    slow = asyncio.create_task(slow_clients(doors, proxied[0]))
    try:
        await fuzz_vault_door(doors, rng, vault)
        await fuzz_token_endpoint(doors, rng, token)
        reach = await fuzz_proxy(proxied, rng, proxy)
        slowed = await slow
    finally:
        slow.cancel()
    found = {"seed": SEED, "head_timeout": HEAD_TIMEOUT, "vault_door": vault.as_json(),
             "token_endpoint": token.as_json(), "proxy": proxy.as_json() | reach, "slow": slowed}  # fmt: skip
    if REPORT:
        await asyncio.to_thread(Path(REPORT).write_text, json.dumps(found, indent=1, ensure_ascii=False) + "\n")
    print(json.dumps({k: v for k, v in found.items() if k != "slow"} | {"slow": slowed}, indent=1)[:4000])
    for name, tally in (("key vault door", vault), ("token endpoint", token), ("proxy", proxy)):
        assert not tally.failures, f"{name}: {json.dumps(tally.failures[:10], indent=1, ensure_ascii=False)}"
    # Slow heads are cut off with nothing said; slow bodies are answered, with the reason.
    assert slowed["door: slow head"]["status"] is None and slowed["proxy: slow head"]["status"] is None, slowed
    assert (slowed["door: slow body"]["status"], slowed["door: slow body"]["reason"]) == (400, "REQUEST_TOO_SLOW")
    assert slowed["token endpoint: slow body"]["status"] == 408, slowed
    assert proxied[0].count.cut_off >= 1 and doors.running.keyvault.http is not None
    assert doors.running.keyvault.http.site.count.cut_off >= 1
