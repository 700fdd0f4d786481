"""The composition root of the speech service: builds every part and starts serving."""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc

from cmk_trio.client.channel import open_channel
from cmk_trio.client.keyvault import KeyVaultClient
from cmk_trio.platform.directory_link import DirectoryLink, link_to_directory
from cmk_trio.proto.common.v1 import dev_service_pb2 as dev_pb
from cmk_trio.proto.common.v1 import dev_service_pb2_grpc as dev_grpc
from cmk_trio.proto.speech.v1 import speech_service_pb2 as pb
from cmk_trio.proto.speech.v1 import speech_service_pb2_grpc as pb_grpc
from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.admission import AdmissionInterceptor, CallLimits
from cmk_trio.rpckit.auth import AuthInterceptor, current_caller
from cmk_trio.rpckit.bootstrap import Bootstrap, Process, Served
from cmk_trio.rpckit.clock import Clock
from cmk_trio.rpckit.datadir import StartupError
from cmk_trio.rpckit.devclock import DevApi
from cmk_trio.rpckit.events import EventFollower
from cmk_trio.rpckit.status import ErrorInterceptor
from cmk_trio.rpckit.tokens import OPERATOR_ROLE
from cmk_trio.rpckit.types import Context
from cmk_trio.speech import errors
from cmk_trio.speech.api import ApplicationApi, SpeechDevApi, SpeechResourceApi
from cmk_trio.speech.config import SpeechConfig
from cmk_trio.speech.customer_keys import DataKeys
from cmk_trio.speech.data import Data
from cmk_trio.speech.encryption import Encryption
from cmk_trio.speech.envelope import RandomBytes, load_or_create_ring
from cmk_trio.speech.errors import DOMAIN
from cmk_trio.speech.followers import CacheGuard, Followers, dropping_on_failure
from cmk_trio.speech.gateways import GrpcIdentityGateway, GrpcVaultGateway
from cmk_trio.speech.resources import Resources
from cmk_trio.speech.storage import SpeechStore, open_store

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger(__name__)

RESOLVE_INTERVAL = 30.0
"""Seconds between passes over the intents of interrupted cross-service changes."""

AUDIENCES = {
    "cmk.speech.v1.SpeechResourceService": audiences.MANAGEMENT,
    "cmk.speech.v1.ApplicationService": audiences.SPEECH,
    "cmk.speech.v1.SpeechDevService": audiences.MANAGEMENT,
    "cmk.common.v1.DevService": audiences.MANAGEMENT,
}


@dataclass
class SpeechServer(Served):
    """A running speech service and its parts."""

    process: Process
    config: SpeechConfig
    store: SpeechStore
    resources: Resources
    data: Data
    data_keys: DataKeys
    encryption: Encryption
    guard: CacheGuard
    directory: DirectoryLink
    followers: Followers
    keyvault_channel: grpc.aio.Channel | None
    identity_gateway: GrpcIdentityGateway
    """How speech asks identity for managed identities' tokens (it keeps them until they expire)."""


async def build_server(
    config: SpeechConfig,
    *,
    clock: Clock | None = None,
    random: RandomBytes = os.urandom,
    tracer_provider: TracerProvider | None = None,
) -> SpeechServer:
    """Open storage and the key ring, connect to identity and the key vault, and start serving
    (traced into `tracer_provider` when given, else as OTEL_* configure; see rpckit.tracing)."""
    async with Bootstrap(
        "speech", config, key_files=[config.ring_path], clock=clock, tracer_provider=tracer_provider
    ) as boot:
        clock = boot.clock
        peer_interceptors = boot.tracing.client_interceptors()
        store = boot.owns(await open_store(config.database_location, must_exist=config.ring_path.exists()))
        metrics = boot.metrics
        metrics.watch_store(store)
        directory = boot.owns(
            link_to_directory(config, clock=clock, metrics=metrics, interceptors=peer_interceptors), "stop"
        )
        identity, roles = directory.identity, directory.roles
        kv_channel = (
            # (no retries: speech's callers' clients are the one layer that retries)
            boot.owns(
                open_channel(
                    config.keyvault_endpoint, config.tls.for_peers(), peer_interceptors, retries=False, peer="keyvault"
                )
            )
            if config.keyvault_endpoint
            else None
        )
        async with store.exclusive("startup"):  # replicas starting together make one ring
            ring = load_or_create_ring(config.ring_path, create=await store.resource_count() == 0, random=random)
        identity_gateway = GrpcIdentityGateway(identity, clock)
        resources = Resources(
            store, clock, roles, identity_gateway, ring,
            auto_approve=config.auto_approve_cmk, random=random,
        )  # fmt: skip
        if (unopened := await resources.unopened_by_ring()) is not None:
            raise StartupError(
                f"the master key ring {config.ring_path} does not open the data keys in {store.description} "
                f"(resource {unopened}); restore the ring file that belongs with this database"
            )
        vault_gateway = GrpcVaultGateway(kv_channel) if kv_channel is not None else None
        data_keys = DataKeys(
            ring,
            clock,
            vault=vault_gateway,
            identity=identity_gateway,
            max_age=config.data_key_max_age,
            metrics=metrics,
            reload_ring=lambda: load_or_create_ring(config.ring_path, create=False),
        )
        data = Data(resources, data_keys, clock, random)
        encryption = Encryption(
            resources, data_keys, vault=vault_gateway, identity=identity_gateway,
            dns_suffix=config.vault_dns_suffix, random=random,
        )  # fmt: skip
        guard = CacheGuard(store, data_keys, identity_gateway, encryption, config.vault_dns_suffix, clock, metrics)
        # A customer-managed data key is kept only while the streams that would revoke it are current.
        data_keys.cache_allowed = guard.streams_current
        followers: list[EventFollower[Any]] = [  # (each of its own stream's event type)
            EventFollower(
                dropping_on_failure(identity.watch_events, guard, "identity"),
                guard.on_identity_event,
                guard.drop_everything,
            )
        ]
        if kv_channel is not None:
            vault_events = KeyVaultClient(kv_channel, identity.token_for)
            followers.append(
                EventFollower(
                    dropping_on_failure(vault_events.watch_events, guard, "keyvault"),
                    guard.on_vault_event,
                    guard.drop_everything,
                )
            )

        async def operator_only(context: Context) -> None:
            if OPERATOR_ROLE not in current_caller().roles:
                raise errors.operator_required("may move the clock")

        def register(server: grpc.aio.Server) -> None:
            resource_api = SpeechResourceApi(resources, data_keys, encryption)
            pb_grpc.add_SpeechResourceServiceServicer_to_server(resource_api, server)
            pb_grpc.add_ApplicationServiceServicer_to_server(ApplicationApi(data), server)
            pb_grpc.add_SpeechDevServiceServicer_to_server(SpeechDevApi(resource_api, data), server)
            dev_grpc.add_DevServiceServicer_to_server(DevApi(boot.process.shiftable, operator_only), server)

        running = await boot.serve(register, [pb.DESCRIPTOR, dev_pb.DESCRIPTOR], [
            ErrorInterceptor(DOMAIN),
            AuthInterceptor(directory.validator, AUDIENCES, ()),
            AdmissionInterceptor(CallLimits.from_env(os.environ)),
        ])  # fmt: skip
        async with store.exclusive("startup"):
            rewrapped = await resources.rewrap_to_current_ring()
        if rewrapped:
            log.info("data keys rewrapped to the current master key", extra={"count": rewrapped})
        await directory.serve_when_current(running)
        follow = Followers(*followers)
        boot.before_listener_stops(follow.stop)
        follow.start()
    log.info("speech service started", extra={"port": running.port})
    server = SpeechServer(
        boot.process, config, store, resources, data, data_keys, encryption, guard, directory, follow, kv_channel,
        identity_gateway,
    )  # fmt: skip
    boot.process.spawn(_resolve_interrupted(encryption, store), "resolve-interrupted")
    return server


async def _resolve_interrupted(encryption: Encryption, store: SpeechStore) -> None:
    """Finish or undo the cross-service changes a crash interrupted: at start, then now and
    then (one whose peer was away is tried again). Each replica resolves its own; the one
    holding the lease on background work also those of replicas that are gone."""
    lease = store.leadership()
    for _ in range(60):  # at start, a moment for the lease to be decided (replicas on PostgreSQL)
        if lease.held:
            break
        await asyncio.sleep(0.05)
    while True:
        try:
            resolved = await encryption.resolve_pending(others=lease.held)
            if resolved:
                log.info("interrupted changes resolved", extra={"count": resolved})
        except Exception:
            log.exception("resolving interrupted changes failed; trying again later")
        await asyncio.sleep(RESOLVE_INTERVAL)
