"""The life of a service process, one way for every kind: its settings read (or a one-line
refusal), logging, the descriptor limit raised, the start (or a one-line refusal, exit 3),
the announcement, serving until SIGTERM or SIGINT, and a graceful stop. `cmk serve ...`,
`cmk up` and `python -m cmk_trio.<service>` all run through `serve_until_stopped`; `main`
is the whole of a service's `__main__`."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from cmk_trio.rpckit.config import ConfigError
from cmk_trio.rpckit.datadir import StartupError
from cmk_trio.rpckit.listeners import raise_descriptor_limit
from cmk_trio.rpckit.logs import configure_logging
from cmk_trio.rpckit.server import run, stop_signals
from cmk_trio.rpckit.settings import ServiceSettings

STARTUP_REFUSED = 3
"""The exit status of a service that refused to start (its data directory, keys or database)."""


class Stoppable(Protocol):
    """Something started that stops gracefully: one service, or the trio."""

    async def stop(self) -> None:
        """Stop serving and release what it holds."""


S = TypeVar("S", bound=Stoppable)
C = TypeVar("C", bound=ServiceSettings)


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


def main(
    name: str,
    load: Callable[[], C],
    start: Callable[[C], Awaitable[S]],
    started: Callable[[S], None],
) -> None:
    """A service's `python -m cmk_trio.<name>`: its settings from `load()` (the CMK_*
    variables; a bad one is one line and exit 1, a refused file of secrets one line and exit
    3), then `start(settings)` served until SIGTERM or SIGINT, `started` printing what it
    announces."""
    try:
        settings = load()
    except ConfigError as exc:
        sys.exit(f"error: {exc}")
    except StartupError as refusal:
        print(f"{name}: cannot start: {refusal}", file=sys.stderr, flush=True)
        raise SystemExit(STARTUP_REFUSED) from None

    def stopping() -> None:
        print(f"{name}: stopping", file=sys.stderr)

    https = getattr(settings, "http_port", None) is not None and settings.tls.enabled  # (identity's door)
    run(lambda: serve_until_stopped(name, settings.log_level, lambda: start(settings), started, stopping),
        serves_https=https)  # fmt: skip


def listening(name: str, endpoint: str, metrics: str | None, door: str | None = None) -> list[str]:
    """What a lone key vault or speech service says when it has started."""
    return [
        f"{name} listening on {endpoint}",
        *([f"{name} HTTPS door at {door}"] if door else []),
        *([f"{name} metrics at {metrics}"] if metrics else []),
    ]


class Listening(Stoppable, Protocol):
    """A started service that says where it listens (and serves its metrics)."""

    @property
    def endpoint(self) -> str: ...

    @property
    def metrics_url(self) -> str | None: ...

    @property
    def http_url(self) -> str | None: ...


def main_saying_where(name: str, load: Callable[[], C], start: Callable[[C], Awaitable[Listening]]) -> None:
    """`main` for a service whose start says only where it listens (the key vault, speech)."""

    def started(server: Listening) -> None:
        print("\n".join(listening(name, server.endpoint, server.metrics_url, server.http_url)), flush=True)

    main(name, load, start, started)
