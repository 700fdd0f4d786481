"""A started service (or the trio) serving until SIGTERM or SIGINT: the run code that
`cmk serve ...`, `cmk up` and `python -m cmk_trio.identity` share."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from cmk_trio.rpckit.datadir import StartupError
from cmk_trio.rpckit.listeners import raise_descriptor_limit
from cmk_trio.rpckit.logs import configure_logging
from cmk_trio.rpckit.server import stop_signals

STARTUP_REFUSED = 3
"""The exit status of a service that refused to start (its data directory, keys or database)."""


class Stoppable(Protocol):
    """Something started that stops gracefully: one service, or the trio."""

    async def stop(self) -> None:
        """Stop serving and release what it holds."""


S = TypeVar("S", bound=Stoppable)


def _nothing() -> None:
    pass


async def serve_until_stopped(
    name: str,
    log_level: str,
    start: Callable[[], Awaitable[S]],
    started: Callable[[S], None],
    stopping: Callable[[], None] = _nothing,
) -> None:
    """Log as `name`, raise the descriptor limit, start, say what descriptors the process
    has, tell `started` (which announces it), serve until SIGTERM or SIGINT, tell `stopping`,
    and stop gracefully.

    The signal handlers are in place before the start, so that a signal arriving at any moment
    after the announcement stops the services gracefully instead of killing the process; and
    they stop even when the announcement fails (a closed standard output, say)."""
    configure_logging(name, log_level)
    descriptors = raise_descriptor_limit()  # (before any listener derives its cap from it)
    with stop_signals() as stopped:
        try:
            server = await start()
        except StartupError as refusal:
            # One line that says what is wrong and what to do, not a traceback.
            print(f"{name}: cannot start: {refusal}", file=sys.stderr, flush=True)
            raise SystemExit(STARTUP_REFUSED) from None
        descriptors.announce()  # (once started: a refused start is one line, and only that)
        try:
            started(server)
            await stopped.wait()
            stopping()
        finally:
            await server.stop()
