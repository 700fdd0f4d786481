"""Speech replicas on one PostgreSQL database: a change made through one replica is seen by
the others' caches, the data-key cache included."""

from __future__ import annotations

import pytest

from cmk_trio.client.channel import open_channel
from cmk_trio.client.speech import SpeechClient
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.speech.server import build_server
from tests.speech.cmk_world import refusal
from tests.waiting import eventually


@pytest.fixture
def database_url(postgres_url: str) -> str:
    """Every service of these tests on PostgreSQL, whatever engine the run uses."""
    return postgres_url


async def test_a_replica_forgets_a_data_key_once_another_removed_the_resources_identity(world, clock):
    """The other replica had the data key cached; removing the identity does not change the
    wrapped key, so its cache must learn of the change from the resource itself (its
    generation) or from the directory's events, and refuse."""
    other = await build_server(world.server.config, clock=clock)  # same database, same key files
    channel = open_channel(other.endpoint)
    try:
        through_other = SpeechClient(channel, world.speech._tokens)
        await world.set_encryption(key_uri=world.key.key_id, key_subscription_id=world.subscription_id)
        await through_other.list_applications(world.resource.name)  # its data key, cached there
        await world.identity(assign=False, confirm=True)  # through the first replica

        async def read_through_other() -> None:
            await through_other.list_applications(world.resource.name)

        refused = await eventually(lambda: refusal(read_through_other), "the other replica refusing")
        assert refused is Reason.CUSTOMER_KEY_IDENTITY_MISSING
    finally:
        await channel.close()
        await other.stop(grace=0)


async def test_a_replica_reads_data_keys_that_another_rewrapped_to_a_rotated_ring(world, clock):
    """A rolling restart after `rotate-master-key`: the first replica restarted rewraps every
    Microsoft-managed data key to the new ring version; one not restarted yet takes that
    version from the ring file when it meets it, instead of refusing the data."""
    from cmk_trio.speech.envelope import rotate_ring_file

    config = world.server.config
    other = await build_server(config, clock=clock)  # still on the ring as it was
    channel = open_channel(other.endpoint)
    try:
        through_other = SpeechClient(channel, world.speech._tokens)
        before = await through_other.list_applications(world.resource.name)
        await world.server.stop(grace=0)
        assert rotate_ring_file(config.ring_path).current == "v2"
        restarted = await build_server(config, clock=clock)  # rewraps to v2 at start
        try:
            stored = await restarted.store.get_resource(world.resource.name)
            assert stored is not None and stored.wrapping_key == "v2"
            assert await through_other.list_applications(world.resource.name) == before
        finally:
            await restarted.stop(grace=0)
    finally:
        await channel.close()
        await other.stop(grace=0)
