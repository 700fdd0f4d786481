"""Microsoft's SDKs against the trio with explicit endpoints: the one client-side setting that
makes Azure's host names reach the trio's HTTPS doors without touching the machine's name
resolution (no /etc/hosts, no proxy).

    from cmk_trio.client.azure import door_transport
    transport = door_transport("127.0.0.1:50055", ca=".cmk/tls/ca.crt")   # the key vault's door
    keys = KeyClient("https://contoso-cmk.vault.azure.net", credential, transport=transport)

A key id names its vault by host (https://{vault}.vault.azure.net/keys/...), and
CryptographyClient builds its own client from that URL, so each vault needs a name of its
own: the transport sends every host under the given suffixes to the door, while TLS still
checks the certificate against the name dialled (SNI and the check are the name's, only the
address is the door's) and the Host header keeps the name, which tells the door the vault.
For the asynchronous clients (azure.keyvault.keys.aio), `door_aio_transport` does the same
on aiohttp, by a resolver that answers the names with the door's address and port.
Needs azure-core (the SDKs bring it; `pip install 'cmk-trio[azure]'`).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import requests
from aiohttp.abc import AbstractResolver, ResolveResult
from azure.core.pipeline.transport import AioHttpTransport, RequestsTransport
from requests.adapters import HTTPAdapter

VAULT_SUFFIX = "vault.azure.net"


def _address(door: str) -> tuple[str, int]:
    host, _, port = door.rpartition(":")
    if not host or not (port.isascii() and port.isdigit()):
        raise ValueError(f"the door is host:port, not {door!r}")
    return host.strip("[]"), int(port)


def _under(host: str | None, suffixes: Iterable[str]) -> bool:
    """Whether `host` is one of the names under `suffixes` (or a suffix itself)."""
    name = (host or "").lower()
    return any(name == s or name.endswith("." + s) for s in (s.lower().lstrip(".") for s in suffixes))


class DoorAdapter(HTTPAdapter):
    """requests' adapter that connects the hosts under `suffixes` to `door` (host:port)."""

    def __init__(self, door: str, suffixes: Iterable[str] = (VAULT_SUFFIX,)) -> None:
        self._door, self._suffixes = _address(door), tuple(suffixes)
        super().__init__()

    def routes(self, host: str | None) -> bool:
        """Whether requests to `host` go to the door."""
        return _under(host, self._suffixes)

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float | None, float | None] | None = None,
        verify: bool | str = True,
        cert: str | tuple[str, str] | None = None,
        proxies: dict[str, str] | None = None,
    ) -> requests.Response:
        url = urlsplit(request.url or "")
        if self.routes(url.hostname):
            request.headers["Host"] = url.netloc  # the vault, for the door
        return super().send(request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies)

    def get_connection_with_tls_context(
        self,
        request: requests.PreparedRequest,
        verify: bool | str,
        proxies: dict[str, str] | None = None,
        cert: str | tuple[str, str] | None = None,
    ) -> Any:  # (urllib3's connection pool, as requests returns it)
        url = urlsplit(request.url or "")
        if not self.routes(url.hostname):
            return super().get_connection_with_tls_context(request, verify, proxies, cert)
        _, pool_kwargs = self.build_connection_pool_key_attributes(request, verify, cert)
        pool_kwargs["server_hostname"] = url.hostname  # SNI, and the certificate checked, are the name's
        pool_kwargs["assert_hostname"] = url.hostname
        host, port = self._door
        return self.poolmanager.connection_from_host(host, port, scheme="https", pool_kwargs=pool_kwargs)


def door_session(door: str, suffixes: Iterable[str] = (VAULT_SUFFIX,)) -> requests.Session:
    """A requests session whose HTTPS requests to hosts under `suffixes` reach `door`."""
    session = requests.Session()
    session.mount("https://", DoorAdapter(door, suffixes))
    return session


def door_transport(
    door: str, *, ca: str | Path | None = None, suffixes: Iterable[str] = (VAULT_SUFFIX,)
) -> RequestsTransport:
    """An azure-core transport for the synchronous SDK clients (transport=...), trusting the
    CA file `ca` (the trio's development CA; None: the system's). A client given its own
    transport takes the CA from it, not from its connection_verify."""
    verify: bool | str = str(ca) if ca is not None else True
    return RequestsTransport(session=door_session(door, suffixes), session_owner=True, connection_verify=verify)


class DoorResolver(AbstractResolver):
    """aiohttp's resolver that answers the hosts under `suffixes` with `door` (host:port),
    port included: aiohttp then connects there, with the name for SNI and the certificate."""

    def __init__(self, door: str, suffixes: Iterable[str] = (VAULT_SUFFIX,)) -> None:
        self._door, self._suffixes = _address(door), tuple(suffixes)
        self._others = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if not _under(host, self._suffixes):
            return await self._others.resolve(host, port, family)
        address, door_port = self._door
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [ResolveResult(hostname=host, host=address, port=door_port, family=family, proto=0,
                              flags=socket.AI_NUMERICHOST)]  # fmt: skip

    async def close(self) -> None:
        await self._others.close()


def door_aio_transport(
    door: str, *, ca: str | Path | None = None, suffixes: Iterable[str] = (VAULT_SUFFIX,)
) -> AioHttpTransport:
    """An azure-core transport for the asynchronous SDK clients (transport=...), trusting the
    CA file `ca` (None: the system's). Made inside the event loop that will use it."""
    context = ssl.create_default_context(cafile=str(ca) if ca is not None else None)
    connector = aiohttp.TCPConnector(resolver=DoorResolver(door, suffixes), ssl=context)
    return AioHttpTransport(session=aiohttp.ClientSession(connector=connector), session_owner=True)
