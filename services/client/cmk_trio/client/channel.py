"""Channels for clients: see cmk_trio.rpckit.channels. A client's channel has gRPC retry
its idempotent calls on UNAVAILABLE (the service config's retryPolicy, with jitter); a
service calling another opens its channel without, so that one layer retries, not each hop."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import grpc

from cmk_trio.proto.common.v1 import dev_service_pb2
from cmk_trio.proto.identity.v1 import identity_service_pb2
from cmk_trio.proto.keyvault.v1 import keyvault_service_pb2
from cmk_trio.proto.speech.v1 import speech_service_pb2
from cmk_trio.rpckit.channels import ChannelTls
from cmk_trio.rpckit.channels import open_channel as _open_channel

SAFE_PREFIXES = ("Get", "List", "Check", "Issue")
SAFE_METHODS = frozenset({"WrapKey", "UnwrapKey", "Encrypt", "Decrypt", "Sign", "Verify", "BackupKey", "BackupSecret"})


def is_idempotent(method_name: str) -> bool:
    """Reads, token issuance and key operations change nothing when repeated, so they are
    safe to retry; creates, updates and deletes are not."""
    return method_name.startswith(SAFE_PREFIXES) or method_name in SAFE_METHODS


@cache
def idempotent_methods() -> tuple[tuple[str, str], ...]:
    """Every unary method of the trio's APIs that is safe to retry, as (service, method)."""
    return tuple(
        (service.full_name, method.name)
        for module in (identity_service_pb2, keyvault_service_pb2, speech_service_pb2, dev_service_pb2)
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
        if is_idempotent(method.name) and not method.client_streaming and not method.server_streaming
    )


def open_channel(
    endpoint: str,
    tls: ChannelTls | None = None,
    interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
    *,
    retries: bool = True,
    peer: str | None = None,
) -> grpc.aio.Channel:
    """A channel to one of the services (or its replicas); `retries=False` for a service
    calling another (its own caller's client is the one layer that retries). `peer`: which
    service it must be; over TLS its certificate must name it (see rpckit.channels)."""
    return _open_channel(endpoint, tls, interceptors, retry_methods=idempotent_methods() if retries else (), peer=peer)


__all__ = ["ChannelTls", "idempotent_methods", "is_idempotent", "open_channel"]
