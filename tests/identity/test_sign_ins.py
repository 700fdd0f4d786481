"""Signing in with a client secret, over both doors (gRPC IssueToken and the HTTP token
endpoint), as issue 22 item 7 asks: one slow hash per attempt whatever the principal holds
(a secret names its own id), a limit on the secrets a principal holds, and the pause after
failures on the attempt it should fall on, however long the failed checks took."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import timedelta

import aiohttp
import grpc
import pytest

from cmk_trio.client.channel import open_channel
from cmk_trio.client.identity import ClientCredentials, IdentityClient
from cmk_trio.identity.client_secrets import MAX_CLIENT_SECRETS
from cmk_trio.identity.crypto import RandomBytes, SecretHasher
from cmk_trio.identity.model import ClientSecret
from cmk_trio.identity.server import IdentityServer, build_server
from cmk_trio.proto.identity.v1 import identity_service_pb2 as pb
from cmk_trio.proto.identity.v1 import identity_service_pb2_grpc as pb_grpc
from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.clock import FakeClock
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.status import error_from_rpc
from cmk_trio.rpckit.testing import expect_rpc_error
from tests.conftest import TEST_HASH_COST, identity_config, operator_credentials
from tests.identity.helpers import make_principal, make_tenant
from tests.identity.test_oidc_http import post_token, token_form


@dataclass(frozen=True)
class CountingHasher(SecretHasher):
    """The service's hasher, counting the slow hashes it runs; each check may also move the
    fake clock on (`seconds_per_check`), as a slow check on a busy machine would."""

    clock: FakeClock | None = None
    seconds_per_check: float = 0.0
    calls: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hash(self, secret: str, random: RandomBytes = os.urandom) -> str:
        with self.lock:
            self.calls.append("hash")
        return SecretHasher(self.cost).hash(secret, random)

    def verify(self, secret: str, encoded: str) -> bool:  # type: ignore[override]
        with self.lock:
            self.calls.append("verify")
        if self.clock is not None and self.seconds_per_check:
            self.clock.advance(self.seconds_per_check)
        return SecretHasher.verify(secret, encoded)

    def checks(self) -> int:
        with self.lock:
            return self.calls.count("verify")


@pytest.fixture
async def served(tmp_path, clock: FakeClock, database_url: str) -> AsyncIterator[IdentityServer]:
    """Identity with its HTTP token endpoint too (plain HTTP on loopback)."""
    server = await build_server(
        identity_config(tmp_path / "identity", http_port=0, database_url=database_url), clock=clock
    )
    try:
        yield server
    finally:
        await server.stop(grace=0)


@pytest.fixture
async def operator_of(
    served: IdentityServer, clock: FakeClock
) -> AsyncIterator[tuple[IdentityClient, grpc.aio.Channel]]:
    channel = open_channel(served.endpoint)
    try:
        yield IdentityClient(channel, operator_credentials(served), clock=clock), channel
    finally:
        await channel.close()


def count_hashes(server: IdentityServer, clock: FakeClock | None = None, seconds: float = 0.0) -> CountingHasher:
    hasher = CountingHasher(cost=TEST_HASH_COST, clock=clock, seconds_per_check=seconds)
    server.directory.checks.hasher = hasher
    return hasher


async def issue(channel: grpc.aio.Channel, creds: ClientCredentials) -> grpc.aio.UnaryUnaryCall:  # type: ignore[type-arg]
    stub = pb_grpc.TokenServiceStub(channel)
    return stub.IssueToken(
        pb.IssueTokenRequest(
            tenant_id=creds.tenant_id,
            client_id=creds.client_id,
            client_secret=creds.client_secret,
            audience=audiences.DIRECTORY,
        )
    )


async def test_a_sign_in_costs_one_slow_hash_whatever_the_principal_holds(served, operator_of, clock):
    operator, channel = operator_of
    tenant = await make_tenant(operator, channel, clock, "Contoso")
    app, creds, _ = await make_principal(operator, channel, clock, tenant.tenant_id, "app")
    for n in range(30):
        await operator.add_client_secret(tenant.tenant_id, app.object_id, f"spare {n}")
    held = (await operator.list_client_secrets(tenant.tenant_id, app.object_id)).secrets
    assert len(held) == 31
    real_id = next(s.secret_id for s in held if s.display_name == "test")
    someone_elses = (await operator.list_client_secrets(tenant.tenant_id, tenant.admin.object_id)).secrets[0]
    hasher = count_hashes(served)
    wrong = {
        "a wrong secret naming one of its secrets": f"cmk~{real_id}~{'w' * 40}",
        "a secret naming an id it does not hold": f"cmk~{uuid.uuid4()}~{'w' * 40}",
        "a secret naming another principal's secret": f"cmk~{someone_elses.secret_id}~{'w' * 40}",
        "a secret in the older form, naming no id": "cmk~" + "w" * 40,
    }
    stranger = ClientCredentials(tenant.tenant_id, str(uuid.uuid4()), "cmk~" + "w" * 40)
    await expect_rpc_error(
        await issue(channel, stranger), grpc.StatusCode.UNAUTHENTICATED, Reason.INVALID_CLIENT_CREDENTIALS
    )
    for what, secret in wrong.items():
        before = hasher.checks()
        attempt = ClientCredentials(tenant.tenant_id, creds.client_id, secret)
        await expect_rpc_error(
            await issue(channel, attempt), grpc.StatusCode.UNAUTHENTICATED, Reason.INVALID_CLIENT_CREDENTIALS
        )
        assert hasher.checks() - before == 1, what
        await operator.issue_token(creds, audiences.DIRECTORY)  # (clears the failures: no pause in this test)
    before = hasher.checks()
    await expect_rpc_error(
        await issue(channel, stranger), grpc.StatusCode.UNAUTHENTICATED, Reason.INVALID_CLIENT_CREDENTIALS
    )
    assert hasher.checks() - before == 1, "an unknown client costs a dummy hash, as long as a real check"
    fresh = await operator.add_client_secret(tenant.tenant_id, app.object_id, "fresh")
    right = ClientCredentials(tenant.tenant_id, creds.client_id, fresh.secret_value)
    before = hasher.checks()
    assert (await operator.issue_token(right, audiences.DIRECTORY)).access_token
    assert hasher.checks() - before == 1
    assert (await operator.issue_token(right, audiences.DIRECTORY)).access_token
    assert hasher.checks() - before == 1, "a secret verified lately is recognised from memory"


async def test_a_principal_holds_at_most_the_limit_of_client_secrets(served, operator_of, clock):
    operator, channel = operator_of
    tenant = await make_tenant(operator, channel, clock, "Contoso")
    app, creds, _ = await make_principal(operator, channel, clock, tenant.tenant_id, "app")
    spare = ClientSecret("", app.object_id, "spare", clock.now(), clock.now() + timedelta(days=1), "scrypt$unused")
    async with served.store.unit_of_work() as uow:  # (quicker than through the API; the security suite goes that way)
        for _ in range(MAX_CLIENT_SECRETS - 2):
            await uow.insert_secret(replace(spare, secret_id=str(uuid.uuid4())))
    last = await operator.add_client_secret(tenant.tenant_id, app.object_id, "the last one")
    hasher = count_hashes(served)
    token = await operator.token_for(audiences.DIRECTORY)
    refused = await expect_rpc_error(
        operator.directory.AddClientSecret(
            pb.AddClientSecretRequest(parent=f"tenants/{tenant.tenant_id}/principals/{app.object_id}"),
            metadata=(("authorization", f"Bearer {token}"),),
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        Reason.CLIENT_SECRET_LIMIT,
    )
    assert str(MAX_CLIENT_SECRETS) in (refused.details() or "")
    assert hasher.calls == [], "refused before any slow hash"
    listed = await operator.list_client_secrets(tenant.tenant_id, app.object_id)
    assert listed.next_page_token or len(listed.secrets) == MAX_CLIENT_SECRETS
    await operator.delete_client_secret(tenant.tenant_id, app.object_id, last.secret.secret_id)
    again = await operator.add_client_secret(tenant.tenant_id, app.object_id, "in its place")
    with_it = ClientCredentials(tenant.tenant_id, creds.client_id, again.secret_value)
    assert (await operator.issue_token(with_it, audiences.DIRECTORY)).access_token
    assert (await operator.issue_token(creds, audiences.DIRECTORY)).access_token  # the first still works


async def test_the_pause_falls_on_the_sixth_wrong_attempt_however_long_the_checks_took(served, operator_of, clock):
    """Each slow check here takes 2 s by the service's clock, longer than the first pause
    (1 s): counted from when the fifth attempt began, that pause was over before it failed."""
    operator, channel = operator_of
    tenant = await make_tenant(operator, channel, clock, "Contoso")
    _, creds, _ = await make_principal(operator, channel, clock, tenant.tenant_id, "app")
    _, other, _ = await make_principal(operator, channel, clock, tenant.tenant_id, "other app")
    count_hashes(served, clock, seconds=2)
    assert served.http_url is not None
    for door in ("grpc", "https"):
        client = creds if door == "grpc" else other
        wrong = ClientCredentials(tenant.tenant_id, client.client_id, client.client_secret[:-4] + "wxyz")
        answers = []
        for _ in range(6):
            if door == "grpc":
                try:
                    await operator.issue_token(wrong, audiences.DIRECTORY)
                    answers.append("token")
                except Exception as exc:  # (the reason is what is asserted)
                    answers.append(str(getattr(exc, "reason", exc)))
            else:
                async with aiohttp.ClientSession() as session:
                    status, body, _ = await post_token(session, served.http_url, tenant.tenant_id, token_form(wrong))
                answers.append(f"{status} {body.get('reason')}")
        if door == "grpc":
            assert answers == [Reason.INVALID_CLIENT_CREDENTIALS] * 5 + [Reason.SIGN_IN_THROTTLED], answers
        else:
            assert answers == ["401 INVALID_CLIENT_CREDENTIALS"] * 5 + ["429 SIGN_IN_THROTTLED"], answers
        clock.advance(timedelta(seconds=1))  # the pause is over a second after the fifth failure
        assert (await operator.issue_token(client, audiences.DIRECTORY)).access_token


async def test_a_secret_made_before_secrets_named_their_id_still_signs_in_with_one_hash(served, operator_of, clock):
    """Secrets stored before (the migration marks them unnamed) have no id in them: such a
    secret is checked against the principal's one unnamed secret, one hash; a principal
    holding several of them has none checked (each would cost a hash) and must add a new one."""
    operator, channel = operator_of
    tenant = await make_tenant(operator, channel, clock, "Contoso")
    app, creds, _ = await make_principal(operator, channel, clock, tenant.tenant_id, "app")
    older = "cmk~" + "o" * 40
    stored = ClientSecret(
        str(uuid.uuid4()),
        app.object_id,
        "from before",
        clock.now(),
        clock.now() + timedelta(days=30),
        SecretHasher(TEST_HASH_COST).hash(older),
        named=False,
    )
    async with served.store.unit_of_work() as uow:
        await uow.insert_secret(stored)
    hasher = count_hashes(served)
    with_older = ClientCredentials(tenant.tenant_id, creds.client_id, older)
    assert (await operator.issue_token(with_older, audiences.DIRECTORY)).access_token
    assert hasher.checks() == 1
    assert (await operator.issue_token(creds, audiences.DIRECTORY)).access_token  # the named one beside it
    async with served.store.unit_of_work() as uow:
        await uow.insert_secret(
            replace(stored, secret_id=str(uuid.uuid4()), hash=SecretHasher(TEST_HASH_COST).hash("cmk~" + "p" * 40))
        )
    served.directory.memo.forget(stored.secret_id)
    before = hasher.checks()
    await expect_rpc_error(
        await issue(channel, with_older), grpc.StatusCode.UNAUTHENTICATED, Reason.INVALID_CLIENT_CREDENTIALS
    )
    assert hasher.checks() - before == 1  # a dummy: as long as any other refusal
    assert (await operator.issue_token(creds, audiences.DIRECTORY)).access_token


@dataclass(frozen=True)
class HeldHasher(CountingHasher):
    """Checks that wait until the test lets them go, as a hash behind a busy pool would."""

    go: threading.Event = field(default_factory=threading.Event)

    def verify(self, secret: str, encoded: str) -> bool:  # type: ignore[override]
        self.go.wait(30)
        return super().verify(secret, encoded)


async def test_attempts_whose_callers_leave_before_the_answer_move_the_pause_on(served, operator_of, clock):
    """Five wrong sign-ins, each abandoned by its caller (a short deadline) while its check
    waits: each counts as failed when its caller left, so the sixth, right after, is refused by
    the pause. (They were counted at admission only: the pause ran from the first, long over.)"""
    operator, channel = operator_of
    tenant = await make_tenant(operator, channel, clock, "Contoso")
    _, creds, _ = await make_principal(operator, channel, clock, tenant.tenant_id, "app")
    hasher = HeldHasher(cost=TEST_HASH_COST)
    served.directory.checks.hasher = hasher
    wrong = ClientCredentials(tenant.tenant_id, creds.client_id, creds.client_secret[:-4] + "wxyz")
    stub = pb_grpc.TokenServiceStub(channel)
    request = pb.IssueTokenRequest(
        tenant_id=wrong.tenant_id, client_id=wrong.client_id, client_secret=wrong.client_secret,
        audience=audiences.DIRECTORY,
    )  # fmt: skip
    try:
        for _ in range(5):
            clock.advance(timedelta(seconds=10))
            with pytest.raises(grpc.aio.AioRpcError) as left:
                await stub.IssueToken(request, timeout=0.3)
            assert left.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        await asyncio.sleep(0.5)  # the server sees the cancellations (a guard, not a measure)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.IssueToken(request, timeout=5)
        assert error_from_rpc(refused.value).reason is Reason.SIGN_IN_THROTTLED, refused.value
    finally:
        hasher.go.set()
