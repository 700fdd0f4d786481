"""`python -m cmk_trio.keyvault`: the key vault service, configured by CMK_* variables (`cmk serve
keyvault` does the same with flags), without the CLI: a service does not depend on its front end."""

import os

from cmk_trio.keyvault.config import KeyVaultConfig
from cmk_trio.keyvault.server import build_server
from cmk_trio.rpckit.process import main_saying_where

if __name__ == "__main__":
    main_saying_where("keyvault", lambda: KeyVaultConfig.load(os.environ, with_flags=False), build_server)
