"""ARM's paths, matched as ARM matches them: case-insensitively (clients write
`resourcegroups` and `resourceGroups`, `Microsoft.KeyVault` and `microsoft.keyvault`), with
a trailing slash ignored. aiohttp's router is case-sensitive, so the front has one catch-all
route and this table decides."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

Params = Mapping[str, str]
Handler = Callable[[web.Request, Params], Awaitable[web.StreamResponse]]

_SEGMENT = re.compile(r"\{(\w+)(\*?)\}")


_SLASHES = re.compile(r"/{2,}")
_SCOPE = r"/subscriptions/[^/]+(?:/resourceGroups/[^/]+(?:/providers/[^/]+(?:/[^/]+/[^/]+)+?)?)?"


@dataclass(frozen=True)
class Route:
    """One operation: its method, path pattern, handler, name (as the metrics and logs call
    it), the provider whose api-versions it takes, and whether it needs no token."""

    method: str
    pattern: re.Pattern[str]
    handler: Handler
    name: str
    provider: str
    public: bool = False


class Router:
    """Routes by method and path; a path that matches with another method is a 405."""

    def __init__(self) -> None:
        self._routes: list[Route] = []

    @property
    def routes(self) -> tuple[Route, ...]:
        return tuple(self._routes)

    def add(self, method: str, path: str, handler: Handler, name: str, provider: str, *, public: bool = False) -> None:
        """`path` with `{param}` for one segment, e.g. "/subscriptions/{subscription}", and
        `{scope*}` for a role scope: a subscription, or a resource group or resource under one
        ("/subscriptions/{s}[/resourceGroups/{rg}[/providers/...]]")."""
        regex = _SEGMENT.sub(
            lambda m: f"(?P<{m.group(1)}>{_SCOPE if m.group(2) else '[^/]+'})",
            re.escape(path).replace(r"\{", "{").replace(r"\}", "}").replace(r"\*", "*"),
        )
        self._routes.append(Route(method, re.compile(regex, re.IGNORECASE), handler, name, provider, public))

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | list[str]:
        """The route and its parameters; else the methods the path has (empty: no such path)."""
        path = _SLASHES.sub("/", path).rstrip("/") or "/"  # (clients join "/{scope}" with a scope's own "/")
        allowed: list[str] = []
        for route in self._routes:
            found = route.pattern.fullmatch(path)
            if found is None:
                continue
            if route.method == method:
                return route, found.groupdict()
            allowed.append(route.method)
        return allowed
