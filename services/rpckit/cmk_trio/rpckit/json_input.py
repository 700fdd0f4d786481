"""JSON from callers (a token's header, a page token, an application's configuration,
imported key material), parsed with a bound on nesting: Python's json module recurses once
per level, so a document nested a few thousand deep raised RecursionError, an INTERNAL
error with a traceback, instead of a refusal with a reason."""

from __future__ import annotations

import json
import re
from typing import Any

Json = Any  # what a document holds is known only from the document: readers check each field
"""A parsed JSON value. Its type is whatever the caller sent, so the code that reads one checks
each field it uses (and refuses the document otherwise); typing it as a union of JSON's types
would only move the same checks behind casts."""

JsonObject = dict[str, Json]
"""A parsed JSON object."""

MAX_DEPTH = 64
"""More levels than any document we accept needs (a JWK is 1, a configuration rarely 10)."""

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


class JsonTooDeep(ValueError):
    """The document nests deeper than the bound (a ValueError, as json's own errors are)."""


def loads(text: str | bytes, *, max_depth: int = MAX_DEPTH) -> Json:
    """`json.loads`, refusing (JsonTooDeep) a document that nests deeper than `max_depth`
    before the parser sees it."""
    if isinstance(text, bytes):
        text = text.decode()
    depth = deepest = 0
    for bracket in _BRACKET.finditer(_STRING.sub('""', text)):
        depth += 1 if bracket.group() in "[{" else -1
        deepest = max(deepest, depth)
        if deepest > max_depth:
            raise JsonTooDeep(f"nested deeper than {max_depth} levels")
    return json.loads(text)
