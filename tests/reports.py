"""Files of figures that more than one suite writes (RELIABILITY.md: the fault suite's part
and the container suite's): each suite replaces only its own section, between two markers,
and keeps the rest of the file."""

from __future__ import annotations

from pathlib import Path


def write_section(path: Path, name: str, text: str) -> None:
    """Put `text` in the section `name` of `path`: in place of the section if the file has it,
    else at the end (in the order the suites first wrote them)."""
    begin, end = f"<!-- section {name} -->", f"<!-- /section {name} -->"
    block = f"{begin}\n{text.strip()}\n{end}\n"
    current = path.read_text() if path.exists() else ""
    if begin in current and end in current:
        head, rest = current.split(begin, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        updated = head + block + (f"\n{tail}" if tail else "")
    else:
        updated = current.rstrip("\n") + ("\n\n" if current.strip() else "") + block
    path.write_text(updated)
