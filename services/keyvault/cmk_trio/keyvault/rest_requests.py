"""What the door's routes read from a request once the door has let it in (rest_door's
middleware): the vault it is for, its body, the object it names, and the paging of a listing
as Key Vault does it (`maxresults`, `$skiptoken`, `nextLink`)."""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web

from cmk_trio.keyvault import rest_shapes as shapes
from cmk_trio.rpckit import errors
from cmk_trio.rpckit.json_input import JsonObject
from cmk_trio.rpckit.reasons import Reason

VAULT = web.RequestKey("vault", str)
"""The vault named by the host the client dialled."""
BODY = web.RequestKey("body", bytes)
"""The body, read by the door within its time and size limits before the route runs."""
MAX_PAGE = 25
"""Key Vault's largest `maxresults`."""


def vault(request: web.Request) -> str:
    return request[VAULT]


def parent(request: web.Request) -> str:
    return f"vaults/{request[VAULT]}"


def body(request: web.Request) -> JsonObject:
    return shapes.body_of(request[BODY])


def named(request: web.Request, collection: str, version: str | None = None) -> str:
    """The resource name of the key or secret the path names (with `version`, of that version)."""
    name = f"vaults/{request[VAULT]}/{collection}/{request.match_info['name']}"
    return f"{name}/versions/{version}" if version else name


def path_version(request: web.Request) -> str | None:
    return request.match_info.get("version") or None


def page(request: web.Request) -> tuple[int, str]:
    raw = request.query.get("maxresults", str(MAX_PAGE))
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_PAGE:
        raise errors.invalid_field("maxresults", Reason.FIELD_INVALID, f"must be 1 to {MAX_PAGE}")
    return int(raw), request.query.get("$skiptoken", "")


def listing(request: web.Request, items: list[dict[str, object]], size: int, token: str) -> web.Response:
    """A page of a listing, with the nextLink that asks for the one after it."""
    next_link = None
    if token:
        query = urlencode({"api-version": request.query["api-version"], "maxresults": size, "$skiptoken": token})
        next_link = f"https://{request.host}{request.path}?{query}"
    return web.json_response({"value": items, "nextLink": next_link})
