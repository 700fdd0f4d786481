"""`python -m services.cli` is `cmk`."""

from services.cli.main import main

main()
