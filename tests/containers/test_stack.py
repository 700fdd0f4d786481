"""compose.yaml brought up with Compose v2 on podman: the seed walked from the host, the
client library used from a container on the stack's network, and the image checked as it
ships (user, secrets, volumes, restart policy, metrics, health probe)."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.containers import engine
from tests.containers.azure_sdks import witness_the_sdks
from tests.containers.stack import SERVICES, Stack

ROOT = Path(__file__).resolve().parents[2]
CLIENT_SCRIPT = Path(__file__).resolve().parent / "client_in_container.py"


@pytest.fixture(scope="module")
def stack(container_engine: None, container_figures: dict[str, Any]) -> Iterator[Stack]:
    stack = Stack(engine.COMPOSE_V2, [ROOT / "compose.yaml"])
    try:
        container_figures["up_v2_s"] = round(stack.up(), 1)
        # `up -d` returns once speech, the last, has started, not once it serves: until it has
        # caught up with identity's event stream it refuses (REVOCATIONS_UNKNOWN), which the
        # seed's walk met once when the images were cached and up was quick.
        for service in SERVICES:
            asyncio.run(stack.wait_serving(service))
        yield stack
    finally:
        stack.close()


def test_the_seed_walks_green_from_the_host(stack: Stack, tmp_path: Path):
    stack.walk_the_seed(tmp_path)  # green, against the containers


def test_the_client_library_from_a_container_on_the_network(stack: Stack):
    out = stack.run(
        "python", "/client.py",
        volumes=[f"{CLIENT_SCRIPT}:/client.py:ro", f"{stack.project}_tls-cli:/tls:ro",
                 f"{stack.project}_operator:/operator:ro"],
        networks=stack.networks_for_clients,
    )  # fmt: skip
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen["unwrapped_matches"] and seen["read_back_matches"], seen


def test_the_image_runs_as_a_number_with_secrets_kept_apart(stack: Stack):
    image = json.loads(engine.podman("image", "inspect", engine.IMAGE))[0]
    assert image["Config"]["User"] == "10001:10001"
    # The build context kept out the virtual environment, local data and git history.
    listing = engine.podman("run", "--rm", engine.IMAGE, "ls", "-a", "/app").split()
    assert not {".venv", ".cmk", ".git", "tests", "bench"} & set(listing), listing
    # The CA's key is only in the `ca` volume, and the certificates' keys all together only in
    # `pki`: both mounted only by the one-shot certs container. Each service sees its own
    # certificate and key, and its own platform credentials, and nobody else's.
    assert (stack.volume("ca") / "ca.key").exists()
    for service in (*SERVICES, "platform-credentials", "arm", "proxy"):
        mounts = {m.get("Name", "") for m in stack.inspect(service)["Mounts"]}
        assert not {f"{stack.project}_ca", f"{stack.project}_pki"} & mounts, f"{service} mounts the CA"
    for service in SERVICES:
        seen = engine.podman("exec", stack.container(service), "sh", "-c", "ls -A /tls /credentials/*").split()
        own = {"ca.crt", f"{service}.crt", f"{service}.key"} | ({f"{service}.json"} if service != "identity" else set())
        assert {name for name in seen if not name.endswith(":")} == own, f"{service} sees {seen}"
    seen = engine.podman("exec", stack.container("arm"), "ls", "-A", "/tls").split()
    assert set(seen) == {"ca.crt", "arm.crt", "arm.key"}, f"ARM's door sees {seen}"
    # Master keys are in their own volumes, apart from the databases.
    for service, key_file in (("identity", "identity-master.key"), ("keyvault", "keyvault-master.key"),
                              ("speech", "speech-master-keys.json")):  # fmt: skip
        assert (stack.volume(f"{service}-keys") / key_file).exists(), service
        assert not (stack.volume(f"{service}-data") / key_file).exists(), service
    # The operator's secret is in its file and in no container's log.
    secret = json.loads((stack.volume("operator") / "operator.json").read_text())["client_secret"]
    for service in (*SERVICES, "platform-credentials", "certs", "arm", "proxy"):
        assert secret not in stack.logs(service), f"the operator secret is in {service}'s log"
    # Crashes are restarted; the one-shot steps are not.
    for service in (*SERVICES, "arm", "proxy"):
        assert stack.inspect(service)["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"


def test_openid_connect_discovery_is_published_over_https(stack: Stack):
    """Identity's discovery document and keys, on the host's loopback, over HTTPS with the
    stack's CA; the document names its endpoints as the host reaches them."""
    import ssl

    tenant = stack.operator().tenant_id
    base = f"https://localhost:{stack.ports['identity_http']}"
    trust = ssl.create_default_context(cafile=str(stack.tls_dir / "ca.crt"))
    url = f"{base}/{tenant}/v2.0/.well-known/openid-configuration"
    document = json.loads(_fetch(url, trust))
    assert document["jwks_uri"] == f"{base}/{tenant}/discovery/v2.0/keys"
    assert json.loads(_fetch(document["jwks_uri"], trust))["keys"]


def _fetch(url: str, trust: Any) -> bytes:
    """A GET over HTTPS, tried again if the connection itself ends before an answer: the
    rootless port forwarder in front of the published port dropped one in CI (TLS saw EOF
    during its handshake, right after the same client's previous request was answered). An
    HTTP error, or a wrong answer, is not tried again."""
    for attempt in range(3):
        try:
            with urllib.request.urlopen(url, timeout=10, context=trust) as reply:  # noqa: S310 (loopback, our CA)
                return bytes(reply.read())
        except urllib.error.HTTPError:
            raise
        except urllib.error.URLError:
            if attempt == 2:
                raise
            time.sleep(0.5)
    raise AssertionError("unreachable")


async def test_microsofts_sdks_from_the_host_both_ways(stack: Stack, container_figures: dict[str, Any]):
    """The Python witness's walk (tests/containers/azure_sdks.py) against the published doors
    and the published proxy."""
    container_figures.setdefault("sdk_walk_s", {})["compose.yaml, Compose v2"] = await witness_the_sdks(stack)


async def test_the_proxy_refuses_what_it_does_not_route(stack: Stack):
    """The published proxy is no open proxy: another name, another port, another method."""
    port = stack.ports["proxy"]
    for head, status in ((b"CONNECT example.com:443 HTTP/1.1\r\n\r\n", b"403"),
                         (b"CONNECT identity:50051 HTTP/1.1\r\n\r\n", b"403"),
                         (b"CONNECT contoso.vault.azure.net:80 HTTP/1.1\r\n\r\n", b"403"),
                         (b"GET http://login.microsoftonline.com/ HTTP/1.1\r\n\r\n", b"405")):  # fmt: skip
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head)
        answer = await asyncio.wait_for(reader.readline(), 10)
        writer.close()
        assert answer.split()[1:2] == [status], (head, answer)


def test_metrics_are_published(stack: Stack):
    for service in SERVICES:
        url = f"http://127.0.0.1:{stack.ports[f'{service}_metrics']}/metrics"
        with urllib.request.urlopen(url, timeout=10) as reply:
            text = reply.read().decode()
        assert (
            "grpc_server_handled_total" in text
            and "process_cpu_seconds_total" in text
            and f'service="{service}"' in text
        ), service


def test_the_health_probe_is_cheap(stack: Stack, container_figures: dict[str, Any]):
    """The probe compose runs every 5 s: its CPU a call, measured in the container (a figure
    for RELIABILITY.md; asserted only against the CLI's cost, not a clock)."""
    measure = (
        "import resource, shutil, subprocess, json, os\n"
        # `cmk health` wants a client certificate named cli.*: the service's own (it is one too).
        "os.makedirs('/tmp/cli', exist_ok=True)\n"
        "for src, dst in (('ca.crt', 'ca.crt'), ('identity.crt', 'cli.crt'), ('identity.key', 'cli.key')):\n"
        "    shutil.copy(f'/tls/{src}', f'/tmp/cli/{dst}')\n"
        "def cpu(args):\n"
        "    before = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "    code = subprocess.run(args, capture_output=True).returncode\n"
        "    after = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "    assert code == 0, args\n"
        "    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime\n"
        "probe = [cpu(['python', '-m', 'cmk_trio.rpckit.probe', '50051']) for _ in range(10)]\n"
        "cli = [cpu(['cmk', '--tls-dir', '/tmp/cli', 'health', '--endpoint', 'localhost:50051']) for _ in range(3)]\n"
        "print(json.dumps({'probe': probe, 'cli': cli}))\n"
    )
    got = json.loads(engine.podman("exec", stack.container("identity"), "python", "-c", measure).strip())
    probe, cli = statistics.median(got["probe"]), statistics.median(got["cli"])
    container_figures["probe_cpu_s"] = {"median": round(probe, 3), "max": round(max(got["probe"]), 3),
                                        "cli_median": round(cli, 3)}  # fmt: skip
    # Against the CLI's cost measured in the same run (about half of it on a quiet machine),
    # not against a fixed figure: a machine busy with the whole stack inflated both, and an
    # absolute guard (0.2 s) failed .ci/run once at 0.224 s while the probe was unchanged.
    assert probe <= 0.75 * cli, f"the probe took {probe:.3f} s of CPU, the CLI {cli:.3f} s (target: under half)"


def test_volumes_hold_no_plaintext_secret(stack: Stack):
    """The operator secret appears in its own file and nowhere else in any volume."""
    secret = json.loads((stack.volume("operator") / "operator.json").read_text())["client_secret"].encode()
    for volume in (
        "identity-data",
        "identity-keys",
        "keyvault-data",
        "keyvault-keys",
        "speech-data",
        "speech-keys",
        "keyvault-credentials",
        "speech-credentials",
        "tls-identity",
        "tls-keyvault",
        "tls-speech",
        "tls-arm",
    ):
        for path in stack.volume(volume).rglob("*"):
            if path.is_file():
                assert secret not in path.read_bytes(), f"{volume}/{path.name}"
