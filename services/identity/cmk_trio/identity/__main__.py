"""`python -m cmk_trio.identity`: the identity service, configured by CMK_* variables
(`cmk serve identity` does the same with flags). It prints the same announcement, and runs
without the CLI: a service does not depend on its front end."""

from __future__ import annotations

import os
import sys

from cmk_trio.identity.config import IdentityConfig
from cmk_trio.identity.server import IdentityServer, build_server
from cmk_trio.launcher.announcement import Announcement
from cmk_trio.launcher.serve import serve_until_stopped
from cmk_trio.rpckit.config import ConfigError, env_bool
from cmk_trio.rpckit.server import run


def _announce(server: IdentityServer) -> None:
    hide = env_bool(os.environ, "CMK_HIDE_OPERATOR_SECRET", False)
    print("\n".join(Announcement.of(server, show_secret=not hide).lines()), flush=True)


def _stopping() -> None:
    print("identity: stopping", file=sys.stderr)


def main() -> None:
    """Serve until SIGTERM or SIGINT; a configuration error exits 1 with its message."""
    try:
        config = IdentityConfig.from_env(os.environ)
    except ConfigError as exc:
        sys.exit(f"error: {exc}")
    run(lambda: serve_until_stopped("identity", config.log_level, lambda: build_server(config), _announce, _stopping))


if __name__ == "__main__":
    main()
