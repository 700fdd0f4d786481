"""`python -m cmk_trio.speech`: the speech service, configured by CMK_* variables (`cmk serve speech` does the
same with flags), without the CLI: a service does not depend on its front end."""

from __future__ import annotations

import os

from cmk_trio.rpckit.process import listening, main
from cmk_trio.speech.config import SpeechConfig
from cmk_trio.speech.server import SpeechServer, build_server


def _announce(server: SpeechServer) -> None:
    metrics = f"http://{server.config.metrics_host}:{server.metrics_port}/metrics" if server.metrics_port else None
    print("\n".join(listening("speech", server.endpoint, metrics)), flush=True)


if __name__ == "__main__":
    main("speech", lambda: SpeechConfig.load(os.environ), build_server, _announce)
