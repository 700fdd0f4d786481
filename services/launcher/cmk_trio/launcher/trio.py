"""The three services started together in one process, wired to each other: identity
first, then the platform principals the key vault and speech sign in as, then those two."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cmk_trio.arm.resources import Cloud
from cmk_trio.arm.server import RunningArm, start_arm
from cmk_trio.client.channel import ChannelTls
from cmk_trio.client.identity import ClientCredentials
from cmk_trio.identity.announcement import Announcement
from cmk_trio.identity.config import IdentityConfig
from cmk_trio.identity.model import PrincipalKind
from cmk_trio.identity.server import IdentityServer
from cmk_trio.identity.server import build_server as build_identity
from cmk_trio.keyvault.config import KeyVaultConfig
from cmk_trio.keyvault.server import KeyVaultServer
from cmk_trio.keyvault.server import build_server as build_keyvault
from cmk_trio.rpckit.bootstrap import Served
from cmk_trio.rpckit.config import TlsConfig
from cmk_trio.rpckit.connect_proxy import RunningProxy, start_proxy
from cmk_trio.rpckit.devca import AZURE_NAMES, DevPki, ensure_dev_pki
from cmk_trio.rpckit.keyfiles import write_private_file
from cmk_trio.rpckit.listeners import ConnectionLimits
from cmk_trio.speech.config import SpeechConfig
from cmk_trio.speech.server import SpeechServer
from cmk_trio.speech.server import build_server as build_speech

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider


async def ensure_platform_credentials(identity: IdentityServer, service: str, path: Path) -> ClientCredentials:
    """The credentials of a platform service's principal: read from `path`, or, on the first
    start, made by the operator in the platform tenant and written there (mode 0600)."""
    if path.exists():
        return ClientCredentials.from_file(path)
    operator = identity.operator
    principal = await identity.directory.principals.create_principal(
        operator, operator.tenant_id, kind=PrincipalKind.SERVICE_PRINCIPAL,
        name=f"{service} service", platform_service=service,
    )  # fmt: skip
    secret = await identity.directory.secrets.add_client_secret(
        operator, operator.tenant_id, principal.object_id, "platform", 730
    )
    credentials = ClientCredentials(operator.tenant_id, secret.client_id, secret.value)
    content = {"tenant_id": credentials.tenant_id, "client_id": credentials.client_id,
               "client_secret": credentials.client_secret}  # fmt: skip
    write_private_file(path, json.dumps(content, indent=2) + "\n")
    return credentials


@dataclass
class RunningTrio:
    """The three services running in this process, wired to each other."""

    identity: IdentityServer
    keyvault: KeyVaultServer
    speech: SpeechServer
    tls_dir: Path | None = None
    """Where the development CA and certificates are, when the services talk mutual TLS."""
    proxy: RunningProxy | None = None
    """The CONNECT proxy that serves Azure's default names (HTTPS_PROXY), when the doors are HTTPS."""
    arm: RunningArm | None = None
    """Azure Resource Manager's door, when the doors are HTTPS."""

    @property
    def endpoints(self) -> dict[str, str]:
        """Where each service listens (host:port)."""
        return {"identity": self.identity.endpoint, "keyvault": self.keyvault.endpoint, "speech": self.speech.endpoint}

    @property
    def metrics(self) -> dict[str, str]:
        """The Prometheus endpoints, for the services that serve them."""
        servers: dict[str, IdentityServer | KeyVaultServer | SpeechServer] = {
            "identity": self.identity,
            "keyvault": self.keyvault,
            "speech": self.speech,
        }
        return {name: url for name, s in servers.items() if (url := s.metrics_url) is not None}

    def announcement(self, *, show_secret: bool = True) -> Announcement:
        """What the start of the three services tells (identity's, with the other two)."""
        return Announcement.of(
            self.identity, self.keyvault.endpoint, self.speech.endpoint, self.tls_dir, self.metrics,
            show_secret=show_secret, vault_door=self.keyvault.http_url,
            proxy=self.proxy.url if self.proxy is not None else None,
            arm=self.arm.url if self.arm is not None else None,
        )  # fmt: skip

    async def stop(self) -> None:
        """Stop the services in the reverse order of their start: speech calls the key
        vault, and both follow identity's event stream."""
        if self.proxy is not None:
            await self.proxy.stop()
        if self.arm is not None:
            await self.arm.stop()
        for server in (self.speech, self.keyvault, self.identity):
            await server.stop()


async def start_trio(
    data_dir: Path,
    port_base: int = 0,
    *,
    dev_time_control: bool = False,
    auto_approve: bool = False,
    env: Mapping[str, str] | None = None,
    mutual_tls: bool = False,
    metrics: bool = False,
    tracer_provider: TracerProvider | None = None,
) -> RunningTrio:
    """Identity on port_base+1, the key vault on +2 and speech on +3, identity's OpenID
    Connect discovery, keys and token endpoint over HTTP(S) on +4, the key vault's Azure
    data plane over HTTP(S) on +5 (port_base 0: free ports).
    On the first start in `data_dir`, the platform principals of the key vault and speech are
    made and their credentials kept there (mode 0600). With `mutual_tls`, a development CA in
    `data_dir/tls` signs a certificate per service, and every service accepts only peers and
    clients with a certificate from it (the HTTP endpoints ask for none: they are public)."""
    environ = os.environ if env is None else env

    def given(service: str, offset: int) -> dict[str, str]:
        """What the launcher sets for one service, as the variables that set it (the same
        parser as the environment's and the command line's reads them)."""
        values = {"CMK_DATA_DIR": str(data_dir), f"CMK_{service.upper()}_PORT": str(port_base and port_base + offset)}
        if metrics:  # Prometheus endpoints at port_base+11, +12, +13 (free ports when port_base is 0)
            values[f"CMK_{service.upper()}_METRICS_PORT"] = str(port_base and port_base + 10 + offset)
        if dev_time_control:
            values["CMK_DEV_TIME_CONTROL"] = "1"
        if pki is not None:
            files = pki.identity(service)
            values |= {"CMK_TLS_CERT": str(files.cert_file), "CMK_TLS_KEY": str(files.key_file),
                       "CMK_TLS_CLIENT_CA": str(pki.ca_file)}  # fmt: skip
        return values

    tls_dir = data_dir / "tls" if mutual_tls else None
    pki = ensure_dev_pki(data_dir / "tls") if mutual_tls else None
    identity = await build_identity(
        IdentityConfig.load(
            environ, given("identity", 1) | {"CMK_IDENTITY_HTTP_PORT": str(port_base and port_base + 4)}
        ),
        tracer_provider=tracer_provider,
    )
    started: list[Served] = [identity]
    try:
        credentials = {name: data_dir / f"{name}-credentials.json" for name in ("keyvault", "speech")}
        for name, path in credentials.items():
            await ensure_platform_credentials(identity, name, path)
        linked = {"CMK_IDENTITY_ENDPOINT": identity.endpoint}
        keyvault = await build_keyvault(
            KeyVaultConfig.load(
                environ,
                given("keyvault", 2)
                | linked
                | {
                    "CMK_KEYVAULT_CREDENTIALS_FILE": str(credentials["keyvault"]),
                    "CMK_KEYVAULT_HTTP_PORT": str(port_base and port_base + 5),
                },
            ),
            tracer_provider=tracer_provider,
        )
        started.append(keyvault)
        speech_given = given("speech", 3) | linked | {
            "CMK_SPEECH_CREDENTIALS_FILE": str(credentials["speech"]), "CMK_KEYVAULT_ENDPOINT": keyvault.endpoint,
        }  # fmt: skip
        if auto_approve:
            speech_given["CMK_AUTO_APPROVE_CMK"] = "1"
        speech = await build_speech(SpeechConfig.load(environ, speech_given), tracer_provider=tracer_provider)
        started.append(speech)
        proxy = arm = None
        if identity.http_url and keyvault.http_url and pki is not None:
            arm = await start_arm(
                host="127.0.0.1", port=port_base and port_base + 7, tls=_door_tls(pki, "arm"),
                endpoints={"identity": identity.endpoint, "keyvault": keyvault.endpoint, "speech": speech.endpoint},
                channel_tls=ChannelTls(pki.ca_file, pki.identity("arm").cert_file, pki.identity("arm").key_file),
                cloud=Cloud("CmkTrio", identity.http_url, keyvault.config.vault_dns_suffix),
                limits=ConnectionLimits.from_env(environ),
            )  # fmt: skip
            proxy = await start_proxy(
                azure_routes(identity.http_url, keyvault.http_url, arm.url),
                port=port_base and port_base + 6,
                limits=ConnectionLimits.from_env(environ),
            )
    except BaseException:
        if arm is not None:
            await arm.stop()
        for server in reversed(started):
            await server.stop()
        raise
    return RunningTrio(identity, keyvault, speech, tls_dir, proxy, arm)


def _door_tls(pki: DevPki, name: str) -> TlsConfig:
    files = pki.identity(name)
    return TlsConfig(cert_file=files.cert_file, key_file=files.key_file)


def azure_routes(identity_door: str, vault_door: str, arm_door: str) -> dict[str, str]:
    """Which door serves each of Azure's default names (the development CA's certificates
    answer to them: rpckit.devca.AZURE_NAMES)."""
    doors = {"identity": identity_door, "keyvault": vault_door, "arm": arm_door}
    return {name: doors[service].removeprefix("https://") for service, names in AZURE_NAMES.items() for name in names}
