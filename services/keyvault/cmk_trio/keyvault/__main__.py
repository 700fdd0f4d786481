"""`python -m cmk_trio.keyvault`: the key vault service, configured by CMK_* variables (`cmk serve keyvault` does the
same with flags), without the CLI: a service does not depend on its front end."""

from __future__ import annotations

import os

from cmk_trio.keyvault.config import KeyVaultConfig
from cmk_trio.keyvault.server import KeyVaultServer, build_server
from cmk_trio.rpckit.process import listening, main


def _announce(server: KeyVaultServer) -> None:
    metrics = f"http://{server.config.metrics_host}:{server.metrics_port}/metrics" if server.metrics_port else None
    print("\n".join(listening("keyvault", server.endpoint, metrics)), flush=True)


if __name__ == "__main__":
    main("keyvault", lambda: KeyVaultConfig.load(os.environ), build_server, _announce)
