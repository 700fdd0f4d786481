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
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import doors, proc, replicas, scale  # noqa: E402
from cmk_trio.cli.common import State, read_operator_file  # noqa: E402
from cmk_trio.client.identity import ClientCredentials, IdentityClient  # noqa: E402
from cmk_trio.client.keyvault import KeyVaultClient  # noqa: E402
from cmk_trio.client.speech import SpeechClient  # noqa: E402
from cmk_trio.loadgen.runner import run_closed  # noqa: E402
from cmk_trio.loadgen.scenarios import IDENTITY_GRANT, Prepared, prepare, scenario  # noqa: E402
from cmk_trio.proto.keyvault.v1 import resources_pb2 as kvres  # noqa: E402
from cmk_trio.rpckit.channels import open_channel  # noqa: E402
from cmk_trio.rpckit.errors import ServiceError  # noqa: E402

CMK = [sys.executable, "-m", "cmk_trio.cli"]


@dataclass(frozen=True)
class Plan:
    """How long and how big: the full suite takes minutes, the smoke run (CI) seconds."""

    seconds: float = 10.0
    concurrency: int = 32
    trials: int = 50
    soak_seconds: float = 300.0
    scale_resources: int = 1000
    scale_applications: int = 100
    crypto_seconds: float = 2.0
    cold_versions: int = 1000
    driver_operations: int = 3000


SMOKE = Plan(seconds=1.0, concurrency=8, trials=3, soak_seconds=3.0, scale_resources=12, scale_applications=5,
             crypto_seconds=0.3, cold_versions=8, driver_operations=100)  # fmt: skip


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


def read_operator(data_dir: Path) -> ClientCredentials:
    return read_operator_file(data_dir / "operator.json")


def read_speech_platform(data_dir: Path) -> ClientCredentials:
    """The speech platform's sign-in, so that `unwrap` uses the managed identity's tokens."""
    return read_operator_file(data_dir / "speech-credentials.json")


async def ours(
    endpoints: dict[str, str], operator: ClientCredentials, platform: ClientCredentials, pid: int, plan: Plan
) -> dict[str, Any]:
    prepared = await prepare(endpoints, operator, State("json", None, None).dial, platform)
    results: dict[str, Any] = {}
    try:
        for name in ("read", "read-mm", "unwrap", "token", "write"):
            watch, started = proc.CpuWatch(pid), time.perf_counter()
            watch.start()
            run = await run_closed(scenario(name, prepared), scenario=name, concurrency=plan.concurrency,
                                   duration=plan.seconds, requests=None, warmup=1)  # fmt: skip
            results[name] = run.summary() | {"cpu": watch.stop(time.perf_counter() - started)}
        results["revocation"] = await revocation(prepared, plan.trials)
        results["revocation"]["policy_removed_under_load"] = await revocation_under_load(
            prepared, plan.concurrency, max(3, plan.trials // 5)
        )
        results["rotation_under_load"] = await rotation_under_load(prepared, plan.seconds, plan.concurrency)
        results["memory_under_mixed_load"] = await memory_under_load(prepared, pid, plan.soak_seconds, plan.concurrency)
    finally:
        await prepared.close()
    return results


async def memory_under_load(prepared: Prepared, pid: int, seconds: float, concurrency: int) -> dict[str, Any]:
    """The trio's RSS sampled through a long mixed run. Caches fill during the first fifth;
    the growth reported is from there to the end, which stays flat unless something grows
    without bound."""
    samples: list[tuple[float, float]] = []
    started = time.perf_counter()

    async def sample() -> None:
        while True:
            samples.append((round(time.perf_counter() - started, 1), round(proc.rss_mib(pid), 1)))
            await asyncio.sleep(seconds / 60)

    sampler = asyncio.create_task(sample())
    try:
        run = await run_closed(scenario("mixed", prepared), scenario="mixed", concurrency=concurrency,
                               duration=seconds, requests=None, warmup=0)  # fmt: skip
    finally:
        sampler.cancel()
    samples.append((round(time.perf_counter() - started, 1), round(proc.rss_mib(pid), 1)))
    settled = next(rss for at, rss in samples if at >= seconds / 5)
    return {
        "seconds": seconds, "requests": run.requests, "errors": sum(run.errors.values()),
        "rss_first_mib": samples[0][1], "rss_settled_mib": settled, "rss_end_mib": samples[-1][1],
        "growth_after_settling_pct": round((samples[-1][1] - settled) / settled * 100, 1),
        "samples": samples,
    }  # fmt: skip


async def scale_step(plan: Plan) -> dict[str, Any]:
    """A trio of its own, filled with plan.scale_resources resources of
    plan.scale_applications applications each, then measured, restarted and measured again."""
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        process, banner = start_trio(data_dir)
        try:
            operator = read_operator(data_dir)
            prepared = await prepare(banner["services"], operator, State("json", None, None).dial)
            try:
                filled = await scale.fill(prepared, plan.scale_resources, plan.scale_applications)
                names = filled.pop("names")
                listed = await scale.paginate(prepared, names)
                before = {"rss_mib": round(proc.rss_mib(process.pid), 1),
                          "databases_mib": scale.database_mib(data_dir)}  # fmt: skip
            finally:
                await prepared.close()

            async def ready(banner: dict[str, Any]) -> None:
                nonlocal prepared
                prepared = await reconnect(prepared, banner["services"], operator)
                await prepared.speech.get_application(prepared.app_cmk)

            process, banner, startup = await scale.restart(process, lambda: start_trio(data_dir), ready)
            try:
                rss_started = round(proc.rss_mib(process.pid), 1)
                relisted = await scale.paginate(prepared, names)
                rss_listed = round(proc.rss_mib(process.pid), 1)
            finally:
                await prepared.close()
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    return {
        **filled, "first_run": {**listed, **before},
        "restart": {**startup, "rss_started_mib": rss_started, "rss_after_listing_mib": rss_listed, **relisted},
    }  # fmt: skip


async def reconnect(prepared: Prepared, endpoints: dict[str, str], operator: ClientCredentials) -> Prepared:
    """The same prepared objects on new channels (a restarted trio listens on new ports)."""
    await prepared.close()
    dial = State("json", None, None).dial
    channels = [dial(endpoints[n]) for n in ("identity", "keyvault", "speech")]
    owner = IdentityClient(channels[0], prepared.owner)
    return replace(
        prepared, channels=channels, identity=IdentityClient(channels[0], operator),
        speech=SpeechClient(channels[2], owner.token_for), vaults=KeyVaultClient(channels[1], owner.token_for),
    )  # fmt: skip


async def revocation(prepared: Any, trials: int) -> dict[str, dict[str, float]]:
    """Milliseconds from a revoking change to the first refused read, for each way a customer
    revokes: removing the identity's access policy, disabling the key, and disabling the
    resource's managed identity."""
    vault, tenant, identity = await prepared.unwrapping_identity()

    async def enabled(value: bool) -> None:
        await prepared.vaults.update_key(prepared.key_id, kvres.KeyVersion(enabled=value), ["enabled"])

    ways: dict[str, tuple[Callable[[], Awaitable[Any]], Callable[[], Awaitable[Any]]]] = {
        "policy_removed": (
            lambda: prepared.vaults.remove_access_policy(vault, identity),
            lambda: prepared.vaults.set_access_policy(vault, tenant, identity, IDENTITY_GRANT),
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
        results[way] = {"trials": trials, **scale.percentiles(samples)}
    await _read_until(prepared, refused=False)
    return results


async def _read_until(prepared: Any, *, refused: bool) -> None:
    """Read the CMK application until it is refused (or, with refused=False, until it is not)."""
    await replicas.until(lambda: prepared.speech.get_application(prepared.app_cmk), refused=refused)


async def revocation_under_load(prepared: Any, concurrency: int, trials: int) -> dict[str, Any]:
    """The access policy removed while `concurrency` readers read back to back: milliseconds to
    the first refused read, and reads that began after that refusal and still succeeded
    (revocation must be final, not flapping: 0)."""
    vault, tenant, identity = await prepared.unwrapping_identity()
    samples, flaps = [], 0
    for _ in range(trials):
        await _read_until(prepared, refused=False)
        reads: list[tuple[float, float, bool]] = []  # (began, ended, refused)
        stop = asyncio.Event()

        async def reader(reads: list[tuple[float, float, bool]], stop: asyncio.Event) -> None:
            while not stop.is_set():
                began = time.perf_counter()
                try:
                    await prepared.speech.get_application(prepared.app_cmk)
                    refused = False
                except ServiceError:
                    refused = True
                reads.append((began, time.perf_counter(), refused))

        readers = [asyncio.create_task(reader(reads, stop)) for _ in range(concurrency)]
        await asyncio.sleep(0.2)
        revoked = time.perf_counter()
        await prepared.vaults.remove_access_policy(vault, identity)
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*readers)
        first = min((ended for began, ended, refused in reads if refused and began >= revoked), default=None)
        if first is None:
            raise RuntimeError("no read was refused within half a second of removing the access policy")
        samples.append((first - revoked) * 1000)
        flaps += sum(1 for began, _, refused in reads if began > first and not refused)
        await prepared.vaults.set_access_policy(vault, tenant, identity, IDENTITY_GRANT)
    await _read_until(prepared, refused=False)
    return {"trials": trials, "readers": concurrency, **scale.percentiles(samples),
            "reads_succeeding_after_first_refusal": flaps}  # fmt: skip


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
    ours, crypto, plan = results["ours"], results["crypto_ceilings"], results["plan"]
    lines = [
        "# Benchmarks", "",
        f"Run on {results['date']} on {results['machine']}; `python3 dev.py bench` (numbers below are written by it).",
        "", "## Targets", "", "| measure | value | target | result |", "| --- | --- | --- | --- |",
    ]  # fmt: skip
    lines += [f"| {r['name']} | {r['value']} | {r['target']} | {'pass' if r['ok'] else 'FAIL'} |"
              for r in results["targets"]]  # fmt: skip
    lines += [
        "", f"## Paths (closed loop, {plan['concurrency']} in flight, {plan['seconds']:g} s each)",
        "", "Cores busy while each path ran (1.0 = one core all the time): the trio's event loop (its main "
        "thread, where each call's Python runs), its other threads (RSA off the loop, SQLite, gRPC's C core), "
        "the load generator, and the share of the machine left idle.", "",
        "| path | per second | p50 ms | p99 ms | p99.9 ms | errors | trio loop | trio other | load gen | idle |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| ceiling A: bare echo | {results['echo_per_s']:.0f} | | | | | | | | |",
        f"| ceiling B: RSA-2048 OAEP-SHA256 decrypt, one core | {crypto['rsa2048_oaep_decrypt_per_s']:.0f} "
        "| | | | | | | | |",
        f"| ceiling B: AES-256-GCM decrypt of 1 KiB | {crypto['aes256gcm_1kib_decrypt_per_s']:.0f} | | | | | | | | |",
        f"| ceiling B: RS256 token verify | {crypto['rs256_verify_per_s']:.0f} | | | | | | | | |",
    ]  # fmt: skip
    for name in ("read", "read-mm", "unwrap", "token", "write"):
        r = ours[name]
        lat = r["latency_ms"]
        cpu = r["cpu"]
        lines.append(f"| {name} | {r['throughput_per_s']:.0f} | {lat['p50']:.1f} | {lat['p99']:.1f} | "
                     f"{lat['p99.9']:.1f} | {sum(r['errors'].values())} | {cpu['server_loop_cores']} | "
                     f"{cpu['server_other_threads_cores']} | {cpu['load_generator_cores']} | "
                     f"{cpu['machine_idle_pct']} % |")  # fmt: skip
    lines += ["", "## Revocation (from the change to the first refused read)", "",
              "| way | trials | p50 ms | p99 ms |", "| --- | --- | --- | --- |"]  # fmt: skip
    for way, r in ours["revocation"].items():
        readers = f" ({r['readers']} readers)" if "readers" in r else ""
        lines.append(f"| {way.replace('_', ' ')}{readers} | {r['trials']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} |")
    memory = ours["memory_under_mixed_load"]
    lines += [
        "", "## Memory under a long mixed run", "",
        f"{memory['requests']} requests ({memory['errors']} errors) over {memory['seconds']:g} s; the trio's RSS "
        f"{memory['rss_first_mib']} MiB at the start, {memory['rss_settled_mib']} MiB after the first fifth, "
        f"{memory['rss_end_mib']} MiB at the end ({memory['growth_after_settling_pct']:+.1f} % after settling).",
        "", render_scale(ours["scale"]), "",
        replicas.render(results["postgres"], ours, crypto["rsa2048_oaep_decrypt_per_s"]), "",
        doors.render(results["doors"], plan["concurrency"], plan["seconds"]), "",
        "Raw figures: `bench/results.json`.", "",
    ]  # fmt: skip
    learned = ROOT / "bench" / "LEARNED.md"
    if learned.exists():
        lines += [learned.read_text()]
    return "\n".join(lines)


def render_scale(s: dict[str, Any]) -> str:
    first, again = s["first_run"], s["restart"]

    def pages(run: dict[str, Any], kind: str) -> str:
        p = run[kind]
        return (f"{p['pages']} pages of {p['page_size']}: p50 {p['p50_ms']} ms, p99 {p['p99_ms']} ms, "
                f"max {p['max_ms']} ms")  # fmt: skip

    databases = ", ".join(f"{k} {v} MiB" for k, v in first["databases_mib"].items())
    return "\n".join([
        "## Scale", "",
        f"{s['resources']} resources ({s['customer_managed_resources']} with the customer-managed key) with "
        f"{s['applications_per_resource']} applications each, made through the API at {s['resources_per_s']} "
        f"resources/s and {s['applications_per_s']} applications/s.", "",
        "| measure | after filling | after a restart |", "| --- | --- | --- |",
        f"| list resources ({first['resources_listed']}) | {pages(first, 'resource_pages')} | "
        f"{pages(again, 'resource_pages')} |",
        f"| list applications ({first['applications_listed']}, of sampled resources) | "
        f"{pages(first, 'application_pages')} | {pages(again, 'application_pages')} |",
        f"| trio RSS | {first['rss_mib']} MiB | {again['rss_started_mib']} MiB started, "
        f"{again['rss_after_listing_mib']} MiB after listing |",
        f"| databases | {databases} | |",
        f"| start-up | | listening in {again['listening_s']} s, first read answered in {again['first_read_s']} s |",
    ])  # fmt: skip


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="seconds, not minutes (CI)")
    parser.add_argument("--soak-seconds", type=float, help="length of the mixed run whose memory is sampled")
    parser.add_argument("--scale-resources", type=int, help="resources in the scale step")
    parser.add_argument("--scale-applications", type=int, help="applications per resource in the scale step")
    args = parser.parse_args()
    plan = SMOKE if args.smoke else Plan()
    overrides = {"soak_seconds": args.soak_seconds, "scale_resources": args.scale_resources,
                 "scale_applications": args.scale_applications}  # fmt: skip
    plan = replace(plan, **{k: v for k, v in overrides.items() if v is not None})
    crypto = crypto_ceilings(plan.crypto_seconds)
    echo = await echo_ceiling(plan.seconds, plan.concurrency)
    with tempfile.TemporaryDirectory() as tmp:
        process, banner = start_trio(Path(tmp))
        try:
            measured = await ours(
                banner["services"], read_operator(Path(tmp)), read_speech_platform(Path(tmp)), process.pid, plan
            )
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=20)
    measured["scale"] = await scale_step(plan)
    rsa_per_s = crypto["rsa2048_oaep_decrypt_per_s"]
    postgres = await replicas.measure(plan.seconds, plan.concurrency, plan.trials, plan.cold_versions,
                                      plan.driver_operations, rsa_per_s)  # fmt: skip
    azure_doors = await doors.measure(plan.seconds, plan.concurrency, plan.trials)
    read, read_mm, unwrap = (measured[n]["throughput_per_s"] for n in ("read", "read-mm", "unwrap"))
    memory = measured["memory_under_mixed_load"]
    flaps = measured["revocation"]["policy_removed_under_load"]["reads_succeeding_after_first_refusal"]
    targets = [
        {"name": "read / echo ceiling", "value": round(read / echo, 3), "target": ">= 0.5", "ok": read / echo >= 0.5},
        {"name": "read / read-mm", "value": round(read / read_mm, 3), "target": ">= 0.9", "ok": read / read_mm >= 0.9},
        {"name": "unwrap / RSA decrypt ceiling", "value": round(unwrap / crypto["rsa2048_oaep_decrypt_per_s"], 3),
         "target": ">= 0.5", "ok": unwrap / crypto["rsa2048_oaep_decrypt_per_s"] >= 0.5},
        {"name": "unwrap per second", "value": unwrap, "target": "> 400", "ok": unwrap > 400},
        *({"name": f"revocation p99, {way.replace('_', ' ')} (ms)", "value": round(r["p99_ms"], 1),
           "target": "< 1000", "ok": r["p99_ms"] < 1000} for way, r in measured["revocation"].items()),
        {"name": "reads succeeding after the first refusal, under load", "value": flaps, "target": "0",
         "ok": flaps == 0},
        {"name": "failed reads during rotation", "value": measured["rotation_under_load"]["failed_reads"],
         "target": "0", "ok": measured["rotation_under_load"]["failed_reads"] == 0},
        {"name": f"RSS growth over a {plan.soak_seconds:g} s mixed run, after settling (%)",
         "value": memory["growth_after_settling_pct"], "target": "< 10",
         "ok": memory["growth_after_settling_pct"] < 10},
        *replicas.targets(postgres, measured, rsa_per_s),
        *doors.targets(azure_doors),
    ]  # fmt: skip
    results = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "smoke": args.smoke, "plan": plan.__dict__, "crypto_ceilings": crypto, "echo_per_s": echo,
        "ours": measured, "postgres": postgres, "doors": azure_doors, "targets": targets,
    }  # fmt: skip
    for row in targets:
        print(f"{'pass' if row['ok'] else 'FAIL':4}  {row['name']}: {row['value']} (target {row['target']})")
    print(render_scale(measured["scale"]))
    if not args.smoke:
        (ROOT / "bench" / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        (ROOT / "BENCHMARKS.md").write_text(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
