"""Deleting a resource group, ARM's one long-running operation here: the group's speech accounts
and vaults are deleted, each one call of its service with the caller's token, then the group.

The work is a task of its own, so that a caller who hangs up (or whose client gives up) does
not leave the group half emptied: it goes on. If it ends within `sync_seconds`, the DELETE is
answered 200, synchronously, as is honest; else 202 with `Location` and `Retry-After`, as ARM
answers a group's deletion and as the SDKs' pollers read it. The Location is this door's
`/subscriptions/{s}/operationresults/{token}`, the token naming the group and its creation
time, and nothing is kept but the running task: any replica answers a poll, 202 while the
group is there (taking the deletion up again with the poller's token if no task of this door's
runs it: one that died with its process, or one on another replica), 200 once it is gone, or
the refusal that stopped it. A group made again under the same name since is another group:
the poll says the deletion is done, and never deletes the new one.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web

from cmk_trio.arm.envelope import ArmError
from cmk_trio.arm.routing import Params
from cmk_trio.proto.identity.v1 import resources_pb2 as ires
from cmk_trio.rpckit.reasons import Reason

log = logging.getLogger(__name__)

SYNC_SECONDS = 5.0
"""How long a DELETE waits for the deletion before it answers 202 instead."""
RETRY_AFTER_SECONDS = 1
"""What a 202 tells the poller to wait (the SDKs wait their own 30 s without it)."""

Step = Callable[[web.Request, ires.ResourceGroup], Coroutine[Any, Any, None]]  # (Any: a coroutine's send and yield)
Lookup = Callable[[web.Request, str], Coroutine[Any, Any, ires.ResourceGroup | None]]  # (Any: as above)
"""The group of an operation (None: there is none now), or the caller's refusal."""


class GroupDeletions:
    """The deletions running in this door, one task per group."""

    def __init__(self, empty_and_delete: Step, lookup: Lookup, *, sync_seconds: float = SYNC_SECONDS) -> None:
        self._work = empty_and_delete
        self._lookup = lookup
        self.sync_seconds = sync_seconds
        self._running: dict[str, asyncio.Task[None]] = {}

    async def delete(self, request: web.Request, group: ires.ResourceGroup) -> web.Response:
        if await self._settled(self._task(request, group), self.sync_seconds):
            return web.Response(status=200)
        return self._accepted(request, group)

    async def poll(self, request: web.Request, params: Params) -> web.Response:
        name, created = _decoded(params["operation"], params["subscription"])
        group = await self._lookup(request, name)
        if group is None:
            return web.Response(status=200)  # gone: the deletion is done
        if group.create_time.ToNanoseconds() != created:
            return web.Response(status=200)  # the group was deleted, and another made under its name
        if await self._settled(self._task(request, group), 0.0):
            return web.Response(status=200)
        return self._accepted(request, group)

    async def aclose(self) -> None:
        """Stop what runs (the door is stopping); a poll takes it up again elsewhere."""
        running = list(self._running.values())
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    def _task(self, request: web.Request, group: ires.ResourceGroup) -> asyncio.Task[None]:
        key = group.name.lower()
        task = self._running.get(key)
        if task is None:
            # The request's token stays readable on it after it is answered: the task calls with it.
            task = asyncio.create_task(self._work(request, group), name=f"delete {group.name}")
            self._running[key] = task
            task.add_done_callback(lambda done: self._ended(key, done))
        return task

    def _ended(self, key: str, task: asyncio.Task[None]) -> None:
        if self._running.get(key) is task:
            del self._running[key]
        if not task.cancelled() and task.exception() is not None:  # (retrieved: a poll says it again)
            log.info("a resource group's deletion stopped", extra={"group": key, "fault": repr(task.exception())})

    async def _settled(self, task: asyncio.Task[None], seconds: float) -> bool:
        """Whether the deletion ended within `seconds` (its refusal raised); the caller's own
        cancellation does not reach it."""
        if seconds > 0 and not task.done():
            await asyncio.wait({task}, timeout=seconds)  # (which never cancels it)
        if not task.done():
            return False
        task.result()
        return True

    def _accepted(self, request: web.Request, group: ires.ResourceGroup) -> web.Response:
        named = json.dumps({"group": group.name, "created": group.create_time.ToNanoseconds()})
        token = base64.urlsafe_b64encode(named.encode()).decode().rstrip("=")
        location = (f"https://{request.host}/subscriptions/{group.subscription_id}/operationresults/{token}"
                    f"?api-version={request.query.get('api-version', '')}")  # fmt: skip
        return web.Response(status=202, headers={"Location": location, "Retry-After": str(RETRY_AFTER_SECONDS)})


def _decoded(token: str, subscription: str) -> tuple[str, int]:
    """(group id, creation time in ns) from an operation token of this subscription."""
    try:
        found = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        name, created = found["group"], found["created"]
    except (ValueError, binascii.Error, KeyError, TypeError):
        name = created = None
    if not (isinstance(name, str) and isinstance(created, int)
            and name.lower().startswith(f"/subscriptions/{subscription.lower()}/resourcegroups/")):  # fmt: skip
        raise ArmError(404, "OperationNotFound", "No operation of this subscription has that id.",
                       Reason.RESOURCE_ID_MALFORMED, target="operation")  # fmt: skip
    return name, created
