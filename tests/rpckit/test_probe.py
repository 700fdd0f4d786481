"""The containers' health probe (python -m cmk_trio.rpckit.probe PORT), run as compose runs
it, in a process of its own, against a real server over mutual TLS."""

from __future__ import annotations

import asyncio
import json
import os
import sys

from cmk_trio.identity.server import build_server
from cmk_trio.rpckit.config import TlsConfig
from cmk_trio.rpckit.devca import ensure_dev_pki
from tests.conftest import identity_config


async def probe(port: int, env: dict[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cmk_trio.rpckit.probe", str(port),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await process.communicate()
    return await process.wait(), out.decode().strip()


async def test_the_probe_says_serving_over_mutual_tls_and_fails_otherwise(tmp_path, clock):
    pki = ensure_dev_pki(tmp_path / "tls")
    files = pki.identity("identity")
    server = await build_server(
        identity_config(tmp_path / "id", tls=TlsConfig(files.cert_file, files.key_file, pki.ca_file)), clock=clock
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith("CMK_")}
    tls = {"CMK_TLS_CERT": str(files.cert_file), "CMK_TLS_KEY": str(files.key_file),
           "CMK_TLS_CLIENT_CA": str(pki.ca_file)}  # fmt: skip
    try:
        assert await probe(server.port, {**base, **tls}) == (0, "SERVING")
        code, said = await probe(server.port, base)  # plain TCP to a mutual-TLS server
        assert code == 1 and said.startswith("UNREACHABLE"), said
        await server.stop(0)
        code, said = await probe(server.port, {**base, **tls})  # nothing listening any more
        assert code == 1 and said == "UNREACHABLE (UNAVAILABLE)", said
    finally:
        await server.stop(0)


async def test_the_probe_imports_no_more_than_grpc_and_the_health_stub():
    """A probe runs every 5 s per container: it must not load the CLI or a service."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c",
        "import json, sys, cmk_trio.rpckit.probe\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('cmk_trio'))))",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await process.communicate()
    assert json.loads(out) == ["cmk_trio", "cmk_trio.rpckit", "cmk_trio.rpckit.probe"]


async def test_a_usage_error_is_exit_code_2():
    for args in ([], ["port"], ["1", "2", "3"], ["²"]):  # (² is a digit to str.isdigit, not to int)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cmk_trio.rpckit.probe", *args, stderr=asyncio.subprocess.PIPE
        )
        _, err = await process.communicate()
        assert process.returncode == 2 and b"usage" in err
