"""A network partition that a test makes itself, on loopback: a relay in front of a port
that can stop delivering without telling either side."""

from __future__ import annotations

import asyncio


class Link:
    """A TCP relay between two services that can be cut silently, as a dropped route or a
    pulled cable does it: connections stay open and bytes are taken but never delivered, so
    neither side is told (no reset); only keepalives and deadlines can find out. Healing
    closes the connections that lived through the cut (their streams are broken) and carries
    new ones again. It runs in the test's event loop, in front of the target's port."""

    def __init__(self, target_port: int, *, delay: float = 0.0) -> None:
        self.target_port = target_port
        self.delay = delay
        """Seconds each chunk waits before it is delivered, each way (a link across the world)."""
        self.port = 0
        self.cut = False
        self._server: asyncio.Server | None = None
        self._connections: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter, list[bool]]] = []

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def partition(self) -> None:
        self.cut = True
        for _, _, cut in self._connections:
            cut[0] = True

    def heal(self) -> None:
        self.cut = False
        for client, upstream, cut in list(self._connections):
            if cut[0]:
                client.close()
                upstream.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for client, upstream, _ in self._connections:
            client.close()
            upstream.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()  # the target is down: refused, as it would be without the link
            return
        entry = (writer, up_writer, [self.cut])
        self._connections.append(entry)
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer, entry[2], self.delay), self._pipe(up_reader, writer, entry[2], self.delay)
            )
        finally:
            self._connections.remove(entry)
            writer.close()
            up_writer.close()

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter, cut: list[bool], delay: float) -> None:
        try:
            while data := await source.read(65536):
                if cut[0]:
                    continue  # taken, never delivered
                if delay:
                    await asyncio.sleep(delay)
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            sink.close()
