"""One retry layer, and the right peer: the channels the key vault and speech open to their peers carry no retry
policy (the caller's own client is the one that retries), so a refusal is not multiplied by
nested backoffs. Seen by wrapping the function the services open them with."""

from __future__ import annotations

from typing import Any

import pytest

import cmk_trio.platform.directory_link as directory_link
import cmk_trio.speech.server as speech_server
from cmk_trio.client import channel as client_channel
from cmk_trio.speech.server import SpeechServer

Opened = list[tuple[str, bool, str | None]]


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> Opened:
    seen: Opened = []
    real = client_channel.open_channel

    def recording(
        endpoint: str, tls: Any = None, interceptors: Any = (), *, retries: bool = True, peer: str | None = None
    ) -> Any:
        seen.append((endpoint, retries, peer))
        return real(endpoint, tls, interceptors, retries=retries, peer=peer)

    monkeypatch.setattr(directory_link, "open_channel", recording)
    monkeypatch.setattr(speech_server, "open_channel", recording)
    return seen


async def test_the_services_call_their_peers_without_retries(
    opened: Opened, speech_cmk: SpeechServer, identity, keyvault
):
    peers = {identity.endpoint, keyvault.endpoint}
    to_peers = [(endpoint, retries, peer) for endpoint, retries, peer in opened if endpoint in peers]
    # The vault's link to identity, speech's link to identity, speech's channel to the vault.
    assert sorted(e for e, _, _ in to_peers) == sorted([identity.endpoint, identity.endpoint, keyvault.endpoint])
    assert all(retries is False for _, retries, _ in to_peers), to_peers
    # Each says which service it must reach (over TLS, its certificate must name it).
    named = {identity.endpoint: "identity", keyvault.endpoint: "keyvault"}
    assert all(peer == named[endpoint] for endpoint, _, peer in to_peers), to_peers
