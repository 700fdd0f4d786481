"""The benchmark suite: ceilings and our paths measured side by side in one run on one
machine, printed as ratios with pass/fail, written to bench/results.json and rendered into
BENCHMARKS.md. `python3 dev.py bench` runs it; `--smoke` runs a seconds-long version (CI).

The trio and the echo ceiling each run in their own process (as in production); this
process is the load generator.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cmk.keyvault.v1 import resources_pb2 as kvres  # noqa: E402

from services.cli.common import State  # noqa: E402
from services.client.identity import ClientCredentials  # noqa: E402
from services.loadgen.runner import run_closed  # noqa: E402
from services.loadgen.scenarios import prepare, scenario  # noqa: E402
from services.rpckit.channels import open_channel  # noqa: E402
from services.rpckit.errors import ServiceError  # noqa: E402

CMK = [sys.executable, "-m", "services.cli"]


def crypto_ceilings(seconds: float) -> dict[str, float]:
    """Operations per second of the raw crypto on one core."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    wrapped = key.public_key().encrypt(os.urandom(32), oaep)
    aes = AESGCM(os.urandom(32))
    nonce = os.urandom(12)
    sealed = aes.encrypt(nonce, os.urandom(1024), b"aad")
    import jwt

    token = jwt.encode({"sub": "x", "aud": "a"}, key, algorithm="RS256")
    public = key.public_key()

    def rate(fn: Any) -> float:
        count, end = 0, time.perf_counter() + seconds
        while time.perf_counter() < end:
            fn()
            count += 1
        return count / seconds

    return {
        "rsa2048_oaep_decrypt_per_s": rate(lambda: key.decrypt(wrapped, oaep)),
        "aes256gcm_1kib_decrypt_per_s": rate(lambda: aes.decrypt(nonce, sealed, b"aad")),
        "rs256_verify_per_s": rate(lambda: jwt.decode(token, public, algorithms=["RS256"], audience="a")),
    }


async def echo_ceiling(seconds: float, concurrency: int) -> float:
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "echo_server.py")], stdout=subprocess.PIPE, text=True
    )
    try:
        port = int(process.stdout.readline())  # type: ignore[union-attr]
        channel = open_channel(f"127.0.0.1:{port}")
        call: Any = channel.unary_unary("/cmk.bench.v1.Echo/Echo")
        payload = b"x" * 1024

        async def echo() -> Any:
            return await call(payload)

        result = await run_closed(
            echo, scenario="echo", concurrency=concurrency, duration=seconds, requests=None, warmup=1
        )
        await channel.close()
        return result.throughput
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


def start_trio(data_dir: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CMK_")}
    process = subprocess.Popen(
        [*CMK, "up", "--data-dir", str(data_dir), "--port-base", "0", "--output", "json", "--insecure"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip
    return process, json.loads(process.stdout.readline())  # type: ignore[union-attr]


async def ours(endpoints: dict[str, str], operator: ClientCredentials, seconds: float, concurrency: int,
               trials: int) -> dict[str, Any]:  # fmt: skip
    state = State("json", None, None)
    prepared = await prepare(endpoints, operator, state.dial)
    results: dict[str, Any] = {}
    try:
        for name in ("read", "read-mm", "unwrap", "token", "write"):
            run = await run_closed(scenario(name, prepared), scenario=name, concurrency=concurrency,
                                   duration=seconds, requests=None, warmup=1)  # fmt: skip
            results[name] = run.summary()
        results["revocation"] = await revocation(prepared, trials)
        results["rotation_under_load"] = await rotation_under_load(prepared, seconds, concurrency)
    finally:
        await prepared.close()
    return results


async def revocation(prepared: Any, trials: int) -> dict[str, dict[str, float]]:
    """Milliseconds from a revoking change to the first refused read, for each way a customer
    revokes: removing the identity's access policy, disabling the key, and disabling the
    resource's managed identity."""
    resource = prepared.app_cmk.split("/applications/")[0]
    identity = (await prepared.speech.get_resource(resource)).identity.principal_id
    vault = prepared.key_id.split("//")[1].split(".")[0]
    tenant = prepared.app_credentials.tenant_id

    async def enabled(value: bool) -> None:
        await prepared.vaults.update_key(prepared.key_id, kvres.KeyVersion(enabled=value), ["enabled"])

    ways: dict[str, tuple[Callable[[], Awaitable[Any]], Callable[[], Awaitable[Any]]]] = {
        "policy_removed": (
            lambda: prepared.vaults.remove_access_policy(vault, identity),
            lambda: prepared.vaults.set_access_policy(vault, tenant, identity, ["get", "wrapKey", "unwrapKey"]),
        ),
        "key_disabled": (lambda: enabled(False), lambda: enabled(True)),
        "identity_disabled": (
            lambda: prepared.identity.disable_principal(tenant, identity),
            lambda: prepared.identity.enable_principal(tenant, identity),
        ),
    }
    results = {}
    for way, (revoke, restore) in ways.items():
        samples = []
        for _ in range(trials):
            await _read_until(prepared, refused=False)  # readable again, with the data key cached
            started = time.perf_counter()
            await revoke()
            await _read_until(prepared, refused=True)
            samples.append((time.perf_counter() - started) * 1000)
            await restore()
        samples.sort()
        results[way] = {
            "trials": trials,
            "p50_ms": samples[len(samples) // 2],
            "p99_ms": samples[min(len(samples) - 1, int(len(samples) * 0.99))],
        }
    await _read_until(prepared, refused=False)
    return results


async def _read_until(prepared: Any, *, refused: bool) -> None:
    """Read the CMK application until it is refused (or, with refused=False, until it is not);
    a benchmark that waits more than 30 s for either is broken, and says so."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            await prepared.speech.get_application(prepared.app_cmk)
        except ServiceError:
            if refused:
                return
        else:
            if not refused:
                return
    raise RuntimeError(f"the CMK application was not {'refused' if refused else 'readable again'} within 30 s")


async def rotation_under_load(prepared: Any, seconds: float, concurrency: int) -> dict[str, Any]:
    """Reads go on while the key is rotated and the resource re-pointed, twice."""
    resource = prepared.app_cmk.split("/applications/")[0]
    sub = resource.split("/")[2]

    async def rotate() -> None:
        for _ in range(2):
            await asyncio.sleep(seconds / 3)
            newer = await prepared.vaults.rotate_key(prepared.key_id)
            await prepared.speech.set_encryption(
                resource, key_uri=newer.key_id, key_subscription_id=sub, skip_grant=True
            )

    rotations = asyncio.create_task(rotate())
    run = await run_closed(scenario("read", prepared), scenario="read", concurrency=concurrency, duration=seconds,
                           requests=None)  # fmt: skip
    await rotations
    return {"reads": run.requests, "failed_reads": sum(run.errors.values())}


def render(results: dict[str, Any]) -> str:
    rows = results["targets"]
    lines = [
        "# Benchmarks", "",
        f"Run on {results['date']} on {results['machine']}; `python3 dev.py bench` (numbers below are written by it).",
        "", "| measure | value | target | result |", "| --- | --- | --- | --- |",
    ]  # fmt: skip
    lines += [f"| {r['name']} | {r['value']} | {r['target']} | {'pass' if r['ok'] else 'FAIL'} |" for r in rows]
    lines += ["", "Raw figures: `bench/results.json`.", ""]
    learned = ROOT / "bench" / "LEARNED.md"
    if learned.exists():
        lines += [learned.read_text()]
    return "\n".join(lines)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="seconds, not minutes (CI)")
    args = parser.parse_args()
    seconds, concurrency, trials = (1.0, 8, 3) if args.smoke else (10.0, 32, 50)
    crypto = crypto_ceilings(0.3 if args.smoke else 2.0)
    echo = await echo_ceiling(seconds, concurrency)
    with tempfile.TemporaryDirectory() as tmp:
        process, banner = start_trio(Path(tmp))
        try:
            data = json.loads((Path(tmp) / "operator.json").read_text())
            operator = ClientCredentials(data["tenant_id"], data["client_id"], data["client_secret"])
            measured = await ours(banner["services"], operator, seconds, concurrency, trials)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=20)
    read, read_mm, unwrap = (measured[n]["throughput_per_s"] for n in ("read", "read-mm", "unwrap"))
    targets = [
        {"name": "read / echo ceiling", "value": round(read / echo, 3), "target": ">= 0.5", "ok": read / echo >= 0.5},
        {"name": "read / read-mm", "value": round(read / read_mm, 3), "target": ">= 0.9", "ok": read / read_mm >= 0.9},
        {"name": "unwrap / RSA decrypt ceiling", "value": round(unwrap / crypto["rsa2048_oaep_decrypt_per_s"], 3),
         "target": ">= 0.5", "ok": unwrap / crypto["rsa2048_oaep_decrypt_per_s"] >= 0.5},
        {"name": "unwrap per second", "value": unwrap, "target": "> 400", "ok": unwrap > 400},
        *({"name": f"revocation p99, {way.replace('_', ' ')} (ms)", "value": round(r["p99_ms"], 1),
           "target": "< 1000", "ok": r["p99_ms"] < 1000} for way, r in measured["revocation"].items()),
        {"name": "failed reads during rotation", "value": measured["rotation_under_load"]["failed_reads"],
         "target": "0", "ok": measured["rotation_under_load"]["failed_reads"] == 0},
    ]  # fmt: skip
    results = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "smoke": args.smoke, "crypto_ceilings": crypto, "echo_per_s": echo, "ours": measured, "targets": targets,
    }  # fmt: skip
    for row in targets:
        print(f"{'pass' if row['ok'] else 'FAIL':4}  {row['name']}: {row['value']} (target {row['target']})")
    if not args.smoke:
        (ROOT / "bench" / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        (ROOT / "BENCHMARKS.md").write_text(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
