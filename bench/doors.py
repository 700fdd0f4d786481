"""The Azure doors' paths beside gRPC's, in one run on one trio with TLS (the doors speak only
HTTPS, as Key Vault does): unwrap through the key vault's door as azure-keyvault-keys'
CryptographyClient sends it (POST /keys/{name}/{version}/unwrapkey with a bearer token and
Key Vault's JSON, on kept-alive HTTPS connections), against gRPC unwrap over mutual TLS on the
same trio, each with the trio's CPU per call; and revocation over HTTPS: from removing the
access policy (through gRPC) to the door's first 403, the caller idle in between.

The load generator speaks HTTP with aiohttp rather than through the SDK itself: what is
measured is the door and the engine behind it, not the SDK's own (synchronous) pipeline.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench import arm, proc, replicas, scale
from cmk_trio.cli.common import State, read_operator_file
from cmk_trio.loadgen.scenarios import IDENTITY_GRANT, Prepared, prepare, scenario
from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.devca import DevPki
from cmk_trio.rpckit.errors import ServiceError
from cmk_trio.rpckit.reasons import Reason

CMK = [sys.executable, "-m", "cmk_trio.cli"]
API_VERSION = "7.6"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Door:
    """Unwraps through the key vault's door as the SDK does, with the managed identity's token."""

    def __init__(self, prepared: Prepared, door_url: str, ca: Path) -> None:
        if prepared.unwrap_token is None:
            raise ValueError("prepare() needs the speech platform's credentials: the door is driven as speech would")
        self._token = prepared.unwrap_token
        vault, rest = prepared.key_id.removeprefix("https://").split("/", 1)
        self._host = vault  # {vault}.vault.azure.net: the door finds the vault by the Host header
        self._url = f"{door_url}/{rest}/unwrapkey?api-version={API_VERSION}"
        self._body = json.dumps({"alg": "RSA-OAEP-256", "value": _b64url(prepared.wrapped)})
        trust = ssl.create_default_context(cafile=str(ca))
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trust, limit=0))

    async def unwrap(self) -> int:
        """One unwrap; a refusal raised as the ServiceError of the reason in Key Vault's body."""
        headers = {"Host": self._host, "Authorization": f"Bearer {await self._token(audiences.VAULT)}",
                   "Content-Type": "application/json"}  # fmt: skip
        async with self.session.post(self._url, data=self._body, headers=headers) as response:
            body = await response.read()
            if response.status != 200:
                error = json.loads(body)["error"]
                raise ServiceError(Reason(error["innererror"]["code"]), f"{response.status}: {error['message']}")
            return response.status


def start_tls_trio(data_dir: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CMK_")}
    process = subprocess.Popen(
        [*CMK, "up", "--data-dir", str(data_dir), "--port-base", "0", "--output", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip
    return process, json.loads(process.stdout.readline())  # type: ignore[union-attr]


async def _revocation(prepared: Prepared, door: Door, trials: int) -> dict[str, float]:
    vault, tenant, identity = await prepared.unwrapping_identity()
    samples = []
    for _ in range(trials):
        await replicas.until(door.unwrap, refused=False)  # (the policy restored has reached the door)
        started = time.perf_counter()
        await prepared.vaults.remove_access_policy(vault, identity)
        await replicas.until(door.unwrap, refused=True)
        samples.append((time.perf_counter() - started) * 1000)
        await prepared.vaults.set_access_policy(vault, tenant, identity, IDENTITY_GRANT)
    return {"trials": trials, **scale.percentiles(samples)}


async def measure(seconds: float, concurrency: int, trials: int) -> dict[str, Any]:
    """gRPC unwrap and door unwrap on one TLS trio, and revocation seen at the door."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        process, banner = start_tls_trio(data)
        try:
            tls_dir = banner["tls_dir"]
            state = State("json", None, None, tls_dir=tls_dir)
            prepared = await prepare(banner["services"], read_operator_file(data / "operator.json"), state.dial,
                                     read_operator_file(data / "speech-credentials.json"))  # fmt: skip
            door = Door(prepared, banner["vault_door"], DevPki(Path(tls_dir)).ca_file)
            try:
                grpc_unwrap = await proc.measured_path(scenario("unwrap", prepared), "unwrap over gRPC (mutual TLS)",
                                                       process.pid, seconds, concurrency)  # fmt: skip
                door_unwrap = await proc.measured_path(door.unwrap, "unwrap through the door (HTTPS)", process.pid,
                                                       seconds, concurrency)  # fmt: skip
                revocation = await _revocation(prepared, door, trials)
                management = await arm.measure(prepared, banner["arm"], DevPki(Path(tls_dir)).ca_file, process.pid,
                                               seconds, concurrency)  # fmt: skip
            finally:
                await door.session.close()
                await prepared.close()
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=20)
    return {
        "grpc_unwrap": grpc_unwrap,
        "door_unwrap": door_unwrap,
        "revocation_at_the_door": revocation,
        "arm": management,
    }


def targets(doors: dict[str, Any]) -> list[dict[str, Any]]:
    grpc_rate, door_rate = doors["grpc_unwrap"]["throughput_per_s"], doors["door_unwrap"]["throughput_per_s"]
    ratio = round(door_rate / grpc_rate, 3) if grpc_rate else 0.0
    p99 = round(doors["revocation_at_the_door"]["p99_ms"], 1)
    return [
        {"name": "HTTPS door unwrap / gRPC unwrap (both TLS, one trio)", "value": ratio, "target": ">= 0.7",
         "ok": ratio >= 0.7},
        {"name": "revocation p99 at the HTTPS door, idle (ms)", "value": p99, "target": "< 50", "ok": p99 < 50},
    ]  # fmt: skip


def render(doors: dict[str, Any], concurrency: int, seconds: float) -> str:
    lines = [
        "## The Azure doors", "",
        f"One trio with TLS; each path {seconds:g} s, {concurrency} in flight. The door is driven as "
        "azure-keyvault-keys' CryptographyClient drives it (its HTTP request, with the managed identity's "
        "bearer token), by aiohttp on kept-alive connections; gRPC over mutual TLS on the same trio.", "",
        "| path | per second | p50 ms | p99 ms | errors | trio CPU ms per call |",
        "| --- | --- | --- | --- | --- | --- |",
    ]  # fmt: skip
    for key, label in (("grpc_unwrap", "unwrap over gRPC"), ("door_unwrap", "unwrap through the HTTPS door")):
        r = doors[key]
        lat = r["latency_ms"]
        lines.append(f"| {label} | {r['throughput_per_s']:.0f} | {lat['p50']:.1f} | {lat['p99']:.1f} | "
                     f"{sum(r['errors'].values())} | {r['trio_cpu_ms_per_call']} |")  # fmt: skip
    rev = doors["revocation_at_the_door"]
    lines += ["", f"Revocation seen at the door (the access policy removed through gRPC, the door's next "
                  f"unwrap asked until it is 403), {rev['trials']} trials: p50 {rev['p50_ms']:.1f} ms, "
                  f"p99 {rev['p99_ms']:.1f} ms."]  # fmt: skip
    if "arm" in doors:
        lines += arm.render(doors["arm"])
    return "\n".join(lines)
