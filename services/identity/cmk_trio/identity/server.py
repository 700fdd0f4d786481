"""The composition root of the identity service: builds every part from the configuration
and starts the gRPC server. It only wires; the rules live in the domain modules."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc

from cmk_trio.identity.api import AUDIENCES, PUBLIC_METHODS, SIGN_IN_METHODS, IdentityApi, TokenApi
from cmk_trio.identity.config import IdentityConfig
from cmk_trio.identity.crypto import (
    CannotDecrypt,
    RandomBytes,
    SecretHasher,
    VerifiedSecretMemo,
    load_or_create_master_key,
)
from cmk_trio.identity.directory import Directory
from cmk_trio.identity.errors import DOMAIN
from cmk_trio.identity.graph import GraphFront
from cmk_trio.identity.group_api import ResourceGroupApi
from cmk_trio.identity.issuer import SigningKeyRing, TokenIssuer, TokenPolicy
from cmk_trio.identity.model import NewSecret, Principal
from cmk_trio.identity.oidc import OidcFront, start_http
from cmk_trio.identity.sign_ins import SecretChecks, StoredLedger
from cmk_trio.identity.storage import IdentityStore, open_store
from cmk_trio.proto.common.v1 import dev_service_pb2 as dev_pb
from cmk_trio.proto.common.v1 import dev_service_pb2_grpc as dev_grpc
from cmk_trio.proto.identity.v1 import identity_service_pb2 as pb
from cmk_trio.proto.identity.v1 import identity_service_pb2_grpc as pb_grpc
from cmk_trio.rpckit.admission import AdmissionInterceptor, CallLimits
from cmk_trio.rpckit.auth import AuthInterceptor, current_caller
from cmk_trio.rpckit.bootstrap import Bootstrap, Process, Served
from cmk_trio.rpckit.clock import Clock
from cmk_trio.rpckit.datadir import StartupError
from cmk_trio.rpckit.devclock import DevApi
from cmk_trio.rpckit.http_listener import RunningHttp
from cmk_trio.rpckit.keyfiles import write_private_file
from cmk_trio.rpckit.status import ErrorInterceptor
from cmk_trio.rpckit.tokens import TokenValidator
from cmk_trio.rpckit.types import Context

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger(__name__)


@dataclass
class IdentityServer(Served):
    """A running identity service and its parts (tests reach into them)."""

    process: Process
    config: IdentityConfig
    store: IdentityStore
    directory: Directory
    keys: SigningKeyRing
    issuer: TokenIssuer
    operator: Principal
    new_operator_secret: NewSecret | None
    """Set only on the first start with a generated operator secret: show it once."""
    http: RunningHttp | None
    """The OpenID Connect discovery, JWKS and token endpoints, when served."""
    limits: CallLimits
    """The cap on calls served at once and its shares, gRPC and HTTP together."""

    @property
    def http_url(self) -> str | None:
        """The base URL of the HTTP endpoints (a tenant's discovery document is at
        {http_url}/{tenant}/v2.0/.well-known/openid-configuration), when served."""
        if self.http is None:
            return None
        return self.config.http_public_url or self.http.base_url


async def build_server(
    config: IdentityConfig,
    *,
    clock: Clock | None = None,
    random: RandomBytes = os.urandom,
    tracer_provider: TracerProvider | None = None,
    limits: CallLimits | None = None,
) -> IdentityServer:
    """Open storage, load the master key, bootstrap on first start, and start serving (traced
    into `tracer_provider` when given, else as OTEL_* configure; see rpckit.tracing), with
    `limits` on the calls served at once (default: as CMK_MAX_CALLS and its shares say)."""
    async with Bootstrap(
        "identity", config, key_files=[config.master_key_path], clock=clock, tracer_provider=tracer_provider
    ) as boot:
        clock = boot.clock
        checks = boot.owns(SecretChecks(SecretHasher(cost=config.secret_hash_cost), clock))  # (threads start when used)
        store = boot.owns(await open_store(config.database_location, must_exist=config.master_key_path.exists()))
        if store.engine != "sqlite":  # replicas count failed sign-ins together
            checks.ledger = StoredLedger(store, clock, checks.window)
        # Replicas that start together on a new database take turns here: the first makes the
        # master key, the first signing key and the operator; the others find them.
        policy = TokenPolicy(
            issuer_base=config.issuer_base,
            audiences=frozenset(a.rstrip("/") for a in config.audiences),
            lifetime=config.token_lifetime,
            skew=config.clock_skew,
        )
        memo = VerifiedSecretMemo(random)
        directory = Directory(store, clock, checks=checks, notifier=store.changes, memo=memo, random=random)
        async with store.exclusive("startup"):
            first_start = await store.count_signing_keys() == 0
            master = load_or_create_master_key(config.master_key_path, create=first_start, random=random)
            keys = SigningKeyRing(store, clock, master, policy, notify=directory, random=random)
            await keys.ensure_active_key()
            try:
                await keys.signer()  # fails now, not at the first token, if the master key is wrong
            except CannotDecrypt:
                raise StartupError(
                    f"the master key {config.master_key_path} does not open the signing keys in "
                    f"{store.description}; restore the key file that belongs with this database"
                ) from None
            operator, shown = await directory.bootstrap_operator(
                client_id=config.operator_client_id, client_secret=config.operator_client_secret
            )
        if shown is not None:
            write_operator_file(config, operator, shown)
        issuer = TokenIssuer(store, directory, keys, clock, policy, checks=checks, memo=memo, random=random)
        metrics = boot.metrics
        metrics.watch_store(store)
        validator = TokenValidator(
            key_source=keys, clock=clock, issuer_base=config.issuer_base, skew=config.clock_skew, metrics=metrics
        )
        keys.on_revoked.append(validator.key_withdrawn)  # the service's own tokens, refused at once too
        keys.on_rotated.append(lambda: validator.refresh_keys(force=True))

        def register(server: grpc.aio.Server) -> None:
            pb_grpc.add_IdentityServiceServicer_to_server(
                IdentityApi(directory, policy, heartbeat=config.event_heartbeat.total_seconds()), server
            )
            pb_grpc.add_TokenServiceServicer_to_server(TokenApi(directory, issuer, keys), server)
            pb_grpc.add_ResourceGroupServiceServicer_to_server(ResourceGroupApi(directory), server)
            dev_grpc.add_DevServiceServicer_to_server(DevApi(boot.process.shiftable, require_operator), server)

        async def require_operator(context: Context) -> None:
            caller = current_caller()
            directory.require_operator(await directory.actor(caller.object_id, caller.tenant_id), "move the clock")

        # One cap for the gRPC calls and the HTTP requests; the token endpoints of both share a budget.
        limits = limits or CallLimits.from_env(os.environ)
        running = await boot.serve(register, [pb.DESCRIPTOR, dev_pb.DESCRIPTOR], [
            ErrorInterceptor(DOMAIN),
            AuthInterceptor(validator, AUDIENCES, PUBLIC_METHODS),
            AdmissionInterceptor(limits, SIGN_IN_METHODS),
        ])  # fmt: skip
        http: RunningHttp | None = None
        if config.http_port is not None:
            front = OidcFront(
                store=store, issuer=issuer, keys=keys, policy=policy, limits=limits, metrics=metrics,
                public_url=lambda: config.http_public_url or (http.base_url if http else ""),
                clock=clock, graph=GraphFront(directory, validator),
            )  # fmt: skip
            http = await start_http(front, config.host, config.http_port, config.tls)
            boot.before_listener_stops(http.stop)
    log.info("identity service started", extra={"port": running.port, "first_start": shown is not None})
    server = IdentityServer(
        boot.process, config, store, directory, keys, issuer, operator, shown, http=http, limits=limits
    )  # fmt: skip
    if store.engine != "sqlite":  # other replicas may rotate and revoke keys
        boot.process.spawn(keys.follow(), "follow-signing-keys")
    return server


def write_operator_file(config: IdentityConfig, operator: Principal, secret: NewSecret) -> None:
    """Write the operator credential once, readable by the owner only."""
    content = {
        "tenant_id": operator.tenant_id,
        "object_id": operator.object_id,
        "client_id": secret.client_id,
        "client_secret": secret.value,
    }
    write_private_file(config.operator_file, json.dumps(content, indent=2) + "\n")
