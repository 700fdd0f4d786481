"""Limits (issue 12, finding 8): 30 concurrent token requests with wrong secrets slowed every
call of all three services to seconds, because scrypt shared one thread pool with everything
and nothing bounded guesses, calls or streams. Now scrypt has a bounded pool of its own, a
client whose secrets keep failing is slowed down (without locking its real secret out:
recognised from memory), and each service caps the calls and streams it serves at once."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import grpc
import pytest

from cmk_trio.client.identity import ClientCredentials
from cmk_trio.identity.crypto import SecretHasher
from cmk_trio.identity.sign_ins import SecretChecks
from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.admission import AdmissionInterceptor, CallLimits, Shares
from cmk_trio.rpckit.errors import ResourceExhausted, Unauthenticated
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.server import start_server
from cmk_trio.rpckit.status import ErrorInterceptor, error_info_of
from tests.identity.helpers import make_tenant

SERVICE = "cmk.test.v1.Slow"


class RecordingHasher(SecretHasher):
    """A hasher that says which thread it ran on, and can be held."""

    def __init__(self) -> None:
        super().__init__(cost=10)
        self.threads: set[str] = set()
        self.hold = threading.Event()
        self.hold.set()

    def verify(self, secret: str, encoded: str) -> bool:  # type: ignore[override]
        self.threads.add(threading.current_thread().name)
        self.hold.wait(10)
        return SecretHasher.verify(secret, encoded)


async def test_secret_checks_run_on_their_own_bounded_pool(clock):
    hasher = RecordingHasher()
    checks = SecretChecks(hasher, clock, workers=1, queue=2, free_failures=10)
    client = ("tenant", "client")
    try:
        encoded = await checks.hash("a-secret-of-twenty-chars", b"s" * 16, owner=client)
        assert await checks.check(client, "a-secret-of-twenty-chars", encoded)
        assert hasher.threads and all(name.startswith("scrypt") for name in hasher.threads)
        hasher.hold.clear()  # the pool is busy: one check runs, two wait, a fourth is refused at once
        waiting = []
        for _ in range(3):
            waiting.append(asyncio.ensure_future(checks.check(client, "x", encoded)))
            await asyncio.sleep(0.01)
        with pytest.raises(ResourceExhausted) as busy:
            await checks.check(client, "x", encoded)
        assert busy.value.reason is Reason.SIGN_INS_BUSY and busy.value.metadata["retry_after_seconds"]
        hasher.hold.set()
        assert await asyncio.gather(*waiting) == [False, False, False]
    finally:
        hasher.hold.set()
        checks.close()


async def test_a_client_whose_secrets_keep_failing_waits_a_doubling_pause_then_is_admitted(clock):
    checks = SecretChecks(SecretHasher(cost=10), clock, free_failures=3, max_pause=timedelta(seconds=8))
    client = ("tenant", "client")

    async def attempt_that_fails() -> None:
        await checks.admit(client)
        await checks.failed(client)

    for _ in range(3):
        await attempt_that_fails()
    with pytest.raises(ResourceExhausted) as paused:
        await checks.admit(client)
    assert paused.value.reason is Reason.SIGN_IN_THROTTLED and paused.value.metadata["retry_after_seconds"] == "1"
    clock.advance(1)
    await attempt_that_fails()
    for _ in range(60):  # many more failures, each after its pause: the pause doubles, up to max_pause
        clock.advance(2)
        try:
            await attempt_that_fails()
        except ResourceExhausted:
            continue
    clock.advance(8)
    await attempt_that_fails()  # admitted after the pause, and failed again
    with pytest.raises(ResourceExhausted) as longest:
        await checks.admit(client)
    assert longest.value.metadata["retry_after_seconds"] == "8"  # never more than max_pause (no overflow)
    clock.advance(8)
    await checks.admit(client)
    await checks.succeeded(client)
    await checks.admit(client)
    await checks.admit(("tenant", "another client"))  # each client its own count


async def test_concurrent_guesses_cannot_all_pass_before_the_first_has_failed(clock):
    """Found in review: admit() reserved nothing, so 60 concurrent wrong guesses were all
    hashed. Each admitted attempt now counts at once."""
    checks = SecretChecks(SecretHasher(cost=10), clock, free_failures=5)
    admitted = 0
    for _ in range(60):  # as 60 calls arriving together would (nothing has failed yet)
        try:
            await checks.admit(("tenant", "client"))
            admitted += 1
        except ResourceExhausted:
            pass
    assert admitted == 5  # the five free attempts; the rest wait for the pause


async def test_wrong_secrets_are_throttled_but_the_real_client_still_signs_in(operator, channel, clock):
    tenant = await make_tenant(operator, channel, clock, "Guessed")
    real = tenant.admin_credentials
    await operator.issue_token(real, audiences.DIRECTORY)  # verified once: recognised from memory now
    wrong = ClientCredentials(real.tenant_id, real.client_id, "cmk~" + "w" * 40)
    reasons = []
    for _ in range(8):
        try:
            await operator.issue_token(wrong, audiences.DIRECTORY)
        except (Unauthenticated, ResourceExhausted) as exc:
            reasons.append(exc.reason)
    assert reasons[:5] == [Reason.INVALID_CLIENT_CREDENTIALS] * 5
    assert set(reasons[5:]) == {Reason.SIGN_IN_THROTTLED}  # refused before any slow hash
    assert (await operator.issue_token(real, audiences.DIRECTORY)).access_token  # the real client is not locked out
    # A client id that does not exist is paused the same way: the pause tells nothing.
    unknown = ClientCredentials(real.tenant_id, str(uuid.uuid4()), "cmk~" + "w" * 40)
    made_up = []
    for _ in range(8):
        try:
            await operator.issue_token(unknown, audiences.DIRECTORY)
        except (Unauthenticated, ResourceExhausted) as exc:
            made_up.append(exc.reason)
    assert made_up == reasons


@pytest.fixture
async def slow() -> AsyncIterator[tuple[grpc.aio.Channel, asyncio.Event]]:
    release = asyncio.Event()

    async def wait(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        await release.wait()
        return b"done"

    async def watch(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> AsyncIterator[bytes]:
        yield b"open"
        await release.wait()

    handlers: dict[str, grpc.RpcMethodHandler[bytes, bytes]] = {
        "Wait": grpc.unary_unary_rpc_method_handler(wait),
        "Watch": grpc.unary_stream_rpc_method_handler(watch),
    }

    def register(server: grpc.aio.Server) -> None:
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))

    # 4 calls: 1 for sign-ins, 1 kept for the platform, 2 for everyone else (any one caller may take both).
    shares = Shares(calls=4, streams=1, sign_in_percent=25, platform_percent=25, caller_percent=100, tenant_percent=100)
    running = await start_server(
        register=register,
        service_names=[SERVICE],
        interceptors=[ErrorInterceptor("t"), AdmissionInterceptor(CallLimits(shares))],
    )
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        yield channel, release
    finally:
        release.set()
        await channel.close()
        await running.stop(0)


async def test_calls_and_streams_beyond_the_caps_are_refused_with_a_reason(slow):
    channel, release = slow
    wait: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(f"/{SERVICE}/Wait")
    watch: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(f"/{SERVICE}/Watch")
    busy = [wait(b"") for _ in range(2)]
    stream = watch(b"")
    assert await stream.read() == b"open"
    await asyncio.sleep(0.1)  # both calls are in progress now
    with pytest.raises(grpc.aio.AioRpcError) as calls:
        await wait(b"")
    with pytest.raises(grpc.aio.AioRpcError) as streams:
        await watch(b"").read()
    for caught, reason in ((calls, "TOO_MANY_CALLS"), (streams, "TOO_MANY_STREAMS")):
        info = error_info_of(caught.value)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and info and info.reason == reason
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    probe: Any = health_pb2_grpc.HealthStub(channel)  # a probe is never capped (its methods are set at run time)
    assert (await probe.Check(health_pb2.HealthCheckRequest())).status == health_pb2.HealthCheckResponse.SERVING
    release.set()
    assert await asyncio.gather(*busy) == [b"done", b"done"]
    assert await wait(b"") == b"done"  # the slots are free again
