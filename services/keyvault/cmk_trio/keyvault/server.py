"""The composition root of the key vault service: builds every part and starts serving.
It only wires; the rules live in the domain modules."""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc

from cmk_trio.keyvault.api import AuditApi, AuditTrail, Converter, EventApi, KeyApi, SecretApi, VaultApi
from cmk_trio.keyvault.audit import AuditLog
from cmk_trio.keyvault.callers import require_operator
from cmk_trio.keyvault.config import KeyVaultConfig
from cmk_trio.keyvault.crypto import CannotDecrypt, RandomBytes, Sealer, load_or_create_master_key
from cmk_trio.keyvault.errors import DOMAIN
from cmk_trio.keyvault.key_backup import KeyBackups
from cmk_trio.keyvault.keys import Keys
from cmk_trio.keyvault.rest_door import KeyVaultDoor
from cmk_trio.keyvault.rotation import Rotation
from cmk_trio.keyvault.storage import KeyVaultStore, open_store
from cmk_trio.keyvault.vault_secrets import Secrets
from cmk_trio.keyvault.vaults import Vaults
from cmk_trio.platform.directory_link import DirectoryLink, link_to_directory
from cmk_trio.proto.common.v1 import dev_service_pb2 as dev_pb
from cmk_trio.proto.common.v1 import dev_service_pb2_grpc as dev_grpc
from cmk_trio.proto.keyvault.v1 import keyvault_service_pb2 as pb
from cmk_trio.proto.keyvault.v1 import keyvault_service_pb2_grpc as pb_grpc
from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.admission import AdmissionInterceptor, CallLimits
from cmk_trio.rpckit.auth import AuthInterceptor
from cmk_trio.rpckit.bootstrap import Bootstrap, Process, Served
from cmk_trio.rpckit.clock import Clock
from cmk_trio.rpckit.datadir import StartupError
from cmk_trio.rpckit.devclock import DevApi
from cmk_trio.rpckit.http_listener import RunningHttp, serve_http
from cmk_trio.rpckit.status import ErrorInterceptor
from cmk_trio.rpckit.types import Context

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger(__name__)

AUDIENCES = {
    "cmk.keyvault.v1.VaultService": audiences.MANAGEMENT,
    "cmk.keyvault.v1.KeyService": audiences.VAULT,
    "cmk.keyvault.v1.SecretService": audiences.VAULT,
    "cmk.keyvault.v1.AuditService": audiences.MANAGEMENT,
    "cmk.keyvault.v1.EventService": audiences.MANAGEMENT,
    "cmk.common.v1.DevService": audiences.MANAGEMENT,
}


@dataclass
class KeyVaultServer(Served):
    """A running key vault service and its parts (tests reach into them)."""

    process: Process
    config: KeyVaultConfig
    store: KeyVaultStore
    vaults: Vaults
    keys: Keys
    secrets: Secrets
    rotation: Rotation
    audit: AuditLog
    trail: AuditTrail
    directory: DirectoryLink
    http: RunningHttp | None = None
    """Azure Key Vault's data plane over HTTPS (rest_door), when served."""
    limits: CallLimits | None = None
    """The calls served at once, by whom: one count for both doors."""

    @property
    def http_url(self) -> str | None:
        return self.http.base_url if self.http is not None else None

    async def purge_due(self) -> None:
        """One pass of the purger: deleted keys, secrets and vaults whose purge date has come."""
        await self.keys.purge_due(self.trail)
        await self.secrets.purge_due(self.trail)
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
    async with Bootstrap(
        "keyvault", config, key_files=[config.master_key_path], clock=clock, tracer_provider=tracer_provider
    ) as boot:
        store = boot.owns(await open_store(config.database_location, must_exist=config.master_key_path.exists()))
        boot.metrics.watch_store(store)
        directory = boot.owns(
            link_to_directory(
                config, clock=boot.clock, metrics=boot.metrics, interceptors=boot.tracing.client_interceptors()
            ),
            "stop",
        )
        # Replicas that start together on a new database take turns: the first makes the
        # master key and the audit checkpoint key, the others find them.
        async with store.exclusive("startup"):
            first_start = not await store.holds_keys()
            master = load_or_create_master_key(config.master_key_path, create=first_start, random=random)
            sealer = Sealer(master, random)
            try:
                audit = await AuditLog.open(store, boot.clock, master.audit_mac_key, sealer)
            except CannotDecrypt:
                raise StartupError(
                    f"the master key {config.master_key_path} does not open the keys sealed in {store.description}; "
                    "restore the key file that belongs with this database"
                ) from None
        notifier = store.changes
        keys = Keys(store, boot.clock, sealer, notifier, dns_suffix=config.vault_dns_suffix, random=random)
        vaults = Vaults(store, boot.clock, directory.roles, notifier, on_purge=keys.forget_vault)
        trail = AuditTrail(audit, boot.clock, store)
        trail.watch()
        boot.on_stop(trail.flush_refusals)  # (after the listener: the refusals of its last calls too)
        rotation = Rotation(keys, trail)
        convert = Converter(keys)
        key_api = KeyApi(keys, KeyBackups(keys, sealer), rotation, convert, trail)  # (both doors' keys)
        secrets = Secrets(store, boot.clock, sealer, keys.checks, notifier, dns_suffix=config.vault_dns_suffix,
                          random=random)  # fmt: skip
        secret_api = SecretApi(secrets, convert, trail)

        async def operator_only(context: Context) -> None:
            async with trail.call("AdvanceClock") as scope:
                require_operator(scope.authenticated, "move the clock")

        def register(server: grpc.aio.Server) -> None:
            pb_grpc.add_VaultServiceServicer_to_server(VaultApi(vaults, convert, trail), server)
            pb_grpc.add_KeyServiceServicer_to_server(key_api, server)
            pb_grpc.add_SecretServiceServicer_to_server(secret_api, server)
            pb_grpc.add_AuditServiceServicer_to_server(AuditApi(audit, vaults, trail), server)
            pb_grpc.add_EventServiceServicer_to_server(
                EventApi(vaults, trail, notifier, heartbeat=config.event_heartbeat.total_seconds()), server
            )
            dev_grpc.add_DevServiceServicer_to_server(DevApi(boot.process.shiftable, operator_only), server)

        limits = CallLimits.from_env(os.environ)  # (the gRPC and the HTTPS door's calls together)
        running = await boot.serve(register, [pb.DESCRIPTOR, dev_pb.DESCRIPTOR], [
            ErrorInterceptor(DOMAIN),
            AuthInterceptor(directory.validator, AUDIENCES, (), on_refused=trail.refused),
            AdmissionInterceptor(limits),
        ])  # fmt: skip
        http: RunningHttp | None = None
        if config.http_port is not None:
            door = KeyVaultDoor(
                api=key_api, secrets=secret_api, store=store, validator=directory.validator, trail=trail,
                limits=limits, metrics=boot.metrics, dns_suffix=config.vault_dns_suffix, authority=config.issuer_base,
            )  # fmt: skip
            http = await serve_http(door.app(), config.host, config.http_port, config.tls, listener="keyvault https",
                                    what="Azure Key Vault's data plane")  # fmt: skip
            boot.before_listener_stops(http.stop)
        await directory.serve_when_current(running)
    server = KeyVaultServer(
        boot.process, config, store, vaults, keys, secrets, rotation, audit, trail, directory, http, limits
    )
    boot.process.spawn(_housekeeping(server), "housekeeping")
    log.info("key vault service started", extra={"port": running.port})
    return server
