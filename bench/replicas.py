"""The benchmark's PostgreSQL part: the two drivers on the unwrap path's statements; read,
unwrap and write with 1 and with 2 replicas of each service (CPU per operation, the trio's
and the database server's); a revocation made through one replica and refused by another; a
replica killed under load; the lease on background work taken over; and cold keys after a
restart. Each replica set runs in a database of its own on the server CMK_TEST_POSTGRES_URL
names (the tests' default: 127.0.0.1:5432), dropped afterwards."""

from __future__ import annotations

import asyncio
import functools
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg

from bench import proc, scale
from cmk_trio.cli.common import State, read_operator_file
from cmk_trio.client.identity import IdentityClient
from cmk_trio.client.keyvault import KeyVaultClient
from cmk_trio.keyvault.crypto import Padding, public_key_from_jwk, wrap_with_public
from cmk_trio.launcher.replicas import Replica, RunningReplicas, start_replicas
from cmk_trio.loadgen.runner import run_closed
from cmk_trio.loadgen.scenarios import Prepared, prepare, scenario
from cmk_trio.rpckit.channels import open_channel
from cmk_trio.rpckit.errors import ServiceError
from tests.postgres import server_url, with_database


@asynccontextmanager
async def database() -> AsyncIterator[str]:
    """A database of its own on the server, dropped afterwards; its URL."""
    name = f"cmk_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(server_url())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield with_database(server_url(), name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


# --- the drivers --------------------------------------------------------------------------


async def drivers(operations: int) -> dict[str, Any]:
    """CPU and wall time per operation of asyncpg and psycopg 3 on what an unwrap costs the
    database: its audit record (a transaction: the writer lock, the chain's head, one insert)
    and, with cold caches, a row read by key."""
    import psycopg
    from psycopg_pool import AsyncConnectionPool

    setup = [
        "CREATE TABLE audit (sequence BIGINT PRIMARY KEY, time TEXT, caller TEXT, operation TEXT, mac BYTEA)",
        "CREATE TABLE vaults (vault_name TEXT PRIMARY KEY, tenant_id TEXT, policy TEXT)",
        "INSERT INTO vaults VALUES ('kv1', 't', 'unwrapKey')",
    ]
    results: dict[str, Any] = {}
    async with database() as url:
        conn = await asyncpg.connect(url)
        for statement in setup:
            await conn.execute(statement)
        await conn.close()
        pool = await asyncpg.create_pool(url, min_size=2, max_size=4)

        async def apg_append() -> None:
            async with pool.acquire() as c, c.transaction():
                await c.execute("SELECT pg_advisory_xact_lock($1)", 42)
                head = await c.fetchval("SELECT COALESCE(MAX(sequence), 0) FROM audit")
                await c.execute("INSERT INTO audit VALUES ($1, $2, $3, $4, $5)", head + 1, "t", "c", "u", b"m" * 32)

        async def apg_read() -> None:
            await pool.fetchrow("SELECT * FROM vaults WHERE vault_name = $1", "kv1")

        results["asyncpg"] = {"audit append": await _per_op(apg_append, operations),
                              "read by key": await _per_op(apg_read, operations)}  # fmt: skip
        await pool.close()
        ppool = AsyncConnectionPool(url, min_size=2, max_size=4, open=False)
        await ppool.open()

        async def pg3_append() -> None:
            async with ppool.connection() as c, c.transaction():
                await c.execute("SELECT pg_advisory_xact_lock(%s)", (42,))
                cur = await c.execute("SELECT COALESCE(MAX(sequence), 0) FROM audit")
                head = (await cur.fetchone() or (0,))[0]
                await c.execute("INSERT INTO audit VALUES (%s, %s, %s, %s, %s)", (head + 1, "t", "c", "u", b"m" * 32))

        async def pg3_read() -> None:
            async with ppool.connection() as c:
                cur = await c.execute("SELECT * FROM vaults WHERE vault_name = %s", ("kv1",))
                await cur.fetchone()

        results["psycopg"] = {"audit append": await _per_op(pg3_append, operations),
                              "read by key": await _per_op(pg3_read, operations)}  # fmt: skip
        await ppool.close()
        del psycopg
    return results


async def _per_op(operation: Callable[[], Awaitable[None]], count: int) -> dict[str, float]:
    for _ in range(max(20, count // 10)):
        await operation()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(count):
        await operation()
    return {"cpu_us": round((time.process_time() - cpu) / count * 1e6, 1),
            "wall_us": round((time.perf_counter() - wall) / count * 1e6, 1)}  # fmt: skip


# --- CPU of process sets --------------------------------------------------------------------


def _postgres_pids() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            main, other = proc.thread_ticks(pid)
        except OSError:  # it ended meanwhile
            continue
        total += main + other
    return total


class TreeCpu:
    """CPU seconds spent by the trio's replicas and by the PostgreSQL server meanwhile."""

    def __init__(self, running: RunningReplicas) -> None:
        self._trio = [r.process.pid for group in running.replicas.values() for r in group]
        self._start = (_cpu_ticks(self._trio), _cpu_ticks(_postgres_pids()))

    def stop(self) -> tuple[float, float]:
        trio, database = _cpu_ticks(self._trio), _cpu_ticks(_postgres_pids())
        return (trio - self._start[0]) / proc.TICKS, (database - self._start[1]) / proc.TICKS


# --- replica sets -------------------------------------------------------------------------


@asynccontextmanager
async def replica_set(count: int) -> AsyncIterator[tuple[RunningReplicas, Prepared]]:
    """`count` replicas of each service on a new database, with the load scenarios prepared."""
    import tempfile

    async with database() as url:
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp)
            running = await start_replicas(data, 0, replicas=count, database_url=url)
            try:
                operator = read_operator_file(data / "operator.json")
                platform = read_operator_file(data / "speech-credentials.json")
                prepared = await prepare(running.endpoints, operator, State("json", None, None).dial, platform)
                try:
                    yield running, prepared
                finally:
                    await prepared.close()
            finally:
                await running.stop()


async def paths(running: RunningReplicas, prepared: Prepared, seconds: float, concurrency: int,
                rsa_decrypt_s: float) -> dict[str, Any]:  # fmt: skip
    """Read, unwrap and write: throughput, latency, and CPU per operation."""
    results = {}
    for name in ("read", "unwrap", "write"):
        cpu = TreeCpu(running)
        run = await run_closed(scenario(name, prepared), scenario=name, concurrency=concurrency, duration=seconds,
                               requests=None, warmup=1)  # fmt: skip
        trio_s, database_s = cpu.stop()
        requests = max(run.requests, 1)
        results[name] = run.summary() | {
            "trio_cpu_ms_per_op": round(trio_s / requests * 1000, 3),
            "postgres_cpu_ms_per_op": round(database_s / requests * 1000, 3),
        }
        if name == "unwrap":
            results[name]["trio_cpu_per_rsa_decrypt"] = round(trio_s / requests / rsa_decrypt_s, 2)
    return results


def _split(endpoints: str) -> list[str]:
    return endpoints.split(",")


async def revocation_across(running: RunningReplicas, prepared: Prepared, trials: int) -> dict[str, Any]:
    """Milliseconds from a policy removal answered by key vault replica 0 to the first unwrap
    refused by replica 1 (which had the policy cached)."""
    first, second = (open_channel(e) for e in _split(running.endpoints["keyvault"])[:2])
    try:
        owner = IdentityClient(prepared.identity.channel, prepared.owner)
        admin = KeyVaultClient(first, owner.token_for)
        worker = IdentityClient(prepared.identity.channel, prepared.app_credentials)
        reader = KeyVaultClient(second, worker.token_for)
        tenant, object_id = prepared.app_credentials.tenant_id, prepared.principals[0]  # the unwrapping worker
        samples = []
        for _ in range(trials):
            await until(lambda: reader.unwrap(prepared.key_id, prepared.wrapped), refused=False)
            await admin.remove_access_policy(prepared.vault_name, object_id)
            started = time.perf_counter()
            await until(lambda: reader.unwrap(prepared.key_id, prepared.wrapped), refused=True)
            samples.append((time.perf_counter() - started) * 1000)
            await admin.set_access_policy(prepared.vault_name, tenant, object_id, ["unwrapKey"])
        await until(lambda: reader.unwrap(prepared.key_id, prepared.wrapped), refused=False)
        return {"trials": trials, **scale.percentiles(samples)}
    finally:
        await first.close()
        await second.close()


async def until(call: Callable[[], Awaitable[Any]], *, refused: bool) -> None:
    """Make the call until it is refused (or, with refused=False, until it is not); a
    benchmark that waits more than 30 s for either is broken, and says so."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            await call()
        except ServiceError:
            if refused:
                return
        else:
            if not refused:
                return
    raise RuntimeError(f"not {'refused' if refused else 'allowed'} within 30 s")


async def killed_under_load(running: RunningReplicas, prepared: Prepared, seconds: float,
                            concurrency: int) -> dict[str, Any]:  # fmt: skip
    """Closed-loop reads over both speech replicas; one is killed (SIGKILL) half way. Reads
    that failed (the client retries on the other), and how long the reads in flight at the
    kill took: the time until the survivor carried the whole load."""
    read = scenario("read", prepared)
    spans: list[tuple[float, float]] = []
    failed: Counter[str] = Counter()
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < stop:
            began = time.perf_counter()
            try:
                await read()
            except ServiceError as refused:
                failed[f"{type(refused).__name__} {refused.reason.value}"] += 1
            except Exception as other:  # (counted by kind: the bench reports what failed, not only how many)
                failed[type(other).__name__] += 1
            spans.append((began, time.perf_counter()))

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    await asyncio.sleep(seconds / 2)
    victim = running.replicas["speech"][-1]
    killed_at = time.perf_counter()
    victim.process.kill()
    await asyncio.gather(*workers)
    await victim.process.wait()
    in_flight = [end - began for began, end in spans if began <= killed_at <= end]
    before = [s for s in spans if s[1] < killed_at]
    after = [s for s in spans if s[0] > killed_at]
    return {
        "reads": len(spans),
        "failed_reads": sum(failed.values()),
        "failed_by": dict(failed),
        "in_flight_at_kill": len(in_flight),
        "takeover_ms": round(max(in_flight, default=0.0) * 1000, 1),
        "per_s_before": round(len(before) / max(killed_at - spans[0][0], 1e-9), 1) if spans else 0,
        "per_s_after": round(len(after) / max(stop - killed_at, 1e-9), 1),
    }


async def failover(running: RunningReplicas) -> dict[str, float]:
    """For each service: seconds from a SIGKILL of the replica holding the lease on background
    work until another holds it."""
    results = {}
    for service, group in running.replicas.items():
        holder = await _one_holder(group)
        holder.process.kill()
        killed = time.perf_counter()
        await holder.process.wait()
        await _one_holder([r for r in group if r is not holder])
        results[service] = round(time.perf_counter() - killed, 2)
    return results


async def _one_holder(group: list[Replica]) -> Replica:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        held = [r for r in group if await asyncio.to_thread(r.holds_lease)]
        if len(held) == 1:
            return held[0]
        await asyncio.sleep(0.05)
    raise RuntimeError("no single replica took the lease within 30 s")


# --- cold keys ------------------------------------------------------------------------------


async def cold_keys(versions: int, concurrency: int) -> dict[str, Any]:
    """`versions` key versions made, the key vault restarted, then the first unwrap of each,
    while another caller unwraps with a warm key: the cold unwraps' latency, and the warm
    caller's before and during the burst."""
    async with replica_set(1) as (running, prepared):
        jobs: list[Callable[[], Awaitable[Any]]] = [
            functools.partial(prepared.vaults.create_key, prepared.vault_name, f"cold-{n}") for n in range(versions)
        ]
        made = await scale._bounded(jobs)
        blobs = [(v.key_id, _wrap(v.public_jwk)) for v in made]
        restarted = await running.restart(running.replicas["keyvault"][0])
        channel = open_channel(restarted.endpoint)
        try:
            worker = IdentityClient(prepared.identity.channel, prepared.app_credentials)
            vault = KeyVaultClient(channel, worker.token_for)
            await vault.unwrap(prepared.key_id, prepared.wrapped)  # the warm key, loaded
            baseline = await _warm_latencies(vault, prepared, duration=2.0)
            cold: list[float] = []
            gate = asyncio.Semaphore(concurrency)

            async def first_use(key_id: str, blob: bytes) -> None:
                async with gate:
                    began = time.perf_counter()
                    await vault.unwrap(key_id, blob)
                    cold.append((time.perf_counter() - began) * 1000)

            burst = asyncio.gather(*(first_use(k, b) for k, b in blobs))
            during = await _warm_latencies(vault, prepared, until=burst)
        finally:
            await channel.close()
    return {"versions": versions, "cold_unwrap": scale.percentiles(cold),
            "warm_before": scale.percentiles(baseline), "warm_during": scale.percentiles(during)}  # fmt: skip


def _wrap(public_jwk: str) -> bytes:
    return wrap_with_public(public_key_from_jwk(json.loads(public_jwk)), Padding.RSA_OAEP_256, b"k" * 32)


async def _warm_latencies(vault: KeyVaultClient, prepared: Prepared, *, duration: float = 0.0,
                          until: Awaitable[Any] | None = None) -> list[float]:  # fmt: skip
    samples: list[float] = []
    done = asyncio.ensure_future(until) if until is not None else None
    stop = time.perf_counter() + duration
    while (done is not None and not done.done()) or (done is None and time.perf_counter() < stop):
        began = time.perf_counter()
        await vault.unwrap(prepared.key_id, prepared.wrapped)
        samples.append((time.perf_counter() - began) * 1000)
    if done is not None:
        await done
    return samples


# --- the whole part ---------------------------------------------------------------------------


async def measure(seconds: float, concurrency: int, trials: int, cold_versions: int, driver_operations: int,
                  rsa_decrypts_per_s: float) -> dict[str, Any]:  # fmt: skip
    """Everything above, in one run."""
    rsa_s = 1 / rsa_decrypts_per_s
    out: dict[str, Any] = {"drivers": await drivers(driver_operations)}
    for count in (1, 2):
        async with replica_set(count) as (running, prepared):
            section: dict[str, Any] = {"paths": await paths(running, prepared, seconds, concurrency, rsa_s)}
            if count == 2:
                section["revocation_across"] = await revocation_across(running, prepared, trials)
                section["killed_under_load"] = await killed_under_load(running, prepared, 2 * seconds, concurrency)
            out[f"replicas_{count}"] = section
    async with replica_set(2) as (running, _):
        out["failover_s"] = await failover(running)
    out["cold_keys"] = await cold_keys(cold_versions, concurrency)
    return out


def cpu_per_op_ms(result: dict[str, Any]) -> float:
    """The trio's CPU per operation of a path measured on the SQLite trio (one process)."""
    cpu = result["cpu"]
    cores = cpu["server_loop_cores"] + cpu["server_other_threads_cores"]
    return round(float(cores) * float(result["seconds"]) / max(int(result["requests"]), 1) * 1000, 3)


def render(pg: dict[str, Any], sqlite: dict[str, Any], rsa_decrypts_per_s: float) -> str:
    """The PostgreSQL part of BENCHMARKS.md."""
    lines = [
        "## Replicas on PostgreSQL", "",
        "Each service as 1 and as 2 processes (`cmk up --replicas N --database-url ...`) on one PostgreSQL 15 "
        "database on this machine, beside the SQLite trio (one process) above. CPU per operation: the trio's "
        "processes, and the PostgreSQL server's, from /proc over the run.", "",
        "| path | engine | replicas | per second | p50 ms | p99 ms | errors | trio CPU ms/op | PostgreSQL CPU ms/op |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]  # fmt: skip
    for name in ("read", "unwrap", "write"):
        s = sqlite[name]
        lines.append(f"| {name} | SQLite | 1 | {_row(s)} | {cpu_per_op_ms(s)} | |")
        for count in (1, 2):
            r = pg[f"replicas_{count}"]["paths"][name]
            lines.append(f"| {name} | PostgreSQL | {count} | {_row(r)} | {r['trio_cpu_ms_per_op']} "
                         f"| {r['postgres_cpu_ms_per_op']} |")  # fmt: skip
    rsa_ms = 1000 / rsa_decrypts_per_s
    unwrap_ratio = ", ".join(
        f"{count} on PostgreSQL {pg[f'replicas_{count}']['paths']['unwrap']['trio_cpu_per_rsa_decrypt']}"
        for count in (1, 2)
    )
    lines += [
        "", f"Unwrap's CPU in the trio per RSA-2048 decrypt ({rsa_ms:.2f} ms each here), by replicas: SQLite "
        f"{round(cpu_per_op_ms(sqlite['unwrap']) / rsa_ms, 2)}, {unwrap_ratio}.", "",
    ]  # fmt: skip
    across = pg["replicas_2"]["revocation_across"]
    killed = pg["replicas_2"]["killed_under_load"]
    cold = pg["cold_keys"]
    lines += [
        "| measure | value |", "| --- | --- |",
        f"| revocation across replicas (policy removal answered by replica 0 → first unwrap refused by replica 1), "
        f"{across['trials']} trials | p50 {across['p50_ms']} ms, p99 {across['p99_ms']} ms, "
        f"max {across['max_ms']} ms |",
        f"| a speech replica killed (SIGKILL) under closed-loop reads | {killed['failed_reads']} of {killed['reads']} "
        f"reads failed; the {killed['in_flight_at_kill']} in flight took up to {killed['takeover_ms']} ms; "
        f"{killed['per_s_before']}/s before, {killed['per_s_after']}/s after |",
        *(f"| lease on background work taken over after its holder was killed: {service} | {seconds} s |"
          for service, seconds in pg["failover_s"].items()),
        f"| cold keys: first unwrap of each of {cold['versions']} key versions after a restart | "
        f"p50 {cold['cold_unwrap']['p50_ms']} ms, p99 {cold['cold_unwrap']['p99_ms']} ms |",
        f"| a warm key's unwrap before / during that burst | p99 {cold['warm_before']['p99_ms']} ms / "
        f"{cold['warm_during']['p99_ms']} ms (max {cold['warm_during']['max_ms']} ms) |",
        "", "The drivers on the unwrap path's statements (what chose asyncpg):", "",
        "| driver | audit append, CPU µs | audit append, wall µs | read by key, CPU µs | read by key, wall µs |",
        "| --- | --- | --- | --- | --- |",
        *(f"| {driver} | {d['audit append']['cpu_us']} | {d['audit append']['wall_us']} | "
          f"{d['read by key']['cpu_us']} | {d['read by key']['wall_us']} |" for driver, d in pg["drivers"].items()),
    ]  # fmt: skip
    return "\n".join(lines)


def _row(r: dict[str, Any]) -> str:
    latency = r["latency_ms"]
    return (f"{r['throughput_per_s']:.0f} | {latency['p50']:.1f} | {latency['p99']:.1f} | "
            f"{sum(r['errors'].values())}")  # fmt: skip


def targets(pg: dict[str, Any], sqlite: dict[str, Any], rsa_decrypts_per_s: float) -> list[dict[str, Any]]:
    across = pg["replicas_2"]["revocation_across"]["p99_ms"]
    failed = pg["replicas_2"]["killed_under_load"]["failed_reads"]
    slowest = max(pg["failover_s"].values())
    ratio = round(cpu_per_op_ms(sqlite["unwrap"]) / (1000 / rsa_decrypts_per_s), 2)
    return [
        {"name": "revocation across replicas p99 (ms)", "value": across, "target": "< 50", "ok": across < 50},
        {"name": "reads failed with a replica killed under load", "value": failed, "target": "0", "ok": failed == 0},
        {"name": "lease taken over after its holder was killed, slowest service (s)", "value": slowest,
         "target": "<= 10", "ok": slowest <= 10},
        {"name": "unwrap CPU in the trio / RSA-2048 decrypt (SQLite)", "value": ratio, "target": "<= 2.5",
         "ok": ratio <= 2.5},
    ]  # fmt: skip
