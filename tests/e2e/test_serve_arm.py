"""`cmk serve arm`: Azure Resource Manager's door as a process of its own (as compose runs
it), calling a trio's services over mutual TLS with each caller's token, its banner, the
cloud's metadata naming the login endpoint it was given, and a graceful stop."""

from __future__ import annotations

import asyncio
import json
import signal
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from cmk_trio.client.channel import ChannelTls, open_channel
from cmk_trio.client.identity import IdentityClient
from cmk_trio.launcher.trio import RunningTrio, start_trio
from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.devca import DevPki
from cmk_trio.rpckit.probe import probe_https
from tests.conftest import operator_credentials
from tests.e2e.conftest import CMK


@pytest.fixture
async def trio(tmp_path: Path) -> AsyncIterator[RunningTrio]:
    running = await start_trio(tmp_path / "data", mutual_tls=True, env={"CMK_SECRET_HASH_COST": "10"})
    try:
        yield running
    finally:
        await running.stop()


async def test_serve_arm_answers_for_the_trio_and_stops(trio: RunningTrio, env: dict[str, str]) -> None:
    assert trio.tls_dir is not None and trio.identity.http_url
    pki = DevPki(trio.tls_dir)
    arm = pki.identity("arm")
    process = await asyncio.create_subprocess_exec(
        *CMK, "serve", "arm", "--port", "0", "--output", "json",
        "--identity-endpoint", trio.identity.endpoint, "--keyvault-endpoint", trio.keyvault.endpoint,
        "--speech-endpoint", trio.speech.endpoint, "--login-endpoint", trio.identity.http_url,
        "--tls-cert", str(arm.cert_file), "--tls-key", str(arm.key_file), "--tls-client-ca", str(pki.ca_file),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        if not line:
            raise AssertionError((await process.communicate())[1].decode())
        banner = json.loads(line)
        assert banner["service"] == "arm" and str(banner["http"]).startswith("https://127.0.0.1:")
        url = banner["http"]
        cli = pki.identity("cli")
        channel = open_channel(trio.identity.endpoint, ChannelTls(pki.ca_file, cli.cert_file, cli.key_file))
        try:
            operator = IdentityClient(channel, operator_credentials(trio.identity))
            token = await operator.token_for(audiences.MANAGEMENT)
        finally:
            await channel.close()
        trust = ssl.create_default_context(cafile=str(pki.ca_file))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trust)) as session:
            async with session.get(f"{url}/metadata/endpoints?api-version=2022-09-01") as r:
                cloud = await r.json()
            assert cloud["authentication"]["loginEndpoint"].rstrip("/") == trio.identity.http_url.rstrip("/")
            headers = {"Authorization": f"Bearer {token}"}
            async with session.get(f"{url}/subscriptions?api-version=2022-12-01", headers=headers) as r:
                assert r.status == 200 and "value" in await r.json()
            async with session.get(f"{url}/subscriptions?api-version=2022-12-01") as r:
                assert r.status == 401
        # The health probe compose runs for it.
        port = int(url.rpartition(":")[2])
        assert probe_https(port, {"CMK_TLS_CLIENT_CA": str(pki.ca_file)}) == "SERVING"
        assert probe_https(port, {}).startswith("UNREACHABLE")  # (its CA is not the system's)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), 15)
    assert process.returncode == 0, err.decode()
    assert "arm: stopping" in err.decode()
    assert probe_https(port, {"CMK_TLS_CLIENT_CA": str(pki.ca_file)}).startswith("UNREACHABLE")


def test_serve_arm_needs_its_services_and_a_certificate(env: dict[str, str]) -> None:
    done = subprocess.run([*CMK, "serve", "arm"], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "--identity-endpoint" in done.stderr
