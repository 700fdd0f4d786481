"""A flood of calls from one client, in a process of its own (so that the client measuring
another tenant's latency does not share its event loop), for tests/security/test_fairness.py.

    python -m tests.security.flood < spec.json

The spec (JSON on stdin) names the kind of flood, where to send it and as whom:
    kind          "principals": tenant B's principals list their tenant's principals (with tokens)
                  "issue_token": gRPC IssueToken with a client's credentials (anonymous calls)
                  "https_token": identity's HTTPS token endpoint with the same (anonymous requests)
    endpoint      identity's gRPC endpoint; tls_dir: the development PKI (mutual TLS)
    oidc_url      identity's HTTPS base URL (https_token)
    tenant_id     the tenant whose principals are listed, or that the credentials sign in to
    credentials   [{"tenant_id", "client_id", "client_secret"}, ...]
    concurrency   calls in flight at once: each of that many workers sends its next call as soon
                  as the last is answered, refused or not (an attacker ignores the retry advice)
    connections   gRPC connections (channels) the workers are spread over (default 1)

It prints "flooding" once the first answers are back, floods until SIGTERM, then prints its
figures as one line of JSON: calls answered, by outcome (OK, or the refusal's reason)."""

from __future__ import annotations

import asyncio
import json
import signal
import ssl
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import grpc

from cmk_trio.client.identity import ClientCredentials, IdentityClient
from cmk_trio.proto.identity.v1 import identity_service_pb2 as pb
from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.channels import ChannelTls, open_channel
from cmk_trio.rpckit.devca import DevPki
from cmk_trio.rpckit.status import error_info_of

CALL_TIMEOUT_S = 30.0  # a flood call may wait long; it is not what is measured


def client_tls(tls_dir: Path) -> ChannelTls:
    """The development PKI's client certificate, which `cmk up`'s mutual TLS asks for."""
    pki = DevPki(tls_dir)
    cli = pki.identity("cli")
    return ChannelTls(pki.ca_file, cli.cert_file, cli.key_file)


async def flood(spec: dict[str, Any]) -> dict[str, Any]:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    outcomes: Counter[str] = Counter()
    first = asyncio.Event()
    tls_dir = Path(spec["tls_dir"])
    credentials = [ClientCredentials(**c) for c in spec["credentials"]]
    channels = [open_channel(spec["endpoint"], client_tls(tls_dir)) for _ in range(spec.get("connections", 1))]
    session: aiohttp.ClientSession | None = None
    try:
        if spec["kind"] == "https_token":
            trust = ssl.create_default_context(cafile=str(DevPki(tls_dir).ca_file))
            connector = aiohttp.TCPConnector(ssl=trust, limit=spec["concurrency"])
            session = aiohttp.ClientSession(connector=connector)
            send = _https_sender(spec, session, credentials[0])
        else:
            send = await _sender(spec, channels, credentials)

        async def worker(n: int) -> None:
            while not stop.is_set():
                outcomes[await send(n)] += 1
                first.set()

        started = time.monotonic()
        workers = [asyncio.ensure_future(worker(n)) for n in range(spec["concurrency"])]
        await first.wait()
        print("flooding", flush=True)
        await stop.wait()
        seconds = time.monotonic() - started
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    finally:
        if session is not None:
            await session.close()
        for channel in channels:
            await channel.close()
    return {"kind": spec["kind"], "concurrency": spec["concurrency"], "seconds": round(seconds, 2),
            "answered": sum(outcomes.values()), "outcomes": dict(outcomes.most_common())}  # fmt: skip


async def _sender(
    spec: dict[str, Any], channels: list[grpc.aio.Channel], credentials: list[ClientCredentials]
) -> Callable[[int], Awaitable[str]]:
    if spec["kind"] == "principals":
        signed_in = [IdentityClient(channels[0], c) for c in credentials]
        # Signed in before the flood: the flood is of listing, not of signing in.
        tokens = [await client.token_for(audiences.DIRECTORY) for client in signed_in]
        stubs = [IdentityClient(channel).directory for channel in channels]
        request = pb.ListPrincipalsRequest(parent=f"tenants/{spec['tenant_id']}")

        async def list_principals(n: int) -> str:
            metadata = (("authorization", f"Bearer {tokens[n % len(tokens)]}"),)
            stub = stubs[n % len(stubs)]
            return await _outcome(stub.ListPrincipals(request, metadata=metadata, timeout=CALL_TIMEOUT_S))

        return list_principals
    token_stubs = [IdentityClient(channel).tokens for channel in channels]
    c = credentials[0]
    sign_in = pb.IssueTokenRequest(
        tenant_id=c.tenant_id, client_id=c.client_id, client_secret=c.client_secret, audience=audiences.DIRECTORY
    )

    async def issue_token(n: int) -> str:
        return await _outcome(token_stubs[n % len(token_stubs)].IssueToken(sign_in, timeout=CALL_TIMEOUT_S))

    return issue_token


async def _outcome(call: Awaitable[Any]) -> str:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        info = error_info_of(exc)
        return info.reason if info is not None else exc.code().name
    return "OK"


def _https_sender(
    spec: dict[str, Any], session: aiohttp.ClientSession, credentials: ClientCredentials
) -> Callable[[int], Awaitable[str]]:
    url = f"{spec['oidc_url']}/{credentials.tenant_id}/oauth2/v2.0/token"
    form = {"grant_type": "client_credentials", "client_id": credentials.client_id,
            "client_secret": credentials.client_secret, "scope": f"{audiences.VAULT}/.default"}  # fmt: skip

    async def post(n: int) -> str:
        try:
            async with session.post(url, data=form, timeout=aiohttp.ClientTimeout(total=CALL_TIMEOUT_S)) as response:
                if response.status == 200:
                    return "OK"
                body = await response.json(content_type=None)
                return str(body.get("reason") or response.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return type(exc).__name__

    return post


def main() -> None:
    spec = json.loads(sys.stdin.readline())
    try:
        import uvloop  # the strongest client this machine makes, as an attacker would use
    except ImportError:
        figures = asyncio.run(flood(spec))
    else:
        figures = uvloop.run(flood(spec))
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
