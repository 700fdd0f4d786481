"""Printing results: JSON for scripts (`--output json`), aligned tables for people."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import click
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from cmk_trio.cli.common import State


def to_dict(message: Message) -> dict[str, Any]:  # JSON of the message's own shape
    """A message as a dict with proto field names; enums by name, defaults included."""
    return MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def emit(output: str, data: Any, columns: Sequence[str] | None = None) -> None:  # any command's JSON result
    """Print `data` (a dict or a list of dicts) as JSON, or as a table of `columns`; with
    `--query FIELD[,FIELD...]`, only those fields' values, tab-separated, a line per item
    (for a shell: TENANT=$(cmk tenant create Contoso --query tenant_id))."""
    query = _query()
    if query:
        _emit_fields(data, query)
        return
    if output == "json":
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
        return
    rows = data if isinstance(data, list) else [data]
    if not rows:
        click.echo("(none)")
        return
    if isinstance(data, dict) and columns is None:
        width = max(len(k) for k in data)
        for key, value in data.items():
            click.echo(f"{key.ljust(width)}  {_cell(value)}")
        return
    cols = list(columns or rows[0].keys())
    table = [[_cell(row.get(c, "")) for c in cols] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in table)) for i, c in enumerate(cols)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip())
    for r in table:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def _query() -> list[str]:
    """The fields --query asks for, if any (on the command line of the command running)."""
    context = click.get_current_context(silent=True)
    state = context.find_object(State) if context is not None else None
    found = state.query if state is not None else None
    return [p.strip() for p in found.split(",") if p.strip()] if found else []


def _emit_fields(data: Any, paths: list[str]) -> None:  # (as emit's)
    rows = data.get("items", [data]) if isinstance(data, dict) else data
    for row in rows if isinstance(rows, list) else [rows]:
        values = []
        for path in paths:
            value: Any = row  # walked down by the path's names, checked at each step
            for part in path.split("."):
                if not isinstance(value, dict) or part not in value:
                    known = ", ".join(sorted(row)) if isinstance(row, dict) else "nothing"
                    raise click.ClickException(f"--query: no field {path!r} in the result; it has {known}")
                value = value[part]
            values.append(value if isinstance(value, str) else json.dumps(value) if isinstance(value, dict | list)
                          else str(value).lower() if isinstance(value, bool) else str(value))  # fmt: skip
        click.echo("\t".join(values))


def _cell(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)


def emit_messages(
    output: str, messages: Iterable[Message], columns: Sequence[str], extra: dict[str, object] | None = None
) -> None:
    """Print a list of messages; in JSON with `extra` keys (such as next_page_token) beside them."""
    items = [to_dict(m) for m in messages]
    if output == "json" and extra is not None:
        emit(output, {"items": items, **extra})
    else:
        emit(output, items, columns)
        if extra and extra.get("next_page_token") and output != "json":
            click.echo(f"(more: --page-token {extra['next_page_token']})", err=True)
