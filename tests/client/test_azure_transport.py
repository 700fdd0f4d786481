"""cmk_trio.client.azure's transports: which hosts go to the door, and what a door is."""

from __future__ import annotations

import pytest

from cmk_trio.client.azure import DoorAdapter


def test_the_door_takes_the_names_under_its_suffixes_only():
    adapter = DoorAdapter("127.0.0.1:8443")
    for routed in ("contoso.vault.azure.net", "CONTOSO.Vault.Azure.Net", "vault.azure.net"):
        assert adapter.routes(routed), routed
    for other in ("vault.azure.net.example", "evilvault.azure.net", "login.microsoftonline.com", None, ""):
        assert not adapter.routes(other), other


@pytest.mark.parametrize("door", ["127.0.0.1", "127.0.0.1:", ":8443", "127.0.0.1:²", "127.0.0.1:http"])
def test_a_door_is_host_and_port(door):
    with pytest.raises(ValueError, match="host:port"):
        DoorAdapter(door)
