"""Starting the services: the trio wired together in one process (`cmk up`, the pytest
plugin, `cmk demo --private`, `cmk load --private`) and one service until it is told to stop
(`cmk serve ...`, `python -m cmk_trio.identity`). Neutral ground between the services and
their front ends: it imports no CLI, and prints nothing itself."""
