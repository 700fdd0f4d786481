"""The development time control: refused unless the flag is on, operator only, and it moves
what depends on the clock (purge dates in the vault, token expiry everywhere)."""

from __future__ import annotations

import grpc
import pytest

from cmk_trio.client.channel import open_channel
from cmk_trio.client.keyvault import KeyVaultClient
from cmk_trio.identity.server import build_server as build_identity
from cmk_trio.keyvault.config import KeyVaultConfig
from cmk_trio.keyvault.server import build_server as build_keyvault
from cmk_trio.proto.common.v1 import dev_service_pb2 as pb
from cmk_trio.proto.common.v1 import dev_service_pb2_grpc as pb_grpc
from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.errors import FailedPrecondition, Unauthenticated
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.testing import expect_rpc_error
from tests.conftest import identity_config, platform_credentials
from tests.keyvault.conftest import make_customer


async def advance(channel: grpc.aio.Channel, token: str, seconds: int):
    return pb_grpc.DevServiceStub(channel).AdvanceClock(
        pb.AdvanceClockRequest(seconds=seconds), metadata=(("authorization", f"Bearer {token}"),)
    )


async def test_the_clock_is_fixed_unless_the_flag_is_on(keyvault, kv_channel, operator, channel):
    token = await operator.token_for(audiences.MANAGEMENT)
    await expect_rpc_error(
        await advance(kv_channel, token, 60), grpc.StatusCode.FAILED_PRECONDITION, Reason.CLOCK_CONTROL_DISABLED
    )
    directory_token = await operator.token_for(audiences.DIRECTORY)
    await expect_rpc_error(
        await advance(channel, directory_token, 60), grpc.StatusCode.FAILED_PRECONDITION, Reason.CLOCK_CONTROL_DISABLED
    )


async def test_with_the_flag_the_operator_moves_time_for_purge_and_token_expiry(tmp_path, clock):
    # The shared identity fixture's clock is fixed; this test starts its own pair with the flag.
    identity = await build_identity(identity_config(tmp_path / "id", dev_time_control=True), clock=clock)
    id_channel = open_channel(identity.endpoint)
    try:
        from cmk_trio.client.identity import IdentityClient
        from tests.conftest import operator_credentials

        op = IdentityClient(id_channel, operator_credentials(identity), clock=clock)
        config = KeyVaultConfig(
            data_dir=tmp_path / "kv", identity_endpoint=identity.endpoint, port=0, dev_time_control=True,
            credentials=await platform_credentials(op, id_channel, clock, "keyvault"),
        )  # fmt: skip
        keyvault = await build_keyvault(config, clock=clock)
        kv_channel = open_channel(keyvault.endpoint)
        try:
            customer = await make_customer(op, id_channel, kv_channel, clock, "Contoso")
            await customer.vaults.create_vault("timed", customer.subscription_id, "rg1", "westeurope",
                                               retention_days=7, purge_protection=True)  # fmt: skip
            key = await customer.vaults.create_key("timed", "cmk")
            await customer.vaults.delete_key(key.key_id)
            with pytest.raises(FailedPrecondition):
                await customer.vaults.purge_key(key.key_id)
            # Not the tenant admin: only the operator moves the clock.
            admin_token = await customer.tenant.admin_client.token_for(audiences.MANAGEMENT)
            await expect_rpc_error(
                await advance(kv_channel, admin_token, 60), grpc.StatusCode.PERMISSION_DENIED, Reason.OPERATOR_REQUIRED
            )
            moved = await (await advance(kv_channel, await op.token_for(audiences.MANAGEMENT), 8 * 86400))
            assert moved.offset_seconds == 8 * 86400
            # Tokens from identity (whose clock did not move) are now expired for the vault.
            fresh_client = KeyVaultClient(kv_channel, customer.tenant.admin_client.token_for)
            with pytest.raises(Unauthenticated) as expired:
                await fresh_client.purge_key(key.key_id)
            assert expired.value.reason is Reason.TOKEN_EXPIRED
            # Move identity's clock too: the client, refused its token as expired, gets a new
            # one by itself, current on the vault's clock; the purge date has passed.
            await (await advance(id_channel, await op.token_for(audiences.DIRECTORY), 8 * 86400))
            await fresh_client.purge_key(key.key_id)
        finally:
            await kv_channel.close()
            await keyvault.stop(0)
    finally:
        await id_channel.close()
        await identity.stop(0)
