"""`python -m cmk_trio.cli` is `cmk`."""

from cmk_trio.cli.main import main

main()
