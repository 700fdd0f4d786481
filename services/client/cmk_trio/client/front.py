"""The front door: one object for the three services, signed in once.

    async with CmkClient.connect("127.0.0.1:50051", keyvault="127.0.0.1:50052",
                                 speech="127.0.0.1:50053", credentials=creds, tls=tls) as cmk:
        tenant = await cmk.identity.create_tenant("Contoso")
        key = await cmk.vault.create_key("contoso-cmk", "cmk")
        with deadline(0.5):
            await cmk.vault.unwrap(key.key_id, wrapped)

and for scripts, the same without asyncio:

    with SyncCmkClient.connect("127.0.0.1:50051", keyvault=..., credentials=creds) as cmk:
        cmk.vault.wrap(key_id, plaintext)

The synchronous clients are made from the asynchronous ones' method lists (every public
coroutine becomes a blocking method, every async iterator a plain one), run on an event loop
of their own in a background thread; nothing is written twice.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import inspect
import threading
from collections.abc import Callable, Coroutine, Iterator
from types import TracebackType
from typing import Any, TypeVar

import grpc

from cmk_trio.client.calls import DEFAULT_TIMEOUT
from cmk_trio.client.channel import ChannelTls, open_channel
from cmk_trio.client.identity import ClientCredentials, IdentityClient
from cmk_trio.client.keyvault import KeyVaultClient
from cmk_trio.client.speech import SpeechClient
from cmk_trio.rpckit.clock import Clock

T = TypeVar("T")


class CmkClient:
    """The identity service, the key vault and speech, on one sign-in. `identity` is always
    there; `vault` and `speech` when their endpoints were given."""

    def __init__(
        self,
        identity: IdentityClient,
        vault: KeyVaultClient | None = None,
        speech: SpeechClient | None = None,
        channels: tuple[grpc.aio.Channel, ...] = (),
    ) -> None:
        self.identity = identity
        self._vault = vault
        self._speech = speech
        self._channels = channels

    @classmethod
    def connect(
        cls,
        identity: str,
        *,
        keyvault: str | None = None,
        speech: str | None = None,
        credentials: ClientCredentials | None = None,
        token: str | None = None,
        tls: ChannelTls | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retries: bool = True,
        clock: Clock | None = None,
    ) -> CmkClient:
        """Channels to the services at these endpoints ("host:port", or several replicas
        "host:port,host:port"), signed in with client `credentials` (tokens fetched and
        renewed per audience) or a fixed bearer `token`; with `tls`, over TLS (mutual when
        it has a client certificate). `timeout`: seconds each call may take (a `deadline`
        block overrides it). `retries`: gRPC retries idempotent calls on UNAVAILABLE."""
        if (credentials is None) == (token is None):
            raise ValueError("sign in with credentials or with a token (one of the two)")
        channels = [open_channel(identity, tls, retries=retries, peer="identity")]
        directory = IdentityClient(channels[0], credentials, token=token, clock=clock, timeout=timeout)
        vault = speech_client = None
        if keyvault:
            channels.append(open_channel(keyvault, tls, retries=retries, peer="keyvault"))
            vault = KeyVaultClient(channels[-1], directory.token_for, timeout=timeout)
        if speech:
            channels.append(open_channel(speech, tls, retries=retries, peer="speech"))
            speech_client = SpeechClient(channels[-1], directory.token_for, timeout=timeout)
        return cls(directory, vault, speech_client, tuple(channels))

    @property
    def vault(self) -> KeyVaultClient:
        if self._vault is None:
            raise ValueError("no key vault endpoint was given: CmkClient.connect(..., keyvault='host:port')")
        return self._vault

    @property
    def speech(self) -> SpeechClient:
        if self._speech is None:
            raise ValueError("no speech endpoint was given: CmkClient.connect(..., speech='host:port')")
        return self._speech

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()

    async def __aenter__(self) -> CmkClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.close()


class LoopThread:
    """An event loop in a daemon thread: the synchronous clients' calls run on one, and the
    pytest plugin's trio on another."""

    def __init__(self, name: str = "cmk-sync-client") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

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


class _Blocking:
    """Base of the synchronous clients: each holds its asynchronous client and the loop."""

    def __init__(self, inner: Any, runner: LoopThread) -> None:
        self._inner = inner
        self._runner = runner

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._inner!r})"


def _blocking_method(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def method(self: _Blocking, *args: Any, **kwargs: Any) -> Any:
        return self._runner.run(getattr(self._inner, name)(*args, **kwargs))

    return method


def _blocking_iterator(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def method(self: _Blocking, *args: Any, **kwargs: Any) -> Iterator[Any]:
        stream = getattr(self._inner, name)(*args, **kwargs)
        try:
            while True:
                try:
                    yield self._runner.run(stream.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            if not self._runner.loop.is_closed():  # (a stream dropped after close() has nothing to end)
                self._runner.run(stream.aclose())

    return method


def _passthrough(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def method(self: _Blocking, *args: Any, **kwargs: Any) -> Any:
        return getattr(self._inner, name)(*args, **kwargs)

    return method


@functools.cache
def blocking_class(async_class: type) -> type[_Blocking]:
    """The synchronous twin of an asynchronous client class, from its method list."""
    namespace: dict[str, Any] = {"__doc__": f"{async_class.__doc__}\n\n(Synchronous: each call blocks.)"}
    for name, member in inspect.getmembers(async_class):
        if name.startswith("_"):
            continue
        if inspect.isasyncgenfunction(member):
            namespace[name] = _blocking_iterator(name, member)
        elif inspect.iscoroutinefunction(member):
            namespace[name] = _blocking_method(name, member)
        elif inspect.isfunction(member):  # a plain method (forget_tokens): called as it is
            namespace[name] = _passthrough(name, member)
    return type(f"Sync{async_class.__name__}", (_Blocking,), namespace)


class SyncCmkClient:
    """CmkClient for scripts: the same methods, blocking. Its calls run on an event loop in
    a background thread of its own; close it (or use `with`) when done."""

    def __init__(self, runner: LoopThread, front: CmkClient) -> None:
        self._runner = runner
        self._front = front
        self.identity: Any = blocking_class(IdentityClient)(front.identity, runner)
        self._vault: Any = blocking_class(KeyVaultClient)(front._vault, runner) if front._vault else None
        self._speech: Any = blocking_class(SpeechClient)(front._speech, runner) if front._speech else None

    @classmethod
    def connect(cls, identity: str, **options: Any) -> SyncCmkClient:
        """As CmkClient.connect (the same keyword arguments)."""
        runner = LoopThread()

        async def make() -> CmkClient:  # (grpc.aio channels belong to the loop they are made on)
            return CmkClient.connect(identity, **options)

        try:
            return cls(runner, runner.run(make()))
        except BaseException:
            runner.close()
            raise

    @property
    def vault(self) -> Any:
        if self._vault is None:
            raise ValueError("no key vault endpoint was given: SyncCmkClient.connect(..., keyvault='host:port')")
        return self._vault

    @property
    def speech(self) -> Any:
        if self._speech is None:
            raise ValueError("no speech endpoint was given: SyncCmkClient.connect(..., speech='host:port')")
        return self._speech

    def close(self) -> None:
        try:
            self._runner.run(self._front.close())
        finally:
            self._runner.close()

    def __enter__(self) -> SyncCmkClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
