"""`python -m cmk_trio.identity`: the identity service, configured by CMK_* variables
(`cmk serve identity` does the same with flags). It prints the same announcement, and runs
without the CLI: a service does not depend on its front end."""

from __future__ import annotations

import os

from cmk_trio.identity.announcement import Announcement
from cmk_trio.identity.config import IdentityConfig
from cmk_trio.identity.server import IdentityServer, build_server
from cmk_trio.rpckit.config import env_bool
from cmk_trio.rpckit.process import main


def _announce(server: IdentityServer) -> None:
    hide = env_bool(os.environ, "CMK_HIDE_OPERATOR_SECRET", False)
    print("\n".join(Announcement.of(server, show_secret=not hide).lines()), flush=True)


if __name__ == "__main__":
    main("identity", lambda: IdentityConfig.load(os.environ, with_flags=False), build_server, _announce)
