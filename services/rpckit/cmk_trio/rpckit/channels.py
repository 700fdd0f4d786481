"""Opening channels to a service: plain TCP on loopback, TLS, or mutual TLS. (Plumbing the
services share for calling each other, so it lives in rpckit; the client re-exports it.)"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""Largest request or response, on every service and client. A server refuses a larger
request with REQUEST_TOO_LARGE (and its reason) up to MAX_TRANSPORT_BYTES, beyond which gRPC
itself refuses it (RESOURCE_EXHAUSTED) before any of our code sees it."""
MAX_TRANSPORT_BYTES = 2 * MAX_MESSAGE_BYTES


@dataclass(frozen=True)
class ChannelTls:
    """TLS for a client: the CA to trust, and for mutual TLS a client certificate and key."""

    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str | None = None


# gRPC's defaults wait up to 120 s between reconnection attempts and never ping an idle
# connection, so a service came back a minute late and a silent partition went unnoticed until
# a cache's maximum age. These bring a returning peer back within a few seconds and notice a
# dead one within KEEPALIVE_TIME_MS + KEEPALIVE_TIMEOUT_MS (under 10 s). gRPC (1.85) waits for
# a keepalive ping's answer by the ping timeout, not the keepalive timeout: without both, a
# peer cut off silently was never noticed (tests/rpckit/test_channels.py).
RECONNECT_BACKOFF_MS = {"initial": 100, "max": 2000}
"""Reconnect soon after a peer went away (a restart), and never wait long between tries."""
CONNECT_TIMEOUT_MS = 2_000
"""How long one connection attempt (TCP, TLS, the peer's HTTP/2 settings) may take. gRPC reads
it from `grpc.min_reconnect_backoff_ms` (its minimum connect timeout, whatever the name says):
set to the backoff's 100 ms, every first call to a peer more than a fast round trip away
failed UNAVAILABLE. Long enough for a handshake across the world or on a loaded machine, and
well within a call's deadline, so that a peer that takes connections but never answers (a
paused container) is still reported unreachable, not a deadline missed."""
KEEPALIVE_TIME_MS = 5000
KEEPALIVE_TIMEOUT_MS = 3000


RETRY_POLICY = {
    "maxAttempts": 4,
    "initialBackoff": "0.05s",
    "maxBackoff": "0.5s",
    "backoffMultiplier": 3,
    "retryableStatusCodes": ["UNAVAILABLE"],
}
"""gRPC's own retries (each backoff drawn at random below its cap: jitter), for the methods
a client names idempotent, on UNAVAILABLE only: a service restarting or a dependency away."""
RETRY_THROTTLING = {"maxTokens": 1000, "tokenRatio": 0.1}
"""A peer that keeps failing stops being retried (gRPC's retry throttling) instead of
receiving four times the load while it is down: after 500 failures more than a tenth of the
successes, retries stop until it answers again. Not sooner: a replica killed fails every call
in flight at once (hundreds, under a load generator), and each of those is retried, as one
failure is (1000 is gRPC's largest)."""


def service_config(retry_methods: Iterable[tuple[str, str]] = ()) -> str:
    """The channel's service config: round robin (calls spread over every address of a
    target, one after the other; gRPC's default, pick_first, sends everything to one replica
    until it fails), and retries for `retry_methods` ((service, method) pairs), none at all
    when that is empty."""
    config: dict[str, object] = {"loadBalancingConfig": [{"round_robin": {}}]}
    names = [{"service": service, "method": method} for service, method in retry_methods]
    if names:
        config["methodConfig"] = [{"name": names, "retryPolicy": RETRY_POLICY}]
        config["retryThrottling"] = RETRY_THROTTLING
    return json.dumps(config)


def grpc_target(endpoint: str) -> str:
    """What gRPC is to dial for an endpoint: `host:port`, a DNS name whose every address is a
    replica (`dns:///name:port`), or several replicas, `host:port,host:port,...` (each host
    an IP address, or a name resolved now, to its IPv4 addresses if it has any)."""
    if "," not in endpoint:
        return endpoint
    addresses: list[str] = []
    for part in (p.strip() for p in endpoint.split(",")):
        host, sep, port = part.rpartition(":")
        if not sep or not (port.isascii() and port.isdigit()) or not host:
            raise ValueError(f"an endpoint in a list must be host:port, not {part!r}")
        host = host.strip("[]")
        try:
            ips = [ipaddress.ip_address(host)]
        except ValueError:
            found = {
                ipaddress.ip_address(str(a[4][0])) for a in socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
            }
            ips = sorted(found, key=lambda ip: (ip.version, str(ip)))
            ips = [ip for ip in ips if ip.version == ips[0].version]
        addresses += [f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}" for ip in ips]
    versions = {"[" in a for a in addresses}
    if len(versions) > 1:
        raise ValueError("the endpoints of one list must be all IPv4 or all IPv6")
    return ("ipv6:" if versions == {True} else "ipv4:") + ",".join(addresses)


def open_channel(
    endpoint: str,
    tls: ChannelTls | None = None,
    interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
    *,
    retry_methods: Iterable[tuple[str, str]] = (),
    peer: str | None = None,
) -> grpc.aio.Channel:
    """A grpc.aio channel to `endpoint` (one address, or several replicas balanced round
    robin; see `grpc_target`), reconnecting quickly and pinging an idle peer; `interceptors`
    carry a service's trace on to its peers (see rpckit.tracing); `retry_methods` are retried
    by gRPC on UNAVAILABLE (see `service_config`).

    `peer`: the service the endpoint must be ("identity", "keyvault", "speech"). Over TLS its
    certificate must then name that service, whatever host is dialled: every certificate of
    our CA names localhost and 127.0.0.1, so on loopback the host alone would take any
    service's certificate for any other's (and a token meant for one would reach another).
    A `server_name` the caller set in `tls` wins."""
    target = grpc_target(endpoint)
    options: list[tuple[str, object]] = [
        ("grpc.service_config", service_config(retry_methods)),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.initial_reconnect_backoff_ms", RECONNECT_BACKOFF_MS["initial"]),
        ("grpc.min_reconnect_backoff_ms", CONNECT_TIMEOUT_MS),
        ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MS["max"]),
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.http2.ping_timeout_ms", KEEPALIVE_TIMEOUT_MS),
    ]
    if target != endpoint:
        # One authority for the whole list (gRPC would otherwise take the list itself): the
        # first replica's, which TLS checks the certificates against.
        options.append(("grpc.default_authority", target.split(":", 1)[1].split(",", 1)[0]))
    if tls is None:
        return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors or None)
    creds = grpc.ssl_channel_credentials(
        root_certificates=tls.ca_file.read_bytes(),
        private_key=tls.key_file.read_bytes() if tls.key_file else None,
        certificate_chain=tls.cert_file.read_bytes() if tls.cert_file else None,
    )
    if tls.server_name or peer:
        options.append(("grpc.ssl_target_name_override", tls.server_name or peer))
    return grpc.aio.secure_channel(target, creds, options=options, interceptors=interceptors or None)
