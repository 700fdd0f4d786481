"""The fault-injection suite: the services as separate processes under a workload with a
ledger of acknowledged operations, speech and the key vault killed with SIGKILL at random
moments and restarted, identity and the vault away for longer than the staleness bound. Then:
nothing acknowledged lost, nothing left unreadable or stuck, the audit chain verifies, every
acknowledged rotation audited, and revocation still fast after the restarts.

    python3 dev.py faults            the full run (20 kills per service), writes RELIABILITY.md
    python3 dev.py faults --bounded  a few kills, as .ci/run runs it

Its own marker (`faults`), outside the everyday suite; CMK_FAULT_KILLS sets the kills per
service and CMK_FAULT_REPORT a file to write the figures to. Timings are reported, and only
hang guards are asserted (the figures go to RELIABILITY.md, as the benchmarks do)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cmk_trio.client.channel import open_channel
from cmk_trio.client.identity import IdentityClient
from cmk_trio.client.keyvault import KeyVaultClient
from cmk_trio.client.speech import SpeechClient
from cmk_trio.proto.identity.v1 import resources_pb2 as idres
from cmk_trio.rpckit.clock import SystemClock
from cmk_trio.rpckit.errors import ServiceError
from tests.faults.harness import Ledger, Trio, start_trio, until
from tests.identity.helpers import make_tenant

pytestmark = [pytest.mark.faults, pytest.mark.timeout(1800)]

KILLS = int(os.environ.get("CMK_FAULT_KILLS", "3"))
REPORT = os.environ.get("CMK_FAULT_REPORT", "")
SEED = int(os.environ.get("CMK_FAULT_SEED", "20261129"))
STALENESS_S = 3
OUTAGE_S = STALENESS_S + 2  # longer than the staleness bound: the others must fail closed


@dataclass
class World:
    speech: SpeechClient
    vaults: KeyVaultClient
    operator_vaults: KeyVaultClient
    resources: list[str]
    key_uri: str
    identities: dict[str, str]
    tenant_id: str
    subscription_id: str
    channels: list[Any] = field(default_factory=list)

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()


async def prepare(trio: Trio) -> World:
    """A tenant whose owner has a purge-protected vault, a key, and two speech resources that
    read their data through it (customer-managed keys, following the key's newest version)."""
    clock = SystemClock()
    id_channel = open_channel(trio.identity.endpoint)
    operator = IdentityClient(id_channel, trio.operator, clock=clock)
    tenant = await make_tenant(operator, id_channel, clock, "Faults")
    await operator.create_role_assignment(
        tenant.admin.object_id, idres.OWNER, f"/subscriptions/{tenant.subscription_id}"
    )
    kv_channel, sp_channel = open_channel(trio.keyvault.endpoint), open_channel(trio.speech.endpoint)
    vaults = KeyVaultClient(kv_channel, tenant.admin_client.token_for)
    speech = SpeechClient(sp_channel, tenant.admin_client.token_for)
    await speech.request_approval(tenant.subscription_id, "fault run")
    await vaults.create_vault("faults-kv", tenant.subscription_id, "rg", "westeurope", purge_protection=True)
    key = await vaults.create_key("faults-kv", "cmk")
    versionless = key.key_id.rsplit("/", 1)[0]
    resources = []
    for name in ("speech-a", "speech-b"):
        made = await speech.create_resource(tenant.subscription_id, "rg", name, "westeurope")
        await speech.set_encryption(
            made.name, key_uri=versionless, key_subscription_id=tenant.subscription_id, follow_latest_version=True
        )
        resources.append(made.name)
    identities = {r: (await speech.get_resource(r)).identity.principal_id for r in resources}
    return World(
        speech, vaults, KeyVaultClient(kv_channel, operator.token_for), resources, versionless, identities,
        tenant.tenant_id, tenant.subscription_id, [id_channel, kv_channel, sp_channel],
    )  # fmt: skip


def ambiguous(exc: ServiceError) -> bool:
    """A failure after which the change may or may not have been made (the answer was lost)."""
    return type(exc).__name__ in {"Unavailable", "DeadlineExceeded", "Internal", "Unknown", "Cancelled"}


async def workload(world: World, ledger: Ledger, rng: random.Random, stop: asyncio.Event) -> None:
    """Creates and updates applications and rotates the key, recording what was acknowledged.
    An answer lost to a fault leaves the change in doubt: both outcomes are then acceptable."""
    counter = 0
    while not stop.is_set():
        counter += 1
        ledger.operations += 1
        resource = world.resources[counter % len(world.resources)]
        choice = rng.random()
        try:
            if choice < 0.5 or not ledger.configs:
                config = json.dumps({"n": counter, "secret": f"s-{counter}"})
                try:
                    app = await world.speech.create_application(resource, f"app{counter}", config)
                except ServiceError as exc:
                    if ambiguous(exc):
                        ledger.in_doubt_creates.add(f"app{counter}")
                    raise
                ledger.configs[app.name] = {config}
            elif choice < 0.9:
                name = rng.choice(sorted(ledger.configs))
                current = await world.speech.get_application(name)
                config = json.dumps({"n": counter, "secret": f"u-{counter}"})
                try:
                    await world.speech.update_application(name, current.etag, current.display_name, config)
                except ServiceError as exc:
                    if ambiguous(exc):
                        ledger.configs[name].add(config)
                    raise
                ledger.configs[name] = {config}
            else:
                rotated = await world.vaults.rotate_key(world.key_uri)
                ledger.rotations.append(rotated.version)
        except ServiceError as exc:
            ledger.failed("workload", exc)
            await asyncio.sleep(0.05)
        except Exception as exc:
            ledger.failed("workload", exc)
            await asyncio.sleep(0.05)


async def readable(world: World, name: str) -> str | None:
    """The application's configuration, or None if the read is refused."""
    try:
        return (await world.speech.get_application(name)).configuration_json
    except ServiceError:
        return None


async def test_kills_and_outages_lose_nothing_acknowledged(tmp_path: Path):
    rng = random.Random(SEED)  # noqa: S311 (the moments of the faults, repeatable by seed; not a secret)
    trio = await start_trio(tmp_path, staleness_s=STALENESS_S)
    figures: dict[str, Any] = {"kills_per_service": KILLS, "seed": SEED}
    try:
        world = await prepare(trio)
        ledger = Ledger()
        stop = asyncio.Event()
        work = asyncio.create_task(workload(world, ledger, rng, stop))
        ready_after_kill: dict[str, list[float]] = {"keyvault": [], "speech": []}
        for i in range(2 * KILLS):
            victim = ("speech", "keyvault")[i % 2]
            await asyncio.sleep(rng.uniform(0.1, 1.2))  # a random moment of the workload
            service = trio.services[victim]
            service.kill9()
            service.start()
            ready_after_kill[victim].append(round(await service.wait_ready(), 3))
        await asyncio.sleep(1)
        stop.set()
        await work
        figures["ready_after_kill"] = ready_after_kill
        figures["operations"] = ledger.operations
        figures["failed_operations"] = ledger.failures

        # An outage of identity longer than the staleness bound: the vault fails closed (not
        # ready), then serves again once identity is back.
        trio.identity.stop()
        await until(lambda: not_ready(trio.keyvault), "the vault failing closed with identity away")
        trio.identity.start()
        await trio.identity.wait_ready()
        back = time.monotonic()  # identity is back (serving): from here the vault must recover
        await trio.keyvault.wait_ready()
        figures["vault_serving_after_identity_returned_s"] = round(time.monotonic() - back, 3)
        await trio.speech.wait_ready()

        # An outage of the vault: customer-managed reads fail with a cause, then work again.
        app = next(iter(sorted(ledger.configs)))
        trio.keyvault.stop()
        await asyncio.sleep(OUTAGE_S)
        await until(lambda: refused_now(world, app), "customer-managed reads refused with the vault away")
        trio.keyvault.start()
        await trio.keyvault.wait_ready()
        back = time.monotonic()  # the vault is back (serving): from here speech must read again
        await until(lambda: readable_now(world, app), "reads working once the vault is back")
        figures["speech_reading_after_vault_returned_s"] = round(time.monotonic() - back, 3)

        # Nothing acknowledged lost; nothing unreadable or stuck.
        lost = [name for name, accepted in ledger.configs.items() if await readable(world, name) not in accepted]
        stuck = []
        for resource in world.resources:
            # Not stuck: customer-managed keys can be set again, and the resource is healthy.
            try:
                await world.speech.set_encryption(
                    resource, key_uri=world.key_uri, key_subscription_id=world.subscription_id,
                    follow_latest_version=True,
                )  # fmt: skip
            except ServiceError as exc:
                stuck.append(f"{resource}: {exc.reason.value}")
            status = (await world.speech.get_resource(resource)).encryption
            if status.inaccessible_reason:
                stuck.append(f"{resource}: {status.inaccessible_reason}")
        # The audit chain verifies, and every acknowledged rotation is in it.
        verdict = await world.operator_vaults.verify_audit()
        audited = await audited_versions(world)
        unaudited = [v for v in ledger.rotations if v not in audited]
        # Revocation after all those restarts: removing the identity's access stops reads.
        resource = world.resources[0]
        reader = next(n for n in sorted(ledger.configs) if n.lower().startswith(resource.lower() + "/"))
        await world.vaults.remove_access_policy("faults-kv", world.identities[resource])
        revoked_at = time.monotonic()  # acknowledged: from here no read may succeed for long
        await until(lambda: refused_now(world, reader), "reads refused after the access policy was removed")
        figures["revocation_after_restarts_s"] = round(time.monotonic() - revoked_at, 3)
        figures.update(
            acknowledged_applications=len(ledger.configs), acknowledged_rotations=len(ledger.rotations),
            lost=len(lost), stuck=len(stuck), audit_records=verdict.records, audit_ok=verdict.ok,
            unaudited_rotations=len(unaudited),
        )  # fmt: skip
        if REPORT:
            write_report(Path(REPORT), figures)
        assert lost == [], lost
        assert stuck == [], stuck
        assert verdict.ok, verdict.problem
        assert unaudited == [], unaudited
        await world.close()
    finally:
        trio.stop()


async def not_ready(service: Any) -> bool:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    channel = open_channel(service.endpoint)
    try:
        stub: Any = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
        return bool(reply.status == health_pb2.HealthCheckResponse.NOT_SERVING)
    except Exception:
        return True
    finally:
        await channel.close()


async def refused_now(world: World, name: str) -> bool:
    return await readable(world, name) is None


async def readable_now(world: World, name: str) -> bool:
    return await readable(world, name) is not None


async def audited_versions(world: World) -> set[str]:
    versions: set[str] = set()
    token = ""
    while True:
        page = await world.operator_vaults.list_audit("faults-kv", page_token=token, page_size=1000)
        versions |= {r.key_version for r in page.records if r.operation == "RotateKey" and r.result == "allowed"}
        token = page.next_page_token
        if not token:
            return versions


def write_report(path: Path, figures: dict[str, Any]) -> None:
    def summary(values: list[float]) -> str:
        if not values:
            return "-"
        return f"median {statistics.median(values):.2f} s, max {max(values):.2f} s ({len(values)} restarts)"

    kills = figures["ready_after_kill"]
    lines = [
        "# Reliability",
        "",
        f"Written by `python3 dev.py faults` on {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} "
        f"(seed {figures['seed']}); the figures are that run's, measured on this machine.",
        "",
        "The services ran as three processes. Under a workload of application writes and key rotations "
        "(a ledger keeping what was acknowledged), speech and the key vault were killed with SIGKILL "
        f"{figures['kills_per_service']} times each at random moments and restarted on their data directory; "
        f"then identity and the vault were each away for longer than the staleness bound ({STALENESS_S} s).",
        "",
        "| measure | result |",
        "| --- | --- |",
        f"| operations attempted | {figures['operations']} |",
        f"| acknowledged applications / rotations | {figures['acknowledged_applications']} / "
        f"{figures['acknowledged_rotations']} |",
        f"| acknowledged writes lost | {figures['lost']} |",
        f"| resources left unreadable or stuck | {figures['stuck']} |",
        f"| audit chain | {'verifies' if figures['audit_ok'] else 'BROKEN'} ({figures['audit_records']} records) |",
        f"| acknowledged rotations not audited | {figures['unaudited_rotations']} |",
        f"| key vault ready after a kill | {summary(kills['keyvault'])} |",
        f"| speech ready after a kill | {summary(kills['speech'])} |",
        f"| key vault ready again after identity was back (ready) | "
        f"{figures['vault_serving_after_identity_returned_s']:.2f} s |",
        f"| speech reading again after the vault was back (ready) | "
        f"{figures['speech_reading_after_vault_returned_s']:.2f} s |",
        f"| revocation after the restarts (policy removal acknowledged to reads refused) | "
        f"{figures['revocation_after_restarts_s']:.2f} s |",
        "",
        "Calls that failed during the faults (expected: a killed service answers nothing):",
        "",
        *[f"- {k}: {v}" for k, v in sorted(figures["failed_operations"].items())],
        "",
    ]
    path.write_text("\n".join(lines))
