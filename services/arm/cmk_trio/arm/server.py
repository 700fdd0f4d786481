"""Starting Azure Resource Manager's door: its HTTPS listener, and channels to the three
services (mutual TLS, with a client certificate of the trio's CA, as the CLI dials them)."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from cmk_trio.arm.authorization import AuthorizationProvider
from cmk_trio.arm.cognitive import CognitiveServicesProvider
from cmk_trio.arm.front import ArmFront, Provider, Services
from cmk_trio.arm.group_deletion import SYNC_SECONDS
from cmk_trio.arm.keyvault import KeyVaultProvider
from cmk_trio.arm.resources import Cloud, ResourcesProvider
from cmk_trio.client.channel import ChannelTls, open_channel
from cmk_trio.rpckit.config import TlsConfig
from cmk_trio.rpckit.http_listener import RunningHttp, serve_http
from cmk_trio.rpckit.listeners import ConnectionLimits
from cmk_trio.rpckit.observe import Metrics

DEFAULT_PORT = 50057
"""Where `cmk up` (port_base+7) and compose serve it."""


@dataclass
class RunningArm:
    """The door and its channels."""

    http: RunningHttp
    channels: list[grpc.aio.Channel]

    @property
    def url(self) -> str:
        return self.http.base_url

    async def stop(self) -> None:
        await self.http.stop()
        for channel in self.channels:
            await channel.close()


def providers_of(
    services: Services, cloud: Cloud | None = None, *, sync_seconds: float = SYNC_SECONDS
) -> list[Provider]:
    """Every resource provider the door serves, over `services` (`sync_seconds`: how long a
    group's deletion is waited for before the answer is 202, group_deletion.py)."""
    cloud = cloud or Cloud("CmkTrio", "https://login.microsoftonline.com", "vault.azure.net")
    return [ResourcesProvider(services, cloud, sync_seconds=sync_seconds), AuthorizationProvider(services),
            KeyVaultProvider(services), CognitiveServicesProvider(services)]  # fmt: skip


async def start_arm(
    *,
    host: str,
    port: int,
    tls: TlsConfig,
    endpoints: dict[str, str],
    channel_tls: ChannelTls | None,
    cloud: Cloud,
    limits: ConnectionLimits | None = None,
    metrics: Metrics | None = None,
    sync_seconds: float = SYNC_SECONDS,
) -> RunningArm:
    """The door on host:port (0: a free port), calling the services at `endpoints`
    ({"identity": host:port, "keyvault": ..., "speech": ...})."""
    channels = {name: open_channel(endpoints[name], channel_tls, retries=True, peer=name)
                for name in ("identity", "keyvault", "speech")}  # fmt: skip
    services = Services(channels["identity"], channels["keyvault"], channels["speech"])
    front = ArmFront(providers_of(services, cloud, sync_seconds=sync_seconds), authority=cloud.login_endpoint,
                     metrics=metrics)  # fmt: skip
    try:
        http = await serve_http(front.app(), host, port, tls, listener="arm https", limits=limits,
                                what="Azure Resource Manager's door")  # fmt: skip
    except BaseException:
        for channel in channels.values():
            await channel.close()
        raise
    return RunningArm(http, list(channels.values()))
