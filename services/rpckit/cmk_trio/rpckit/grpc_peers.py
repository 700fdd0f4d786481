"""The per-peer connection cap of a gRPC listener.

gRPC's core caps a server's connections in total, times their handshake and closes idle ones
(`ConnectionLimits.grpc_options`), but it has no cap per peer, and grpcio gives Python no
hook between accepting a connection and serving it. So one address could hold every
connection the listener may have, each with calls whose request never comes (a call is not
idle), and everyone else would be refused. What the core cannot refuse, `PeerCap` closes:
every `INTERVAL` it looks at the process's own socket descriptors (`/proc/self/fd`), learns
each new one's local port and peer once (an IPv6 peer by its /64, as the admission shares
count callers), and shuts down the newest of each peer's connections to the listener's port
beyond the cap. A look costs a few microseconds per descriptor of the process, whatever else
the machine holds. A socket is checked again by its inode after it is duplicated, so that a
descriptor number reused meanwhile (a database connection, say) is never touched; the
shutdown ends the connection in gRPC's core as a peer's close would.

Where there is no /proc/self/fd the cap says once that it cannot run, and the total cap, the
head timeout and the idle timeout still hold. A peer's client sees its connection closed
(UNAVAILABLE) and reconnects; its connections within the cap are left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from cmk_trio.rpckit.admission import peer_address
from cmk_trio.rpckit.status import Throttle

log = logging.getLogger(__name__)

FD_DIR = Path("/proc/self/fd")
INTERVAL = 0.5
"""Seconds between two looks while every peer is within its cap."""
PRESSED_INTERVAL = 0.1
"""Seconds until the next look after one that closed something (a flood goes on)."""


@dataclass(frozen=True)
class Connection:
    """One accepted connection: the listener's port, its peer's address (as `peer_address`
    keys callers), its socket's inode, and the look that first saw it (the kernel keeps no
    age of a connection, and inode numbers are handed out in batches per CPU, not in order)."""

    local_port: int
    peer: str
    inode: int
    seen: int = 0


def connection_of(fd: int, inode: int) -> Connection | None:
    """The connection socket `fd` (still the one with `inode`) holds: None for what is not a
    connected TCP socket (a listening socket, a unix socket, a file given that number since).

    The duplicate is closed exactly once, whatever fails: a second close could close a
    descriptor that gRPC's threads opened with the same number meanwhile."""
    try:
        mine = os.dup(fd)
    except OSError:
        return None
    try:
        sock = socket.socket(fileno=mine)  # owns `mine` from here: closing it closes the duplicate only
    except OSError:  # not a socket
        os.close(mine)
        return None
    with sock:
        try:
            if os.fstat(sock.fileno()).st_ino != inode or sock.family not in (socket.AF_INET, socket.AF_INET6):
                return None
            local, remote = sock.getsockname(), sock.getpeername()
        except OSError:  # not connected (listening, still connecting, reset)
            return None
    return Connection(local[1], peer_address(remote[0]), inode)


def over_cap(connections: Iterable[Connection], port: int, cap: int) -> dict[str, list[int]]:
    """For each peer holding more than `cap` connections to `port`, the inodes of its newest
    beyond the cap (the latest seen; of those first seen in one look, any)."""
    by_peer: dict[str, list[Connection]] = {}
    for c in connections:
        if c.local_port == port:
            by_peer.setdefault(c.peer, []).append(c)
    return {
        peer: [c.inode for c in sorted(held, key=lambda c: (c.seen, c.inode))[cap:]]
        for peer, held in by_peer.items()
        if len(held) > cap
    }


def socket_descriptors(fd_dir: Path = FD_DIR) -> dict[int, int]:
    """The process's socket descriptors by inode."""
    found = {}
    for entry in os.scandir(fd_dir):
        with contextlib.suppress(OSError):  # closed meanwhile
            target = os.readlink(entry.path)
            if target.startswith("socket:["):
                found[int(target[8:-1])] = int(entry.name)
    return found


def shut_down(fd: int, inode: int) -> bool:
    """Shut the socket `fd` down if it is still the one with `inode` (the number may have been
    closed and given to another socket, or to a file, since it was looked at)."""
    try:
        mine = os.dup(fd)
    except OSError:
        return False
    try:
        if os.fstat(mine).st_ino != inode:
            os.close(mine)
            return False
        sock = socket.socket(fileno=mine)  # owns `mine` from here: closing it closes the duplicate only
    except OSError:
        os.close(mine)
        return False
    with sock:
        try:
            sock.shutdown(socket.SHUT_RDWR)  # the connection itself, for every descriptor of it
        except OSError:
            return False
    return True


class PeerCap:
    """Keeps each peer of the gRPC listener on `port` to `cap` connections (see the module)."""

    def __init__(self, listener: str, port: int, cap: int, *, fd_dir: Path = FD_DIR) -> None:
        self.listener = listener
        self.port = port
        self.cap = cap
        self.closed = 0
        """Connections closed for being over a peer's cap, since the start."""
        self._fd_dir = fd_dir
        self._known: dict[int, Connection | None] = {}
        """What each socket the process holds is, by inode, learnt once (None: not a connection)."""
        self._looks = 0
        self._shut: set[int] = set()
        """Sockets shut down and not yet closed by gRPC's core: no longer counted."""
        self._throttle = Throttle()
        self._task: asyncio.Task[None] | None = None

    @property
    def available(self) -> bool:
        return self._fd_dir.is_dir()

    def start(self) -> None:
        if not self.available:
            log.warning(
                "no per-peer connection cap on this system (it reads the process's descriptors in /proc/self/fd)",
                extra={"listener": self.listener},
            )
            return
        self._task = asyncio.create_task(self._watch(), name=f"peer cap {self.listener}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch(self) -> None:
        while True:
            try:
                closed = self.enforce()
            except Exception:  # (no descriptor left to look with, a flood at its height): look again soon
                # Never the end of the cap, nor an error raised into the server's stop.
                log.warning("cannot look at the process's connections", extra={"listener": self.listener},
                            exc_info=True)  # fmt: skip
                closed = 0
            await asyncio.sleep(PRESSED_INTERVAL if closed else INTERVAL)

    def connections(self) -> tuple[list[Connection], dict[int, int]]:
        """The process's connections now, and its socket descriptors by inode."""
        sockets = socket_descriptors(self._fd_dir)
        for gone in self._known.keys() - sockets.keys():
            del self._known[gone]
        self._shut &= sockets.keys()
        self._looks += 1
        for inode, fd in sockets.items():
            if inode not in self._known:
                found = connection_of(fd, inode)
                self._known[inode] = None if found is None else replace(found, seen=self._looks)
        return [c for c in self._known.values() if c is not None and c.inode not in self._shut], sockets

    def enforce(self) -> int:
        """One look: close what is over a peer's cap; returns how many were closed."""
        found, sockets = self.connections()
        closed = 0
        for peer, inodes in over_cap(found, self.port, self.cap).items():
            done = {inode for inode in inodes if shut_down(sockets[inode], inode)}
            self._shut |= done
            mine = len(done)
            closed += mine
            if not mine:
                continue
            held = self._throttle.allow((self.listener, "per-peer"))
            if held is not None:
                log.warning(
                    "connections closed: over the per-peer cap",
                    extra={"listener": self.listener, "peer": peer, "closed": mine, "limit": self.cap,
                           "suppressed_before": held},
                )  # fmt: skip
        self.closed += closed
        return closed
