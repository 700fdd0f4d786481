"""The role-decision cache: yes-answers remembered, and a yes asked before a revoking
directory event and answered after it not remembered (it would outlive the revocation)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from cmk_trio.platform.directory_feeds import RoleChecker
from cmk_trio.proto.identity.v1 import resources_pb2 as res


class SlowDirectory:
    """CheckAccess that says yes when released, counting the questions."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()
        self.asked = asyncio.Event()

    async def check_access(self, scope: str, access: int, principal_id: str) -> SimpleNamespace:
        self.calls += 1
        self.asked.set()
        await self.release.wait()
        return SimpleNamespace(allowed=True)


async def test_a_yes_is_remembered(clock):
    directory = SlowDirectory()
    directory.release.set()
    checker = RoleChecker(directory, clock)  # type: ignore[arg-type]
    assert await checker.allowed("p", "/subscriptions/s", 1)
    assert await checker.allowed("p", "/SUBSCRIPTIONS/s", 1)
    assert directory.calls == 1


async def test_a_yes_overtaken_by_a_revoking_event_is_used_once_and_not_remembered(clock):
    directory = SlowDirectory()
    checker = RoleChecker(directory, clock)  # type: ignore[arg-type]
    asking = asyncio.create_task(checker.allowed("p", "/subscriptions/s", 1))
    await directory.asked.wait()
    await checker.on_event(res.Event(type=res.ROLE_ASSIGNMENTS_CHANGED))  # the role is removed meanwhile
    directory.release.set()
    assert await asking  # the call that asked before the event gets its answer
    await checker.allowed("p", "/subscriptions/s", 1)
    assert directory.calls == 2  # but the next call asks again
