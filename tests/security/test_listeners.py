"""Slow clients and connection floods (issue 22, items 5 and 9): after its TLS handshake a
connection to identity's HTTPS port that sent part of a request head stayed open for good,
and one anonymous client opened 978 of them and used up the process's 1,024 descriptors, so
that the trio refused everything, health checks included; and aiohttp logged each malformed
request at ERROR with a traceback quoting the request's bytes, and named its version in a
`Server` header.

Now every listener has a time by which a connection must have sent its request head (TLS
handshake included), an idle timeout, and caps on connections in total and (HTTP) per peer
address, beyond which it closes new connections at once; a process raises its soft
descriptor limit at start, says what it has, and keeps a reserve that listeners cannot take.
Loopback has many addresses (127.0.0.0/8), so a flood from 127.0.0.2 is another peer than a
client on 127.0.0.1.

With CMK_LISTENER_REPORT naming a file (`python3 dev.py security`), the measurement of what
a slow client holds runs with the product's default limits and writes its figures there for
SECURITY.md; otherwise it runs with short limits, bounded."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import resource
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cmk_trio.identity.server import IdentityServer, build_server
from cmk_trio.rpckit.channels import ChannelTls, open_channel
from cmk_trio.rpckit.config import TlsConfig
from cmk_trio.rpckit.devca import DevPki, ensure_dev_pki
from cmk_trio.rpckit.listeners import ConnectionLimits, Descriptors
from cmk_trio.rpckit.logs import configure_logging
from cmk_trio.rpckit.server import start_server
from tests.conftest import identity_config
from tests.waiting import eventually

FLOOD_PEER = "127.0.0.2"
GUARD = 20.0
"""Seconds a test waits for the server to close a connection before it calls it held (a
generous bound, not a measure of speed)."""
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
PARTIAL_HEAD = b"GET /tenant/v2.0/.well-known/openid-configuration HTTP/1.1\r\nHost: localhost\r\nX-Slow: "


async def _true(condition: bool) -> bool | None:
    return True if condition else None


@dataclass
class Held:
    """What became of one connection a slow client opened."""

    refused: bool
    """Closed by the server before the client's first byte could do anything (at once)."""
    closed_after: float | None
    """Seconds from connecting until the server closed it (None: still open at the end)."""


async def _open(host: str, port: int, source: str | None, tls: ssl.SSLContext | None) -> Any:
    return await asyncio.open_connection(
        host, port, local_addr=(source, 0) if source else None, ssl=tls, server_hostname="localhost" if tls else None
    )


async def slow_client(
    port: int,
    payload: bytes,
    *,
    source: str | None = FLOOD_PEER,
    tls: ssl.SSLContext | None = None,
    within: float = GUARD,
    every: float = 0.5,
    at_once: float = 1.0,
) -> Held:
    """Connect (from `source`, with TLS when `tls`), then send `payload` a byte every `every`
    seconds until the server closes the connection or `within` seconds have passed. Closed
    within `at_once` seconds, it counts as refused."""
    start = time.monotonic()
    try:
        reader, writer = await _open("127.0.0.1", port, source, tls)
    except (ConnectionError, ssl.SSLError, OSError):
        return Held(refused=True, closed_after=time.monotonic() - start)
    try:
        for i in range(10**9):
            try:
                got = await asyncio.wait_for(reader.read(4096), every)
            except TimeoutError:
                got = None
            except (ConnectionError, ssl.SSLError, OSError):
                got = b""
            if got == b"":
                elapsed = time.monotonic() - start
                return Held(refused=elapsed < at_once, closed_after=elapsed)
            if time.monotonic() - start >= within:
                return Held(refused=False, closed_after=None)
            if i < len(payload):
                try:
                    writer.write(payload[i : i + 1])
                except (ConnectionError, OSError):
                    pass
    finally:
        writer.close()
    raise AssertionError("unreachable")


def client_tls(pki: DevPki) -> ssl.SSLContext:
    """An HTTPS client of identity: trusts the development CA, shows no certificate."""
    return ssl.create_default_context(cafile=str(pki.ca_file))


async def https_get(port: int, tls: ssl.SSLContext, path: str = "/") -> tuple[str, dict[str, str]]:
    """A whole request from 127.0.0.1; the status line and headers of the answer."""
    reader, writer = await _open("127.0.0.1", port, None, tls)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), GUARD)).decode()
    finally:
        writer.close()
    status, *lines = head.strip().split("\r\n")
    return status, {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}


async def health_check(endpoint: str, pki: DevPki) -> int:
    cli = pki.identity("cli")
    channel = open_channel(endpoint, ChannelTls(pki.ca_file, cli.cert_file, cli.key_file))
    try:
        stub: Any = health_pb2_grpc.HealthStub(channel)  # the stub's methods are set at run time
        answer = await stub.Check(health_pb2.HealthCheckRequest(), timeout=GUARD)
        return int(answer.status)
    finally:
        await channel.close()


@pytest.fixture
def pki(tmp_path: Path) -> DevPki:
    return ensure_dev_pki(tmp_path / "tls")


@pytest.fixture
def limits_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Short limits for a bounded test (a test may change them before the server starts)."""
    values = {"CMK_HEAD_TIMEOUT_SECONDS": "3", "CMK_IDLE_TIMEOUT_SECONDS": "5",
              "CMK_MAX_CONNECTIONS": "40", "CMK_MAX_CONNECTIONS_PER_PEER": "6"}  # fmt: skip
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture
async def identity_https(
    tmp_path: Path, pki: DevPki, clock: Any, limits_env: dict[str, str]
) -> AsyncIterator[IdentityServer]:
    """Identity with mutual TLS on gRPC and HTTPS on its HTTP port, with `limits_env`."""
    files = pki.identity("identity")
    config = identity_config(
        tmp_path / "identity", http_port=0, tls=TlsConfig(files.cert_file, files.key_file, pki.ca_file)
    )
    server = await build_server(config, clock=clock)
    try:
        yield server
    finally:
        await server.stop(grace=0)


async def test_a_slow_request_head_on_https_is_cut_off_after_the_head_timeout(identity_https, pki):
    assert identity_https.http is not None
    port, tls = identity_https.http.port, client_tls(pki)
    # One trickles a request head after its handshake, one does after empty lines (which a
    # parser skips: they once stopped the clock), one never starts its handshake, one sends
    # half a TLS hello; each is closed by the server (head timeout 3 s, guard 20 s).
    trickled, blank_first, silent, half_hello = await asyncio.gather(
        slow_client(port, PARTIAL_HEAD, tls=tls),
        slow_client(port, b"\r\n\r\n\n\n" + PARTIAL_HEAD, tls=tls),
        slow_client(port, b""),
        slow_client(port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
    )
    for held in (trickled, blank_first, silent, half_hello):
        assert not held.refused and held.closed_after is not None, held
    assert identity_https.http.site.count.cut_off == 4
    assert identity_https.http.site.count.open == 0
    status, _ = await https_get(port, tls, "/no-such-tenant/v2.0/.well-known/openid-configuration")
    assert status.startswith("HTTP/1.1 400")  # (a whole request is answered: the tenant is not a UUID)


async def test_a_flood_from_one_peer_is_refused_beyond_its_cap_while_others_get_through(identity_https, pki):
    assert identity_https.http is not None
    port, tls, count = identity_https.http.port, client_tls(pki), identity_https.http.site.count
    flood = [asyncio.ensure_future(slow_client(port, PARTIAL_HEAD)) for _ in range(20)]
    await eventually(lambda: _true(count.open + count.refused >= 20), "twenty connections accepted or refused")
    assert (count.by_peer.get(FLOOD_PEER), count.refused) == (6, 14)
    # Meanwhile a client from another address is answered, and the gRPC health check too.
    status, _ = await https_get(port, tls, "/no-such-tenant/discovery/v2.0/keys")
    assert status.startswith("HTTP/1.1 400")
    assert await health_check(identity_https.endpoint, pki) == health_pb2.HealthCheckResponse.SERVING
    held = await asyncio.gather(*flood)
    assert sum(h.refused for h in held) == 14
    assert all(h.closed_after is not None for h in held)  # the six let in are cut off at the head timeout


async def test_a_flood_beyond_the_listeners_total_is_refused_and_the_process_keeps_serving(
    identity_https, pki, limits_env
):
    """Forty connections is this listener's total (from four addresses at most 6 each: 24
    held at once is under it, so 6 more addresses fill it); the next is refused at once."""
    assert identity_https.http is not None
    port, count = identity_https.http.port, identity_https.http.site.count
    sources = [f"127.0.0.{n}" for n in range(2, 12)]  # ten peers of 6: sixty tries, forty let in
    flood = [asyncio.ensure_future(slow_client(port, b"", source=s)) for s in sources for _ in range(6)]
    await eventually(lambda: _true(count.open + count.refused >= 60), "sixty connections accepted or refused")
    assert (count.open, count.refused) == (40, 20)
    assert await health_check(identity_https.endpoint, pki) == health_pb2.HealthCheckResponse.SERVING
    await asyncio.gather(*flood)
    assert count.open == 0


async def test_grpc_closes_connections_beyond_its_cap_and_slow_handshakes(pki):
    """gRPC core has a total cap and a handshake timeout (no cap per peer): a slow client's
    surplus connections are closed at once, the rest when their handshake is not done in time."""
    files = pki.identity("identity")
    limits = ConnectionLimits(head_timeout=1, idle_timeout=5, max_connections=5, max_per_peer=5)
    running = await start_server(
        register=lambda server: None, service_names=(), interceptors=(),
        tls=TlsConfig(files.cert_file, files.key_file, pki.ca_file), connections=limits,
    )  # fmt: skip
    try:
        held = await asyncio.gather(*(slow_client(running.port, b"\x16\x03\x01\x02\x00\x01") for _ in range(8)))
    finally:
        await running.stop(0)
    assert sum(h.refused for h in held) == 3, held
    assert all(h.closed_after is not None for h in held), held


async def test_grpc_keeps_each_peer_to_its_cap_while_others_get_through(pki):
    """gRPC core has no cap per peer: one address opened connections up to the listener's
    total and held them (each with a call whose request never came, it is never idle). Now the
    newest of a peer's connections beyond its cap are closed within a moment, those within it
    are left alone, and another address is served meanwhile (the handshake timeout here is
    long, so that what closes them can only be the cap)."""
    files = pki.identity("identity")
    limits = ConnectionLimits(head_timeout=60, idle_timeout=60, max_connections=40, max_per_peer=4)
    running = await start_server(
        register=lambda server: None, service_names=(), interceptors=(),
        tls=TlsConfig(files.cert_file, files.key_file, pki.ca_file), connections=limits,
    )  # fmt: skip
    cap = running.peer_cap
    assert cap is not None and cap.available
    try:
        first = [asyncio.ensure_future(slow_client(running.port, b"", within=6)) for _ in range(4)]

        async def seen_four() -> bool | None:  # (a look that sees them before the others exist)
            return await _true(sum(c.local_port == running.port for c in cap.connections()[0]) >= 4)

        await eventually(seen_four, "the first four seen: the oldest, within the cap")
        rest = [asyncio.ensure_future(slow_client(running.port, b"", within=6)) for _ in range(8)]
        await eventually(lambda: _true(cap.closed >= 8), "the eight beyond the cap closed")
        assert await health_check(f"127.0.0.1:{running.port}", pki) == health_pb2.HealthCheckResponse.SERVING
        held_first, held_rest = await asyncio.gather(*first), await asyncio.gather(*rest)
    finally:
        await running.stop(0)
    assert all(h.closed_after is None for h in held_first), held_first
    assert all(h.closed_after is not None for h in held_rest), held_rest
    assert cap.closed == 8


def test_a_service_raises_its_soft_descriptor_limit_at_start_and_says_what_it_has(tmp_path):
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard <= 256:
        pytest.skip("needs a finite hard descriptor limit above 256")

    # The limit is lowered by a small Python that then execs the service, not by preexec_fn: that
    # would make this gRPC process fork() rather than vfork(), which gRPC does not survive in the child.
    lower = (
        "import os, resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, (256, int(sys.argv[1])));"
        " os.execv(sys.executable, [sys.executable, '-m', 'cmk_trio.identity'])"
    )
    env = {**os.environ, "CMK_DATA_DIR": str(tmp_path / "data"), "CMK_IDENTITY_PORT": "0",
           "CMK_SECRET_HASH_COST": "10", "CMK_DATABASE_URL": ""}  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-c", lower, str(hard)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env,
    )  # fmt: skip
    try:
        assert process.stdout is not None and process.stdout.readline()  # (it announced that it serves)
    finally:
        process.terminate()
        _, err = process.communicate(timeout=GUARD)
    said = [json.loads(line) for line in err.splitlines() if '"file descriptors"' in line]
    assert len(said) == 1, err
    have = Descriptors(hard)
    assert (said[0]["fd_limit"], said[0]["fd_limit_raised_from"]) == (hard, 256)
    assert (said[0]["fd_reserve"], said[0]["max_connections_per_listener"]) == (have.reserve, have.per_listener)


def test_listener_caps_leave_a_reserve_whatever_the_limit():
    for limit in (256, 1024, 4096, 20000, 1 << 20):
        have = Descriptors(limit)
        assert have.reserve >= 64 and have.reserve + 8 * have.per_listener <= limit
        limits = ConnectionLimits.from_env({"CMK_MAX_CONNECTIONS": "100000"}, have)
        assert limits.max_connections == have.per_listener and limits.max_per_peer <= limits.max_connections
    # At the review's 1,024: the four listeners of `cmk up` hold at most 384, leaving 640.
    assert 4 * Descriptors(1024).per_listener == 384


async def test_malformed_https_requests_are_logged_rate_limited_without_their_bytes(identity_https, pki):
    assert identity_https.http is not None
    port, tls = identity_https.http.port, client_tls(pki)
    marker = "c2VjcmV0LWJhc2ljLXZhbHVl"  # what an over-long Basic value would carry
    stream = io.StringIO()
    configure_logging("identity", "INFO", stream)
    statuses: list[str] = []
    try:
        for i in range(500):
            reader, writer = await _open("127.0.0.1", port, None, tls)
            if i % 2:  # a header line longer than any we take
                bad = f"Authorization: Basic {marker * 400}\r\n"
            else:  # a header name with a character no header name has
                bad = f"X-{marker}\x01: Basic {marker}\r\n"
            writer.write(f"POST /t/oauth2/v2.0/token HTTP/1.1\r\nHost: localhost\r\n{bad}\r\n".encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), GUARD)
            statuses.append(head.split(b"\r\n", 1)[0].decode())
            assert b"aiohttp" not in head and b"Python" not in head, head
            writer.close()
    finally:
        logging.getLogger().handlers.clear()
    assert {s.split(" ", 2)[1] for s in statuses} == {"400"}, set(statuses)
    text = stream.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    refused = [e for e in lines if e["message"] == "malformed HTTP request refused"]
    assert 1 <= len(refused) <= 40, len(refused)  # (a few kinds of fault, each at most 10 a minute)
    assert len(lines) <= 50, len(lines)
    assert marker not in text and "Traceback" not in text and "Basic" not in text


async def test_no_answer_names_the_servers_version(identity_https, pki):
    assert identity_https.http is not None
    port, tls = identity_https.http.port, client_tls(pki)
    answers = [
        await https_get(port, tls, "/no-such-tenant/v2.0/.well-known/openid-configuration"),  # a refusal
        await https_get(port, tls, "/nothing/here"),  # no such path
    ]
    reader, writer = await _open("127.0.0.1", port, None, tls)
    writer.write(b"GET / HTTP/1.1\r\nHost: localhost\r\nBad Header: x\r\n\r\n")  # the parser refuses it
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), GUARD)).decode()
    writer.close()
    status, *lines = head.strip().split("\r\n")
    answers.append((status, {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}))
    assert [a[0].split(" ")[1] for a in answers] == ["400", "404", "400"]
    for _, headers in answers:
        assert headers.get("server") == "cmk-trio", headers


@dataclass
class SlowClientFigures:
    """What one slow client got from a listener: it opened `tried` connections at once from
    one address and trickled a byte into each every half second."""

    listener: str
    tried: int
    held: int
    """Let in (held by the client until the server cut them off)."""
    refused: int
    """Closed by the server at once."""
    cut_off_within: float | None
    """Seconds by which the server had closed every connection it let in (None: some were
    still open when the client gave up)."""
    still_open: int
    served_meanwhile: bool
    """Whether a client from another address, and a health check, were answered meanwhile."""


def figures_of(listener: str, held: list[Held], served: bool) -> SlowClientFigures:
    let_in = [h for h in held if not h.refused]
    open_at_end = sum(h.closed_after is None for h in let_in)
    latest = max((h.closed_after or 0.0 for h in let_in), default=0.0)
    return SlowClientFigures(
        listener, len(held), len(let_in), len(held) - len(let_in),
        None if open_at_end else round(latest, 1), open_at_end, served,
    )  # fmt: skip


async def measure_slow_client(
    server: IdentityServer, pki: DevPki, tries: int, limits: ConnectionLimits
) -> list[SlowClientFigures]:
    """One slow client against identity's HTTPS port (completing TLS, then trickling a
    request head) and against its gRPC port (trickling a TLS hello: it has no client
    certificate); meanwhile a client from 127.0.0.1 asks for a document and a health check.
    A connection closed within half the head timeout was refused (on gRPC, beyond the peer's
    cap, it is closed once the process sees it, not at its accept)."""
    assert server.http is not None
    tls = client_tls(pki)
    grpc_port = server.port
    hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64)
    within, at_once = limits.head_timeout + 15, limits.head_timeout / 2
    https = [asyncio.ensure_future(slow_client(server.http.port, PARTIAL_HEAD, tls=tls, within=within,
                                               at_once=at_once)) for _ in range(tries)]  # fmt: skip
    grpc_slow = [asyncio.ensure_future(slow_client(grpc_port, hello, within=within, at_once=at_once))
                 for _ in range(tries)]  # fmt: skip
    await asyncio.sleep(1.0)  # (the flood is in place)
    status, _ = await https_get(server.http.port, tls, "/no-such-tenant/discovery/v2.0/keys")
    served = status.startswith("HTTP/1.1 400")
    served = served and await health_check(server.endpoint, pki) == health_pb2.HealthCheckResponse.SERVING
    return [figures_of("identity HTTPS", await asyncio.gather(*https), served),
            figures_of("identity gRPC", await asyncio.gather(*grpc_slow), served)]  # fmt: skip


@pytest.fixture
def report_limits(monkeypatch: pytest.MonkeyPatch, limits_env: dict[str, str]) -> bool:
    """For the report (CMK_LISTENER_REPORT set), the product's default limits; else the short ones."""
    if not os.environ.get("CMK_LISTENER_REPORT"):
        return False
    for name in limits_env:
        monkeypatch.delenv(name)
    return True


@pytest.fixture
async def measured_identity(report_limits, tmp_path: Path, pki: DevPki, clock: Any) -> AsyncIterator[IdentityServer]:
    files = pki.identity("identity")
    config = identity_config(
        tmp_path / "identity", http_port=0, tls=TlsConfig(files.cert_file, files.key_file, pki.ca_file)
    )
    server = await build_server(config, clock=clock)
    try:
        yield server
    finally:
        await server.stop(grace=0)


@pytest.mark.timeout(180)
async def test_what_a_slow_client_holds_and_for_how_long(measured_identity, pki, report_limits):
    """The figure for SECURITY.md: connections a slow client holds before it is cut off, and
    how long. Bounded here (20 connections, the short limits); in full with CMK_LISTENER_REPORT
    (300 connections, the default limits)."""
    limits = ConnectionLimits.from_env(os.environ)
    tries = 300 if report_limits else 20
    figures = await measure_slow_client(measured_identity, pki, tries, limits)
    for figure in figures:
        assert figure.held == min(tries, limits.max_per_peer) and figure.refused == tries - figure.held, figure
    for figure in figures:
        assert figure.still_open == 0 and figure.served_meanwhile, figure
    report = os.environ.get("CMK_LISTENER_REPORT")
    if report:
        content = {"limits": {"head_timeout": limits.head_timeout, "idle_timeout": limits.idle_timeout,
                              "max_connections": limits.max_connections, "max_per_peer": limits.max_per_peer},
                   "descriptors": {"limit": Descriptors.current().limit, "reserve": Descriptors.current().reserve,
                                   "per_listener": Descriptors.current().per_listener},
                   "figures": [vars(f) for f in figures]}  # fmt: skip
        _write(Path(report), json.dumps(content, indent=2))


def _write(path: Path, text: str) -> None:
    path.write_text(text)


async def test_the_metrics_listener_is_guarded_and_names_no_version(tmp_path, clock, limits_env):
    """Prometheus's own server had no limits at all (a thread per connection, held for good)
    and named its version; /metrics is now a listener like the others."""
    server = await build_server(identity_config(tmp_path / "identity", metrics_port=0), clock=clock)
    try:
        assert server.metrics_port is not None
        reader, writer = await _open("127.0.0.1", server.metrics_port, None, None)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), GUARD)
        writer.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"\r\nServer: cmk-trio\r\n" in head, head
        assert b"grpc_server_started_total" in body or b"process_open_fds" in body
        held = await slow_client(server.metrics_port, PARTIAL_HEAD)
        assert not held.refused and held.closed_after is not None
    finally:
        await server.stop(grace=0)
