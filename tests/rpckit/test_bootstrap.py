"""The bootstrap's stop: what the service opened is closed, and the data directory
released, even when something that stops before it fails."""

from __future__ import annotations

import pytest

from cmk_trio.identity.config import IdentityConfig
from cmk_trio.rpckit.bootstrap import Bootstrap


async def test_a_failing_step_of_the_stop_does_not_keep_the_others_from_running(tmp_path):
    config = IdentityConfig(data_dir=tmp_path / "data", port=0)
    closed: list[str] = []

    def failing() -> None:
        raise RuntimeError("a follower that cannot stop")

    async with Bootstrap("identity", config, key_files=[tmp_path / "data" / "k.key"]) as boot:
        boot.on_stop(lambda: closed.append("store"))
        boot.before_listener_stops(failing)
    with pytest.raises(RuntimeError):
        await boot.process.stop(0)
    assert closed == ["store"]
    # The data directory was released: a second claim on it is taken (it would be refused).
    async with Bootstrap("identity", config, key_files=[]) as again:
        pass
    await again.process.stop(0)


def test_a_lone_service_says_where_its_doors_are():
    from cmk_trio.rpckit.process import listening

    assert listening("keyvault", "127.0.0.1:1", None) == ["keyvault listening on 127.0.0.1:1"]
    assert listening("keyvault", "127.0.0.1:1", "http://127.0.0.1:3/metrics", "https://127.0.0.1:2") == [
        "keyvault listening on 127.0.0.1:1",
        "keyvault HTTPS door at https://127.0.0.1:2",
        "keyvault metrics at http://127.0.0.1:3/metrics",
    ]
