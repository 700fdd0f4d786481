"""The composition root of the key vault service: builds every part and starts serving.
It only wires; the rules live in the domain modules."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc

from cmk_trio.keyvault.api import AuditApi, AuditTrail, Converter, EventApi, KeyApi, VaultApi
from cmk_trio.keyvault.audit import AuditLog
from cmk_trio.keyvault.callers import require_operator
from cmk_trio.keyvault.config import KeyVaultConfig
from cmk_trio.keyvault.crypto import CannotDecrypt, RandomBytes, Sealer, load_or_create_master_key
from cmk_trio.keyvault.errors import DOMAIN
from cmk_trio.keyvault.keys import Keys
from cmk_trio.keyvault.rotation import Rotation
from cmk_trio.keyvault.storage import KeyVaultStore, open_store
from cmk_trio.keyvault.vaults import Vaults
from cmk_trio.platform.directory_link import DirectoryLink, link_to_directory
from cmk_trio.proto.common.v1 import dev_service_pb2 as dev_pb
from cmk_trio.proto.common.v1 import dev_service_pb2_grpc as dev_grpc
from cmk_trio.proto.keyvault.v1 import keyvault_service_pb2 as pb
from cmk_trio.proto.keyvault.v1 import keyvault_service_pb2_grpc as pb_grpc
from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.admission import AdmissionInterceptor, CallLimits
from cmk_trio.rpckit.auth import AuthInterceptor
from cmk_trio.rpckit.clock import Clock, ShiftableClock, SystemClock
from cmk_trio.rpckit.datadir import DataDirClaim, StartupError, claim_data_dir
from cmk_trio.rpckit.devclock import DevApi
from cmk_trio.rpckit.observe import Metrics
from cmk_trio.rpckit.server import RunningServer, dialable, start_server
from cmk_trio.rpckit.status import ErrorInterceptor
from cmk_trio.rpckit.tracing import Tracing
from cmk_trio.rpckit.types import Context

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    *(s.full_name for s in pb.DESCRIPTOR.services_by_name.values()),
    dev_pb.DESCRIPTOR.services_by_name["DevService"].full_name,
)
AUDIENCES = {
    "cmk.keyvault.v1.VaultService": audiences.MANAGEMENT,
    "cmk.keyvault.v1.KeyService": audiences.VAULT,
    "cmk.keyvault.v1.AuditService": audiences.MANAGEMENT,
    "cmk.keyvault.v1.EventService": audiences.MANAGEMENT,
    "cmk.common.v1.DevService": audiences.MANAGEMENT,
}


@dataclass
class KeyVaultServer:
    """A running key vault service and its parts (tests reach into them)."""

    config: KeyVaultConfig
    running: RunningServer
    store: KeyVaultStore
    vaults: Vaults
    keys: Keys
    rotation: Rotation
    audit: AuditLog
    trail: AuditTrail
    directory: DirectoryLink
    metrics: Metrics
    metrics_port: int | None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    claim: DataDirClaim | None = None
    """The data directory, held against a second key vault process."""
    tracing: Tracing = field(default_factory=Tracing)

    @property
    def port(self) -> int:
        return self.running.port

    @property
    def endpoint(self) -> str:
        return dialable(self.config.host, self.running.port)

    async def purge_due(self) -> None:
        """One pass of the purger: deleted keys and vaults whose purge date has come."""
        await self.keys.purge_due(self.trail)
        await self.vaults.purge_due(self.trail)

    async def housekeeping(self) -> None:
        """One pass of the service's own work on its clock: purge what is due, apply
        rotation policies, and sign an audit checkpoint if records were added. Of the
        replicas on one database, only the one holding the lease does it (each writes its
        own aggregated refusals)."""
        await self.trail.flush_refusals()
        if not self.store.leadership().held:
            return
        await self.purge_due()
        await self.rotation.run_due()
        latest = await self.audit.latest_checkpoint()
        count = await self.audit.count()
        if latest is None or latest.count != count:
            await self.audit.checkpoint()

    async def stop(self, grace: float = 2.0) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.running.stop(grace)
        await self.trail.flush_refusals()
        await self.directory.stop()
        await self.metrics.close()
        self.tracing.shutdown()
        await self.store.close()
        if self.claim is not None:
            self.claim.release()


async def _housekeeping(server: KeyVaultServer) -> None:
    while True:
        await asyncio.sleep(server.config.purge_interval.total_seconds())
        try:
            await server.housekeeping()
        except Exception:
            log.exception("housekeeping pass failed; retrying at the next interval")


async def build_server(
    config: KeyVaultConfig,
    *,
    clock: Clock | None = None,
    random: RandomBytes = os.urandom,
    tracer_provider: TracerProvider | None = None,
) -> KeyVaultServer:
    """Open storage and the master key, connect to identity, and start serving (traced
    into `tracer_provider` when given, else as OTEL_* configure; see rpckit.tracing)."""
    tracing = Tracing.from_env("keyvault", os.environ, tracer_provider)
    shiftable = ShiftableClock(clock or SystemClock()) if config.dev_time_control else None
    clock = shiftable or clock or SystemClock()
    # What start-up opens is closed again if a later step fails; once serving, the server owns it.
    async with contextlib.AsyncExitStack() as undo:
        claim = claim_data_dir(
            config.data_dir,
            "keyvault",
            database=None if config.database_url else config.database_path,
            key_files=[config.master_key_path],
        )
        undo.callback(claim.release)
        store = await open_store(config.database_location, must_exist=config.master_key_path.exists())
        undo.push_async_callback(store.close)
        metrics = Metrics.create("keyvault")
        metrics.watch_store(store)
        directory = link_to_directory(config, clock=clock, metrics=metrics, interceptors=tracing.client_interceptors())
        undo.push_async_callback(directory.stop)
        # Replicas that start together on a new database take turns: the first makes the
        # master key and the audit checkpoint key, the others find them.
        async with store.exclusive("startup"):
            first_start = not await store.holds_keys()
            master = load_or_create_master_key(config.master_key_path, create=first_start, random=random)
            sealer = Sealer(master, random)
            try:
                audit = await AuditLog.open(store, clock, master.audit_mac_key, sealer)
            except CannotDecrypt:
                raise StartupError(
                    f"the master key {config.master_key_path} does not open the keys sealed in {store.description}; "
                    "restore the key file that belongs with this database"
                ) from None
        notifier = store.changes
        keys = Keys(store, clock, sealer, notifier, dns_suffix=config.vault_dns_suffix, random=random)
        vaults = Vaults(store, clock, directory.roles, notifier, on_purge=keys.forget_vault)
        trail = AuditTrail(audit, clock, store)
        trail.watch()
        rotation = Rotation(keys, trail)
        convert = Converter(keys)

        async def operator_only(context: Context) -> None:
            async with trail.call("AdvanceClock") as scope:
                require_operator(scope.authenticated, "move the clock")

        def register(server: grpc.aio.Server) -> None:
            pb_grpc.add_VaultServiceServicer_to_server(VaultApi(vaults, convert, trail), server)
            pb_grpc.add_KeyServiceServicer_to_server(KeyApi(keys, rotation, convert, trail), server)
            pb_grpc.add_AuditServiceServicer_to_server(AuditApi(audit, vaults, trail), server)
            pb_grpc.add_EventServiceServicer_to_server(
                EventApi(vaults, trail, notifier, heartbeat=config.event_heartbeat.total_seconds()), server
            )
            dev_grpc.add_DevServiceServicer_to_server(DevApi(shiftable, operator_only), server)

        running = await start_server(
            register=register,
            service_names=SERVICE_NAMES,
            interceptors=[
                ErrorInterceptor(DOMAIN),
                AuthInterceptor(directory.validator, AUDIENCES, (), on_refused=trail.refused),
                AdmissionInterceptor(CallLimits.from_env(os.environ)),
            ],
            host=config.host,
            port=config.port,
            tls=config.tls,
            metrics=metrics,
            tracing=tracing,
        )
        metrics_port = (
            await metrics.serve(config.metrics_host, config.metrics_port) if config.metrics_port is not None else None
        )
        undo.pop_all()
    await directory.serve_when_current(running)
    server = KeyVaultServer(
        config,
        running,
        store,
        vaults,
        keys,
        rotation,
        audit,
        trail,
        directory,
        metrics,
        metrics_port,
        claim=claim,
        tracing=tracing,
    )
    server.tasks.append(asyncio.create_task(_housekeeping(server), name="keyvault-housekeeping"))
    log.info("key vault service started", extra={"port": running.port})
    return server
