"""Leases on background work for replicas on PostgreSQL: one holder at a time, taken over
when it dies."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from cmk_trio.rpckit.events import ChangeNotifier

log = logging.getLogger(__name__)

LEASE_INTERVAL = 1.0
"""Seconds between a waiting replica's tries to take a lease, and between the holder's
checks that it still holds it."""
CHECK_TIMEOUT = 2.0


class PostgresLease:
    """A lease on background work: a session advisory lock on a connection of its own, tried
    every second by the replicas that do not hold it. The holder checks every second that its
    connection is alive and gives the work up the moment it is not; the server releases the
    lock of a holder that died (at once for a killed process, within about 8 s for a host
    that vanished)."""

    def __init__(self, name: str, key: int, connect: Callable[[], Awaitable[asyncpg.Connection]]) -> None:
        self.name = name
        self._key = key
        self._connect = connect
        self._held = False
        self.changed = ChangeNotifier()
        self._task = asyncio.create_task(self._run(), name=f"lease {name}")

    @property
    def held(self) -> bool:
        return self._held

    def _set(self, held: bool) -> None:
        if held != self._held:
            self._held = held
            log.info("lease %s", "taken" if held else "given up", extra={"lease": self.name})
            self.changed.bump()

    async def _run(self) -> None:
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await self._connect()
                while True:
                    async with asyncio.timeout(CHECK_TIMEOUT):
                        if self._held:
                            await conn.fetchval("SELECT 1")
                        else:
                            self._set(bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", self._key)))
                    await asyncio.sleep(LEASE_INTERVAL)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("lease connection lost", extra={"lease": self.name, "error": type(exc).__name__})
            finally:
                self._set(False)
                if conn is not None:
                    conn.terminate()
            await asyncio.sleep(LEASE_INTERVAL)

    async def close(self) -> None:
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
