"""What a listener lets a connection hold: file descriptors kept in reserve for the process,
and per listener a cap on connections (in total and per peer address), a time by which a new
connection must have said what it wants, and a time after which an idle one is closed.

An anonymous client that opens connections and trickles bytes into them must not be able to
take the process's descriptors: when they run out, every listener of the process refuses
everything, health checks included, and the service cannot reach its database or its peers.
So a process raises its soft descriptor limit to the hard one at start, keeps a share of it
in reserve for what is not a listener, and divides the rest among the listeners it may run,
each of which closes at once what is beyond its cap. gRPC's core offers a total cap, a
handshake timeout and an idle timeout, and `grpc_peers` adds the cap per peer it lacks; the
HTTP listener (`http_listener`) has all four.
"""

from __future__ import annotations

import logging
import resource
from collections.abc import Mapping
from dataclasses import dataclass, field

from cmk_trio.rpckit.config import ConfigError, env_float, env_int
from cmk_trio.rpckit.status import Throttle

log = logging.getLogger(__name__)

LISTENER_SHARES = 8
"""The listeners one process may run, among which the descriptors not in reserve are
divided: under `cmk up` the three gRPC ports and identity's HTTPS, with room for the doors to
come. A share is a cap, not an allocation, so the caps of the listeners a process runs sum to
well under what it has."""
MIN_RESERVE = 64
MIN_CONNECTIONS = 8

DEFAULT_HEAD_TIMEOUT = 10.0
DEFAULT_IDLE_TIMEOUT = 60.0
DEFAULT_MAX_CONNECTIONS = 1000
DEFAULT_MAX_PER_PEER = 100


@dataclass(frozen=True)
class Descriptors:
    """The process's file descriptor limit (its soft RLIMIT_NOFILE), what of it is kept in
    reserve for what is not a listener's connection (database connections, the channels to
    the service's peers, files, health checks on a fresh connection), and each listener's
    share of the rest."""

    limit: int
    raised_from: int | None = None
    """The soft limit before the process raised it (None: not raised)."""

    @property
    def reserve(self) -> int:
        return max(MIN_RESERVE, self.limit // 4)

    @property
    def per_listener(self) -> int:
        """The most connections one listener may hold at once."""
        return max(MIN_CONNECTIONS, (self.limit - self.reserve) // LISTENER_SHARES)

    def announce(self) -> None:
        """Say in one log line what the process has: the limit (and what it was raised
        from), the reserve, the share per listener."""
        log.info(
            "file descriptors",
            extra={"fd_limit": self.limit, "fd_limit_raised_from": self.raised_from, "fd_reserve": self.reserve,
                   "max_connections_per_listener": self.per_listener},
        )  # fmt: skip

    @classmethod
    def current(cls) -> Descriptors:
        """What this process has now."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        return cls(_finite(soft, hard))


def _finite(soft: int, hard: int) -> int:
    if soft != resource.RLIM_INFINITY:
        return soft
    return hard if hard != resource.RLIM_INFINITY else 1 << 20


def raise_descriptor_limit() -> Descriptors:
    """Raise the soft descriptor limit to the hard limit (what an unprivileged process may)
    and return what the process has then. A refusal by the system leaves the limit as it
    was (`raised_from` None)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
    raised_from: int | None = None
    if soft == resource.RLIM_INFINITY or soft >= target:
        pass
    else:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            raised_from = soft
        except (ValueError, OSError):
            pass  # (a hard limit the kernel does not allow after all: keep what we have)
    now = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return Descriptors(_finite(now, hard), raised_from)


@dataclass(frozen=True)
class ConnectionLimits:
    """What one listener lets its connections hold.

    `head_timeout`: seconds from accepting a connection until its TLS handshake is done and
    (HTTP) its first request head has arrived, or (gRPC) its HTTP/2 settings; then it is
    closed. `idle_timeout`: seconds a connection with nothing in flight stays open.
    `max_connections`: connections held at once; `max_per_peer`: of them, from one address.
    Beyond either, a new connection is closed as soon as it is accepted (on gRPC, beyond a
    peer's cap, as soon as `grpc_peers.PeerCap` sees it)."""

    head_timeout: float = DEFAULT_HEAD_TIMEOUT
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_per_peer: int = DEFAULT_MAX_PER_PEER

    def __post_init__(self) -> None:
        if not 0 < self.head_timeout <= 3600 or not 0 < self.idle_timeout <= 86400:
            raise ConfigError(
                "CMK_HEAD_TIMEOUT_SECONDS (at most 3600) and CMK_IDLE_TIMEOUT_SECONDS (at most 86400) must be"
                " more than 0"
            )
        if self.max_connections < 1 or self.max_per_peer < 1:
            raise ConfigError("CMK_MAX_CONNECTIONS and CMK_MAX_CONNECTIONS_PER_PEER must be at least 1")

    @classmethod
    def from_env(cls, env: Mapping[str, str], descriptors: Descriptors | None = None) -> ConnectionLimits:
        """From CMK_HEAD_TIMEOUT_SECONDS (10), CMK_IDLE_TIMEOUT_SECONDS (60),
        CMK_MAX_CONNECTIONS (1000) and CMK_MAX_CONNECTIONS_PER_PEER (100); the total is
        lowered to the listener's share of the process's descriptors, whatever is asked."""
        have = descriptors or Descriptors.current()
        total = min(env_int(env, "CMK_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS), have.per_listener)
        return cls(
            head_timeout=env_float(env, "CMK_HEAD_TIMEOUT_SECONDS", DEFAULT_HEAD_TIMEOUT),
            idle_timeout=env_float(env, "CMK_IDLE_TIMEOUT_SECONDS", DEFAULT_IDLE_TIMEOUT),
            max_connections=total,
            max_per_peer=min(env_int(env, "CMK_MAX_CONNECTIONS_PER_PEER", DEFAULT_MAX_PER_PEER), total),
        )

    def grpc_options(self) -> list[tuple[str, int]]:
        """The same limits as gRPC core's server arguments. A connection over the total is
        closed before its handshake; one whose TLS handshake and HTTP/2 settings have not
        arrived within the head timeout is closed; one with no call for the idle timeout gets
        a GOAWAY (a client reconnects when it next calls)."""
        return [
            ("grpc.max_allowed_incoming_connections", self.max_connections),
            ("grpc.server_handshake_timeout_ms", max(1, round(self.head_timeout * 1000))),
            ("grpc.max_connection_idle_ms", max(1, round(self.idle_timeout * 1000))),
        ]


@dataclass
class ConnectionCount:
    """A listener's connections, counted in total and per peer address, with what was
    refused and cut off (the figures the tests and the log report)."""

    listener: str
    limits: ConnectionLimits
    open: int = 0
    by_peer: dict[str, int] = field(default_factory=dict)
    refused: int = 0
    cut_off: int = 0
    throttle: Throttle = field(default_factory=Throttle)

    def admit(self, peer: str) -> bool:
        """Count a new connection from `peer`, or refuse it (False: close it at once) when the
        listener or that peer holds its cap; a refusal is logged at most so often."""
        held = self.by_peer.get(peer, 0)
        if self.open >= self.limits.max_connections:
            self._refused(peer, "total", self.limits.max_connections)
            return False
        if held >= self.limits.max_per_peer:
            self._refused(peer, "per_peer", self.limits.max_per_peer)
            return False
        self.open += 1
        self.by_peer[peer] = held + 1
        return True

    def release(self, peer: str) -> None:
        """A connection admitted from `peer` is closed."""
        self.open -= 1
        left = self.by_peer[peer] - 1
        if left:
            self.by_peer[peer] = left
        else:
            del self.by_peer[peer]

    def _refused(self, peer: str, cap: str, limit: int) -> None:
        self.refused += 1
        held = self.throttle.allow((self.listener, f"refused-{cap}"))
        if held is not None:
            log.warning(
                "connection refused",
                extra={"listener": self.listener, "peer": peer, "cap": cap, "limit": limit, "suppressed_before": held},
            )

    def note_cut_off(self, peer: str, what: str) -> None:
        """A connection was closed because `what` did not arrive within the head timeout."""
        self.cut_off += 1
        held = self.throttle.allow((self.listener, "cut-off"))
        if held is not None:
            log.info(
                "connection closed: too slow",
                extra={"listener": self.listener, "peer": peer, "waiting_for": what,
                       "seconds": self.limits.head_timeout, "suppressed_before": held},
            )  # fmt: skip
