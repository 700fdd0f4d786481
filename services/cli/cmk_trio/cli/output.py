"""Printing results: aligned tables for people, JSON for scripts (`--output json`), and values
for shell variables (`--output tsv`); `--query` takes JMESPath, as az's does."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

import click
import jmespath
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from cmk_trio.cli.common import State

_PATH = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
FIELDS = re.compile(rf"{_PATH}(?:\s*,\s*{_PATH})*")
"""A query of plain field names, `a.b,c`: what --query took before it took JMESPath. It still
means what it meant: those fields of the result, or of each item of a list."""


def to_dict(message: Message) -> dict[str, Any]:  # JSON of the message's own shape
    """A message as a dict with proto field names; enums by name, defaults included."""
    return MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def emit(output: str, data: Any, columns: Sequence[str] | None = None) -> None:  # any command's JSON result
    """Print `data` (a dict or a list of dicts) as JSON, as tab-separated values, or as a
    table of `columns`. With `--query`, the JMESPath expression's result instead, printed as
    tab-separated values unless the output is JSON (for a shell:
    TENANT=$(cmk tenant create Contoso --query tenant_id))."""
    expression = _query()
    if expression is not None:
        data = select(data, expression)
        if output == "json":
            click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
        else:
            _emit_tsv(data)
        return
    if output == "json":
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
    elif output == "tsv":
        _emit_tsv(data["items"] if isinstance(data, dict) and isinstance(data.get("items"), list) else data)
    else:
        _emit_table(data, columns)


class Selection(dict[str, Any]):  # a result's fields, whatever their JSON
    """The fields plain names picked (`--query a,b`), in the order they were named: tsv keeps
    it (`read A B < <(cmk ... --query a,b)`), where a whole object's fields are sorted."""


def check_query(expression: str) -> str:
    """The --query expression, refused as the command line is when it is not JMESPath (before
    anything is dialled)."""
    if FIELDS.fullmatch(expression.strip()) is None:
        try:
            jmespath.compile(expression)
        except jmespath.exceptions.JMESPathError as exc:
            raise click.BadParameter(f"is not a JMESPath expression: {_first_line(exc)}") from None
    return expression


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def select(data: Any, expression: str) -> Any:  # (as emit's)
    """What `--query EXPRESSION` keeps of `data`: JMESPath over the whole result, as az's
    --query. Plain field names (`a.b,c`) pick those fields of the result, or of each item of a
    list result (one field: its value; several: an object of them, one line in tsv), and name
    the fields there are when one is missing."""
    plain = FIELDS.fullmatch(expression.strip())
    if plain is None:
        try:
            return jmespath.search(expression, data)
        except jmespath.exceptions.JMESPathError as exc:  # (it parsed: a function given the wrong type)
            raise click.ClickException(f"--query: {_first_line(exc)}") from None
    paths = [p.strip() for p in expression.split(",")]
    rows = data
    if isinstance(data, dict) and isinstance(data.get("items"), list) and paths[0].split(".")[0] not in data:
        rows = data["items"]  # (a page of a listing under --output json)
    return [_fields(row, paths) for row in rows] if isinstance(rows, list) else _fields(rows, paths)


def _fields(row: Any, paths: list[str]) -> Any:  # (a result's item)
    values = []
    for path in paths:
        value = row  # walked down by the path's names, checked at each step
        for part in path.split("."):
            if not isinstance(value, dict) or part not in value:
                known = ", ".join(sorted(row)) if isinstance(row, dict) else "nothing"
                raise click.ClickException(f"--query: no field {path!r} in the result; it has {known}")
            value = value[part]
        values.append(value)
    return values[0] if len(values) == 1 else Selection(zip(paths, values, strict=True))


def _emit_tsv(data: Any) -> None:  # (as emit's)
    """az's tsv: nothing for null, a value alone on its line, a list a line per item, an
    object's (or a list's) values on one line separated by tabs, nested ones as JSON. An
    object's values go in the order of its field names, sorted, as az's tsv sorts them; the
    objects of a list share one set of columns (a field one of them lacks is an empty one), so
    a column means the same field on every line. A selection (`--query "[a, b]"`) keeps its
    own order, as do plain field names (`--query a,b`)."""
    if data is None:
        return
    rows = data if isinstance(data, list) else [data]
    picked = next((row for row in rows if isinstance(row, Selection)), None)
    columns = list(picked) if picked is not None else sorted({k for row in rows if isinstance(row, dict) for k in row})
    for item in rows:
        if item is None:
            continue
        if isinstance(item, dict):
            values = [item.get(c) for c in columns]
        else:
            values = item if isinstance(item, list) else [item]
        click.echo("\t".join(_word(v) for v in values))


def _word(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return "" if value is None else str(value)


def _emit_table(data: Any, columns: Sequence[str] | None) -> None:  # (as emit's)
    rows = data if isinstance(data, list) else [data]
    if not rows:
        click.echo("(none)")
        return
    if isinstance(data, dict) and columns is None:
        width = max((len(k) for k in data), default=0)
        for key, value in data.items():
            click.echo(f"{key.ljust(width)}  {_cell(value)}")
        return
    cols = list(columns or rows[0].keys())
    table = [[_cell(row.get(c, "")) for c in cols] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in table)) for i, c in enumerate(cols)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip())
    for r in table:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def _query() -> str | None:
    """The --query expression, if the command line of the command running has one."""
    context = click.get_current_context(silent=True)
    state = context.find_object(State) if context is not None else None
    return state.query if state is not None and state.query else None


def _cell(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)


def emit_messages(
    output: str, messages: Iterable[Message], columns: Sequence[str], extra: dict[str, object] | None = None
) -> None:
    """Print a list of messages; in JSON with `extra` keys (such as next_page_token) beside
    them. A --query runs over the list itself, as over an az list command's array (a next
    page's token then goes to standard error, as in a table)."""
    items = [to_dict(m) for m in messages]
    if output == "json" and extra is not None and _query() is None:
        emit(output, {"items": items, **extra})
    else:
        emit(output, items, columns)
        if extra and extra.get("next_page_token"):
            click.echo(f"(more: --page-token {extra['next_page_token']})", err=True)
