"""Plain TCP only on loopback (issue 12, finding 2): a service told to listen where other
machines can reach it refuses to start unless it speaks mutual TLS there, and its metrics
(plain HTTP) stay on loopback unless the operator exposes them on purpose. Real processes,
as an operator starts them."""

from __future__ import annotations

import ipaddress
import json
import signal
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import CMK, service_env
from tests.e2e.test_bad_environments import START_TIMEOUT
from tests.rpckit.certs import ScratchCa


def refused(args: list[str], env: dict[str, str]) -> str:
    process = subprocess.run([*CMK, *args], capture_output=True, text=True, timeout=START_TIMEOUT, env=env)
    assert process.returncode != 0 and "Traceback" not in process.stderr, process.stderr
    return process.stderr


def listening_addresses(port: int) -> set[str]:
    """The addresses something listens on at `port`, from the kernel's socket tables."""
    found = set()
    for table, width in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))  # little-endian words
            found.add(str(ipaddress.ip_address(words)) if width == 4 else str(ipaddress.IPv6Address(words)))
    return found


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return service_env(tmp_path)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "identity.example"])  # noqa: S104 (the point)
def test_a_plaintext_listener_beyond_loopback_is_refused(tmp_path, env, host):
    err = refused(["serve", "identity", "--data-dir", str(tmp_path / "d"), "--host", host, "--port", "0"], env)
    assert "needs mutual TLS" in err and "--tls-client-ca" in err


def test_tls_without_client_certificates_beyond_loopback_is_refused(tmp_path, env):
    ca = ScratchCa(tmp_path / "ca")
    cert, key = ca.issue("identity", server=True)
    args = ["serve", "identity", "--data-dir", str(tmp_path / "d"), "--host", "0.0.0.0", "--port", "0",  # noqa: S104
            "--tls-cert", str(cert), "--tls-key", str(key)]  # fmt: skip
    assert "needs mutual TLS" in refused(args, env)


def test_up_insecure_refuses_a_host_beyond_loopback(tmp_path, env):
    err = refused(["up", "--insecure", "--data-dir", str(tmp_path / "d"), "--port-base", "0"],
                  {**env, "CMK_IDENTITY_HOST": "0.0.0.0"})  # fmt: skip  # noqa: S104
    assert "needs mutual TLS" in err


def test_with_mutual_tls_it_listens_everywhere_and_metrics_stay_on_loopback(tmp_path, env):
    ca = ScratchCa(tmp_path / "ca")
    cert, key = ca.issue("identity", server=True)
    args = [*CMK, "serve", "identity", "--data-dir", str(tmp_path / "d"), "--host", "0.0.0.0", "--port", "0",  # noqa: S104
            "--tls-cert", str(cert), "--tls-key", str(key), "--tls-client-ca", str(ca.cert_file),
            "--metrics-port", "0", "--output", "json"]  # fmt: skip
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        banner = json.loads(process.stdout.readline())  # type: ignore[union-attr]
        url = banner["metrics"]["identity"]
        assert url.startswith("http://127.0.0.1:")
        assert listening_addresses(int(url.rsplit(":", 1)[1].split("/")[0])) == {"127.0.0.1"}
        grpc_port = int(banner["endpoint"].rsplit(":", 1)[1])
        assert listening_addresses(grpc_port) & {"0.0.0.0", "::"}  # noqa: S104 (mutual TLS: allowed)
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=START_TIMEOUT)
