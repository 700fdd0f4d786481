"""`python -m cmk_trio.speech`: the speech service, configured by CMK_* variables (`cmk serve
speech` does the same with flags), without the CLI: a service does not depend on its front end."""

import os

from cmk_trio.rpckit.process import main_saying_where
from cmk_trio.speech.config import SpeechConfig
from cmk_trio.speech.server import build_server

if __name__ == "__main__":
    main_saying_where("speech", lambda: SpeechConfig.load(os.environ, with_flags=False), build_server)
