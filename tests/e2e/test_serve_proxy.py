"""`cmk serve proxy`: the CONNECT proxy as a process of its own (as compose runs it), its
routes from the command line or the environment, the listeners' connection limits, its
health answer and the probe that asks it, and a graceful stop."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest

from tests.e2e.conftest import CMK


@pytest.fixture
async def door() -> AsyncIterator[asyncio.Server]:
    """A stand-in door that echoes what it reads, upper-cased."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            writer.write(data.upper())
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    try:
        yield server
    finally:
        server.close()
        await server.wait_closed()


async def probe(port: int) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cmk_trio.rpckit.probe", "--proxy", str(port), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    return await process.wait(), out.decode().strip()


async def start(args: list[str], env: dict[str, str]) -> tuple[asyncio.subprocess.Process, dict[str, object]]:
    process = await asyncio.create_subprocess_exec(
        *CMK, "serve", "proxy", "--port", "0", "--output", "json", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 30)
    if not line:
        raise AssertionError((await process.communicate())[1].decode())
    return process, json.loads(line)


async def stop(process: asyncio.subprocess.Process) -> str:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(process.communicate(), 15)
    assert process.returncode == 0, err.decode()
    return err.decode()


async def test_serve_proxy_tunnels_its_routes_and_says_when_its_doors_answer(
    door: asyncio.Server, env: dict[str, str]
) -> None:
    door_port = door.sockets[0].getsockname()[1]
    process, banner = await start(["--route", f"*.vault.azure.net=127.0.0.1:{door_port}",
                                   "--route", f"login.microsoftonline.com=127.0.0.1:{door_port}"], env)  # fmt: skip
    try:
        assert banner["routes"] == {"*.vault.azure.net": f"127.0.0.1:{door_port}",
                                    "login.microsoftonline.com": f"127.0.0.1:{door_port}"}  # fmt: skip
        port = int(str(banner["endpoint"]).rpartition(":")[2])
        assert banner["proxy"] == f"http://127.0.0.1:{port}"
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"CONNECT contoso.vault.azure.net:443 HTTP/1.1\r\n\r\n")
        assert await asyncio.wait_for(reader.readline(), 5) == b"HTTP/1.1 200 Connection Established\r\n"
        await reader.readline()
        writer.write(b"through\n")
        assert await asyncio.wait_for(reader.readline(), 5) == b"THROUGH\n"
        writer.close()
        assert await probe(port) == (0, "SERVING")
        door.close()  # the door goes away: the proxy is up, but not ready
        await door.wait_closed()
        code, said = await probe(port)
        assert code == 1 and said == f"NOT_SERVING: no answer from 127.0.0.1:{door_port}", said
    finally:
        err = await stop(process)
    assert "proxy: stopping" in err
    code, said = await probe(port)  # nothing listening any more
    assert code == 1 and said.startswith("UNREACHABLE"), said


async def test_routes_and_limits_from_the_environment(door: asyncio.Server, env: dict[str, str]) -> None:
    door_port = door.sockets[0].getsockname()[1]
    env = env | {"CMK_PROXY_ROUTES": f"a.example=127.0.0.1:{door_port} *.b.example=127.0.0.1:{door_port}",
                 "CMK_MAX_CONNECTIONS_PER_PEER": "2"}  # fmt: skip
    process, banner = await start([], env)
    try:
        assert banner["routes"] == {"a.example": f"127.0.0.1:{door_port}", "*.b.example": f"127.0.0.1:{door_port}"}
        port = int(str(banner["endpoint"]).rpartition(":")[2])
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        # The third connection from this address is beyond the cap: closed at once, unanswered.
        assert await asyncio.wait_for(held[2][0].read(), 5) == b""
        for _, writer in held:
            writer.close()
    finally:
        await stop(process)


@pytest.mark.parametrize("args", [[], ["--route", "nothing-to-route"], ["--route", "a.example=door"]])
def test_a_proxy_without_good_routes_is_a_usage_error(args: list[str], env: dict[str, str]) -> None:
    done = subprocess.run([*CMK, "serve", "proxy", "--port", "0", *args], env=env, capture_output=True, text=True,
                          timeout=30, check=False)  # fmt: skip
    assert done.returncode == 2 and "route" in done.stderr, done.stderr
