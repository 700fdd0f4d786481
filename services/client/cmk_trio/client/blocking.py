"""How synchronous code makes the asynchronous clients' calls: on an event loop of their own
in a background thread (LoopThread), through the base of the generated synchronous clients
(Blocking: sync_identity.py, sync_keyvault.py and sync_speech.py, which
scripts/gen_sync_clients.py writes from the asynchronous clients' methods)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")
C = TypeVar("C")


class LoopThread:
    """An event loop in a daemon thread: the synchronous clients' calls run on one, and the
    pytest plugin's trio on another."""

    def __init__(self, name: str = "cmk-sync-client") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    # (a coroutine's yield and send types are the event loop's business, not the caller's)
    def run(self, work: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run `work` on the loop and wait for it (at most `timeout` seconds), in the caller's
        context (so that a `deadline` block around a synchronous call applies to it)."""
        context = contextvars.copy_context()
        done: concurrent.futures.Future[T] = concurrent.futures.Future()
        started: list[asyncio.Task[T]] = []

        def start() -> None:
            task = self.loop.create_task(work, context=context)
            started.append(task)
            task.add_done_callback(lambda t: _settle(t, done))

        self.loop.call_soon_threadsafe(start)
        try:
            return done.result(timeout)
        except BaseException:
            if started and not done.done():  # interrupted (Ctrl-C): cancel the call too
                self.loop.call_soon_threadsafe(started[0].cancel)
            raise

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


def _settle(task: asyncio.Task[T], done: concurrent.futures.Future[T]) -> None:
    if task.cancelled():
        done.cancel()
    elif (error := task.exception()) is not None:
        done.set_exception(error)
    else:
        done.set_result(task.result())


class Blocking(Generic[C]):
    """Base of the synchronous clients: each holds its asynchronous client and the loop its
    calls run on. A coroutine method's twin is `self._runner.run(self._inner.method(...))`;
    an async iterator's is `yield from self._iterate(self._inner.method(...))`."""

    def __init__(self, inner: C, runner: LoopThread) -> None:
        self._inner = inner
        self._runner = runner

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._inner!r})"

    def _iterate(self, stream: AsyncIterator[T]) -> Iterator[T]:
        """`stream` as a plain iterator: each item awaited on the loop; when the loop over it
        stops early, the stream is closed there (which cancels its gRPC call)."""
        try:
            while True:
                try:
                    yield self._runner.run(_next(stream))
                except StopAsyncIteration:
                    return
        finally:
            # (a stream dropped after close() has nothing to end: its loop is gone)
            if isinstance(stream, AsyncGenerator) and not self._runner.loop.is_closed():
                self._runner.run(stream.aclose())


async def _next(stream: AsyncIterator[T]) -> T:
    # A coroutine around __anext__, as the loop's create_task wants one.
    return await stream.__anext__()
