"""Reading an HTTPS door's request body within a size and a time limit, so that a slow or
oversized body is refused with a reason and holds no place among the calls meanwhile."""

from __future__ import annotations

import asyncio

from aiohttp import web

from cmk_trio.rpckit import errors
from cmk_trio.rpckit.reasons import Reason

BODY_SECONDS = 5.0
"""How long a body may take to arrive."""


async def read_body(request: web.Request, limit: int, *, seconds: float = BODY_SECONDS) -> bytes:
    """The body, at most `limit` bytes, within `seconds`; refused (InvalidArgument) as soon as
    it says or shows itself larger, arrives too slowly, or cannot be read as its headers say."""
    if not request.can_read_body:
        return b""
    too_large = errors.InvalidArgument(Reason.REQUEST_TOO_LARGE, f"this request is at most {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    chunks, size = [], 0
    try:
        async with asyncio.timeout(seconds):
            async for chunk in request.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > limit:
                    raise too_large
                chunks.append(chunk)
    except TimeoutError:
        raise errors.InvalidArgument(
            Reason.REQUEST_TOO_SLOW, f"the request's body did not arrive within {seconds:g} s"
        ) from None
    except web.RequestPayloadError:  # (a body its Content-Encoding or chunking does not describe)
        raise errors.InvalidArgument(
            Reason.REQUEST_MALFORMED, "the request's body cannot be read as its headers describe it"
        ) from None
    return b"".join(chunks)
