"""What several providers ask of the services in the same way: every vault or speech account
of a subscription (page after page, with the caller's token), whether a resource group is
there, and a request's required location."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

from aiohttp import web

from cmk_trio.arm.envelope import ArmError
from cmk_trio.arm.front import ask
from cmk_trio.arm.routing import Params
from cmk_trio.proto.identity.v1 import identity_service_pb2 as ipb
from cmk_trio.proto.identity.v1 import identity_service_pb2_grpc as igrpc
from cmk_trio.proto.keyvault.v1 import keyvault_service_pb2 as kpb
from cmk_trio.proto.keyvault.v1 import keyvault_service_pb2_grpc as kgrpc
from cmk_trio.proto.keyvault.v1 import resources_pb2 as kres
from cmk_trio.proto.speech.v1 import resources_pb2 as sres
from cmk_trio.proto.speech.v1 import speech_service_pb2 as spb
from cmk_trio.proto.speech.v1 import speech_service_pb2_grpc as sgrpc
from cmk_trio.rpckit.reasons import Reason

T = TypeVar("T")
PAGE = 1000


async def _pages(fetch: Callable[[str], Awaitable[tuple[Sequence[T], str]]]) -> list[T]:
    """Every item of a listing: `fetch(page_token)` gives a page's items and the next token."""
    found: list[T] = []
    token = ""
    while True:
        items, token = await fetch(token)
        found += items
        if not token:
            return found


async def all_vaults(
    request: web.Request, vaults: kgrpc.VaultServiceAsyncStub, subscription: str, *, deleted: bool = False
) -> list[kres.Vault]:
    parent = f"subscriptions/{subscription.lower()}"

    async def fetch(token: str) -> tuple[Sequence[kres.Vault], str]:
        if deleted:
            gone = await ask(request, vaults.ListDeletedVaults,
                             kpb.ListDeletedVaultsRequest(parent=parent, page_size=PAGE, page_token=token))  # fmt: skip
            return gone.vaults, gone.next_page_token
        page = await ask(request, vaults.ListVaults, kpb.ListVaultsRequest(parent=parent, page_size=PAGE,
                                                                           page_token=token))  # fmt: skip
        return page.vaults, page.next_page_token

    return await _pages(fetch)


async def all_accounts(
    request: web.Request, speech: sgrpc.SpeechResourceServiceAsyncStub, subscription: str
) -> list[sres.SpeechResource]:
    parent = f"subscriptions/{subscription.lower()}"

    async def fetch(token: str) -> tuple[Sequence[sres.SpeechResource], str]:
        asked = spb.ListSpeechResourcesRequest(parent=parent, page_size=PAGE, page_token=token)
        page = await ask(request, speech.ListSpeechResources, asked)
        return page.resources, page.next_page_token

    return await _pages(fetch)


async def group_exists(request: web.Request, groups: igrpc.ResourceGroupServiceAsyncStub, params: Params) -> None:
    """The route's resource group is there (and the caller may see it), or its refusal."""
    name = f"/subscriptions/{params['subscription']}/resourceGroups/{params['group']}"
    await ask(request, groups.GetResourceGroup, ipb.GetResourceGroupRequest(name=name))


def required_location(body: Mapping[str, object]) -> str:
    location = body.get("location")
    if not isinstance(location, str) or not location:
        raise ArmError(400, "LocationRequired", "The location property is required for this definition.",
                       Reason.FIELD_REQUIRED, target="location")  # fmt: skip
    return location
