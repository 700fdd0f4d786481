"""Several processes of each service on one PostgreSQL database: `cmk up --replicas N
--database-url URL`. Each replica is a `cmk serve ...` process of its own; the key vault's
replicas reach identity's, and speech's reach both, through every address at once (gRPC
balances round robin), as clients do."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cmk_trio.client.channel import ChannelTls, open_channel
from cmk_trio.client.identity import ClientCredentials, IdentityClient
from cmk_trio.identity.announcement import Announcement
from cmk_trio.proto.identity.v1 import resources_pb2 as idres
from cmk_trio.rpckit.datadir import StartupError
from cmk_trio.rpckit.devca import DevPki, ensure_dev_pki
from cmk_trio.rpckit.json_input import JsonObject
from cmk_trio.rpckit.keyfiles import write_private_file

START_TIMEOUT = 60.0
"""Seconds a replica may take to announce that it serves."""


@dataclass
class Replica:
    """One process of a service, and what it announced."""

    service: str
    process: asyncio.subprocess.Process
    endpoint: str
    metrics: str | None
    announcement: JsonObject  # the JSON line the process printed
    argv: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict, repr=False)

    def holds_lease(self) -> bool:
        """Whether it runs and says (in its metrics) that it holds the lease on background work."""
        if self.metrics is None or self.process.returncode is not None:
            return False
        try:
            with urllib.request.urlopen(self.metrics, timeout=2) as reply:  # noqa: S310 (its own loopback URL)
                text = reply.read().decode()
        except OSError:
            return False
        found = re.search(r'^cmk_lease_held\{lease="background",service="\w+"\} (\S+)$', text, re.M)
        return found is not None and float(found.group(1)) == 1.0


@dataclass
class RunningReplicas:
    """Every replica of the three services, started by this process."""

    replicas: dict[str, list[Replica]] = field(default_factory=dict)
    tls_dir: Path | None = None
    created_operator: JsonObject | None = None
    operator_file: Path | None = None

    @property
    def endpoints(self) -> dict[str, str]:
        """Each service as clients dial it: every replica's address, comma-separated."""
        return {name: ",".join(r.endpoint for r in group) for name, group in self.replicas.items()}

    @property
    def metrics(self) -> dict[str, str]:
        return {
            f"{r.service}[{n}]": r.metrics
            for group in self.replicas.values()
            for n, r in enumerate(group)
            if r.metrics is not None
        }

    async def restart(self, replica: Replica) -> Replica:
        """Stop one replica gracefully and start it again as it was started (on a new port
        if its port was 0); returns the new one, which takes its place."""
        if replica.process.returncode is None:
            replica.process.send_signal(signal.SIGTERM)
            await replica.process.wait()
        fresh = await _start(replica.service, replica.argv, replica.env)
        group = self.replicas[replica.service]
        group[group.index(replica)] = fresh
        return fresh

    def announcement(self, *, show_secret: bool = True) -> Announcement:
        """What the start of several replicas of each service tells: every endpoint is the
        list of its replicas' addresses, as clients dial it."""
        endpoints = self.endpoints
        login = (
            f"cmk login --endpoint {endpoints['identity']} --operator-file {self.operator_file}"
            f" --keyvault-endpoint {endpoints['keyvault']} --speech-endpoint {endpoints['speech']}"
        )
        if self.tls_dir is not None:
            login = login.replace("cmk login", f"cmk --tls-dir {self.tls_dir} login", 1)
        created = dict(self.created_operator) if self.created_operator else None
        if created is not None and show_secret and self.operator_file is not None:
            created["client_secret"] = json.loads(self.operator_file.read_text())["client_secret"]
        return Announcement(endpoints["identity"], endpoints, login, created, self.tls_dir, self.metrics)

    async def stop(self) -> None:
        """Stop the replicas gracefully (SIGTERM), speech first, then the key vault, then
        identity; one that has not stopped within 10 s is killed."""
        for name in ("speech", "keyvault", "identity"):
            group = self.replicas.get(name, [])
            for replica in group:
                if replica.process.returncode is None:
                    replica.process.send_signal(signal.SIGTERM)
            for replica in group:
                try:
                    await asyncio.wait_for(replica.process.wait(), 10)
                except TimeoutError:
                    replica.process.kill()
                    await replica.process.wait()


def replica_port(port_base: int, service_offset: int, replica: int) -> int:
    """Replica 0 on the ports a single trio uses (base+1, +2, +3), replica r on base+100*r
    plus the same offset; 0 (a free port) when the base is 0."""
    return port_base and port_base + 100 * replica + service_offset


async def start_replicas(
    data_dir: Path,
    port_base: int,
    *,
    replicas: int,
    database_url: str,
    dev_time_control: bool = False,
    auto_approve: bool = False,
    mutual_tls: bool = False,
    env: Mapping[str, str] | None = None,
) -> RunningReplicas:
    """Start `replicas` processes of identity, then of the key vault, then of speech, all
    on the database `database_url`, with their key files in `data_dir` (shared: the replicas
    of a service need the same master keys). On a first start, the platform principals of the
    key vault and speech are made through identity and their credentials kept in `data_dir`."""
    if not database_url:
        raise StartupError("replicas need a PostgreSQL database: --database-url postgresql://...")
    running = RunningReplicas()
    base_env = dict(os.environ if env is None else env)
    base_env["CMK_DATABASE_URL"] = database_url
    common = ["--data-dir", str(data_dir)]
    if dev_time_control:
        common.append("--dev-time-control")
    pki: DevPki | None = None
    if mutual_tls:
        running.tls_dir = data_dir / "tls"
        pki = ensure_dev_pki(running.tls_dir)

    def tls_flags(service: str) -> list[str]:
        if pki is None:
            return []
        files = pki.identity(service)
        return [
            "--tls-cert",
            str(files.cert_file),
            "--tls-key",
            str(files.key_file),
            "--tls-client-ca",
            str(pki.ca_file),
        ]

    async def start_group(service: str, offset: int, extra: Sequence[str], extra_env: Mapping[str, str] = {}) -> None:
        group = running.replicas.setdefault(service, [])
        for n in range(replicas):
            port = replica_port(port_base, offset, n)
            metrics = replica_port(port_base, offset + 10, n)
            argv = [
                *common, "--port", str(port), "--metrics-port", str(metrics), *tls_flags(service), *extra,
            ]  # fmt: skip
            if service == "identity":  # its OpenID Connect discovery, keys and token endpoint, on +4
                argv += ["--http-port", str(replica_port(port_base, 4, n))]
            group.append(await _start(service, argv, {**base_env, **extra_env}))

    try:
        await start_group("identity", 1, ["--hide-operator-secret"])
        made = [r.announcement.get("created_operator") for r in running.replicas["identity"]]
        running.created_operator = next((m for m in made if m), None)
        # Where identity wrote it: CMK_OPERATOR_FILE, as the replicas see it, or the data directory.
        running.operator_file = Path(base_env.get("CMK_OPERATOR_FILE") or data_dir / "operator.json")
        identity_endpoints = running.endpoints["identity"]
        credentials = await _platform_credentials(identity_endpoints, running.operator_file, data_dir, pki)
        await start_group(
            "keyvault", 2, ["--identity-endpoint", identity_endpoints],
            {"CMK_KEYVAULT_CREDENTIALS_FILE": str(credentials["keyvault"])},
        )  # fmt: skip
        await start_group(
            "speech", 3,
            ["--identity-endpoint", identity_endpoints, "--keyvault-endpoint", running.endpoints["keyvault"],
             *(["--auto-approve-cmk"] if auto_approve else [])],
            {"CMK_SPEECH_CREDENTIALS_FILE": str(credentials["speech"])},
        )  # fmt: skip
    except BaseException:
        await running.stop()
        raise
    return running


async def _start(service: str, argv: Sequence[str], env: Mapping[str, str]) -> Replica:
    """One `cmk serve SERVICE` process, once it has announced (its first line of output)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cmk_trio.cli", "--output", "json", "serve", service, *argv,
        stdout=asyncio.subprocess.PIPE, env=dict(env),
    )  # fmt: skip
    stdout = process.stdout
    if stdout is None:  # asked for with PIPE above: never
        raise RuntimeError("a replica's output is not piped")
    try:
        line = await asyncio.wait_for(stdout.readline(), START_TIMEOUT)
    except TimeoutError:
        line = b""
    if not line:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        code = await process.wait()
        raise StartupError(f"a {service} replica did not start (exit status {code}; its errors are above)")
    announcement = json.loads(line)
    endpoint = announcement["endpoint"]
    metrics = announcement["metrics"].get(service)
    return Replica(service, process, endpoint, metrics, announcement, tuple(argv), dict(env))


async def _platform_credentials(
    identity_endpoints: str, operator_file: Path, data_dir: Path, pki: DevPki | None
) -> dict[str, Path]:
    """The files of the key vault's and speech's platform credentials: made through identity
    (by the operator, in the platform tenant) on the first start, found afterwards."""
    files = {name: data_dir / f"{name}-credentials.json" for name in ("keyvault", "speech")}
    missing = [name for name, path in files.items() if not path.exists()]
    if not missing:
        return files
    tls = None
    if pki is not None:
        cli = pki.identity("cli")
        tls = ChannelTls(pki.ca_file, cli.cert_file, cli.key_file)
    channel = open_channel(identity_endpoints, tls, peer="identity")
    try:
        operator_creds = ClientCredentials.from_file(operator_file)
        operator = IdentityClient(channel, operator_creds)
        for name in missing:
            principal = await operator.create_principal(
                operator_creds.tenant_id, idres.SERVICE_PRINCIPAL, f"{name} service", platform_service=name
            )
            secret = await operator.add_client_secret(operator_creds.tenant_id, principal.object_id, "platform", 730)
            content = {
                "tenant_id": operator_creds.tenant_id,
                "client_id": secret.client_id,
                "client_secret": secret.secret_value,
            }
            write_private_file(files[name], json.dumps(content, indent=2) + "\n")
    finally:
        await channel.close()
    return files
