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

The synchronous clients (sync_identity.py, sync_keyvault.py, sync_speech.py) are generated
from the asynchronous ones by scripts/gen_sync_clients.py (every public coroutine becomes a
blocking method, every async iterator a plain one, with the same parameters and types) and
run on an event loop of their own in a background thread; nothing is written twice.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar

import grpc

from cmk_trio.client.blocking import LoopThread
from cmk_trio.client.calls import DEFAULT_TIMEOUT
from cmk_trio.client.channel import ChannelTls, open_channel
from cmk_trio.client.identity import ClientCredentials, IdentityClient
from cmk_trio.client.keyvault import KeyVaultClient
from cmk_trio.client.speech import SpeechClient
from cmk_trio.client.sync_identity import SyncIdentityClient
from cmk_trio.client.sync_keyvault import SyncKeyVaultClient
from cmk_trio.client.sync_speech import SyncSpeechClient
from cmk_trio.rpckit.clock import Clock

# LoopThread's home is cmk_trio.client.blocking; the pytest plugin imports it from here.
__all__ = ["CmkClient", "LoopThread", "SyncCmkClient"]

P = ParamSpec("P")
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


# (the Any is the method's self, whatever class it is defined in)
def _arguments_of(model: Callable[P, object]) -> Callable[[Callable[..., T]], Callable[Concatenate[Any, P], T]]:
    """The decorated method (cls or self first), typed as taking `model`'s arguments after it:
    for a method that passes its arguments on to `model`, so that they are written once."""

    def typed(method: Callable[..., T]) -> Callable[Concatenate[Any, P], T]:  # (self, as above)
        return method

    return typed


class SyncCmkClient:
    """CmkClient for scripts: the same methods, blocking. Its calls run on an event loop in
    a background thread of its own; close it (or use `with`) when done."""

    def __init__(self, runner: LoopThread, front: CmkClient) -> None:
        self._runner = runner
        self._front = front
        self.identity = SyncIdentityClient(front.identity, runner)
        self._vault = SyncKeyVaultClient(front._vault, runner) if front._vault else None
        self._speech = SyncSpeechClient(front._speech, runner) if front._speech else None

    @classmethod
    @_arguments_of(CmkClient.connect)
    def connect(cls, identity: str, **options: Any) -> SyncCmkClient:  # CmkClient.connect's, typed by the decorator
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
    def vault(self) -> SyncKeyVaultClient:
        if self._vault is None:
            raise ValueError("no key vault endpoint was given: SyncCmkClient.connect(..., keyvault='host:port')")
        return self._vault

    @property
    def speech(self) -> SyncSpeechClient:
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
