"""The admission policy on its own (issue 22, item 6): one cap of calls in progress per
service was shared by every caller, so one tenant's flood, or an anonymous flood of
sign-ins, got everyone else's calls refused TOO_MANY_CALLS. Now each caller and each tenant
holds at most its share, the token endpoints have a budget of their own, and a part of the
cap is kept for the platform's services calling one another."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cmk_trio.rpckit.admission import Budget, Caller, CallLimits, Shares, peer_address
from cmk_trio.rpckit.datadir import StartupError
from cmk_trio.rpckit.errors import ResourceExhausted
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.tokens import OPERATOR_ROLE, PLATFORM_ROLE, VerifiedToken

# 100 calls: 20 for sign-ins, 20 kept for the platform, 60 for the tenants; 10 per caller, 25 per tenant.
SHARES = Shares(calls=100, streams=5)


def tenant_caller(tenant: str, n: int = 0) -> Caller:
    return Caller(Budget.TENANTS, f"{tenant}-principal-{n}", tenant)


def fill(limits: CallLimits, caller: Caller, count: int) -> None:
    for _ in range(count):
        limits.admit(caller)


def refusal(limits: CallLimits, caller: Caller) -> ResourceExhausted:
    with pytest.raises(ResourceExhausted) as refused:
        limits.admit(caller)
    return refused.value


def token(*, roles: frozenset[str] = frozenset(), resource_id: str = "") -> VerifiedToken:
    now = datetime.now(UTC)
    return VerifiedToken(
        object_id="oid", tenant_id="tid", client_id="cid", audience="aud", issuer="iss", issued_at=now,
        not_before=now, expires_at=now, token_id="jti", resource_id=resource_id, roles=roles, claims={}, raw="",
    )  # fmt: skip


def test_the_defaults_share_the_cap_as_documented():
    shares = Shares()
    assert (shares.calls, shares.sign_in_calls, shares.platform_reserve, shares.tenant_calls) == (1000, 200, 200, 600)
    assert (shares.per_caller, shares.per_tenant, shares.platform_calls) == (100, 250, 800)


def test_one_caller_holds_at_most_its_share():
    limits = CallLimits(SHARES)
    fill(limits, tenant_caller("B"), 10)
    refused = refusal(limits, tenant_caller("B"))
    assert refused.reason is Reason.CALLER_TOO_MANY_CALLS
    assert refused.metadata == {"limit": "10", "retry_after_seconds": "1"}
    limits.admit(tenant_caller("B", 1))  # another principal of the same tenant still gets in
    limits.admit(tenant_caller("A"))


def test_one_tenant_holds_at_most_its_share_whatever_its_principals():
    limits = CallLimits(SHARES)
    for n in range(2):
        fill(limits, tenant_caller("B", n), 10)
    fill(limits, tenant_caller("B", 2), 5)
    refused = refusal(limits, tenant_caller("B", 3))
    assert refused.reason is Reason.TENANT_TOO_MANY_CALLS and refused.metadata["limit"] == "25"
    limits.admit(tenant_caller("A"))  # another tenant is not touched


def test_the_tenants_together_cannot_take_the_platforms_reserve():
    limits = CallLimits(SHARES)
    for tenant, count in (("B", 25), ("C", 25), ("D", 10)):  # two tenants at their share, and a third
        for n in range(3):
            fill(limits, tenant_caller(tenant, n), max(0, min(10, count - 10 * n)))
    assert limits.in_progress(Budget.TENANTS) == 60
    refused = refusal(limits, tenant_caller("A"))
    assert refused.reason is Reason.TOO_MANY_CALLS
    assert refused.metadata == {"limit": "60", "budget": "tenants", "retry_after_seconds": "1"}
    speech = Caller(Budget.PLATFORM, "speech-service", "platform")
    fill(limits, speech, 20)  # the reserve, whole, for the platform's services (no per-caller share)
    refused = refusal(limits, speech)
    assert refused.reason is Reason.TOO_MANY_CALLS and refused.metadata["limit"] == "80"


def test_the_platform_may_use_the_tenants_part_and_then_the_tenants_wait():
    limits = CallLimits(SHARES)
    speech = Caller(Budget.PLATFORM, "speech-service", "platform")
    fill(limits, speech, 55)
    fill(limits, tenant_caller("A"), 5)
    assert refusal(limits, tenant_caller("A", 1)).reason is Reason.TOO_MANY_CALLS
    fill(limits, speech, 20)
    assert refusal(limits, speech).reason is Reason.TOO_MANY_CALLS  # never the sign-ins' budget
    limits.admit(Caller.anonymous("ipv4:10.0.0.9:4000", sign_in=True))


def test_sign_ins_have_a_budget_of_their_own_both_ways():
    limits = CallLimits(SHARES)
    for n in range(2):
        fill(limits, Caller.anonymous(f"ipv4:10.0.0.{n}:{4000 + n}", sign_in=True), 10)
    refused = refusal(limits, Caller.anonymous("ipv4:10.0.0.3:5000", sign_in=True))
    assert refused.reason is Reason.TOO_MANY_CALLS and refused.metadata["budget"] == "sign_ins"
    limits.admit(tenant_caller("A"))  # a flood of sign-ins leaves the tenants' calls alone
    limits.release(Caller.anonymous("ipv4:10.0.0.0:1", sign_in=True))
    for tenant in "BCD":  # and the tenants' calls, however many, leave the sign-ins alone
        for n in range(3):
            try:
                fill(limits, tenant_caller(tenant, n), 10)
            except ResourceExhausted:
                break
    limits.admit(Caller.anonymous("ipv4:10.0.0.3:5000", sign_in=True))


def test_an_anonymous_client_is_one_caller_whatever_its_connections():
    limits = CallLimits(SHARES)
    for port in range(10):
        limits.admit(Caller.anonymous(f"ipv4:10.0.0.7:{40000 + port}", sign_in=True))
    assert refusal(limits, Caller.anonymous("ipv4:10.0.0.7:50000", sign_in=True)).reason is (
        Reason.CALLER_TOO_MANY_CALLS
    )
    limits.admit(Caller.anonymous("ipv6:[2001:db8::1]:443", sign_in=True))


def test_anonymous_reads_count_as_one_tenant_apart_from_sign_ins():
    limits = CallLimits(SHARES)
    for n in range(3):  # three clients reading the signing keys: together, the tenant share
        fill(limits, Caller.anonymous(f"ipv4:10.0.1.{n}:1", sign_in=False), min(10, 25 - 10 * n))
    assert refusal(limits, Caller.anonymous("ipv4:10.0.1.9:1", sign_in=False)).reason is Reason.TENANT_TOO_MANY_CALLS
    limits.admit(Caller.anonymous("ipv4:10.0.1.0:1", sign_in=True))  # one address's sign-ins count apart
    limits.admit(tenant_caller("A"))


def test_release_gives_the_place_back_and_forgets_idle_callers():
    limits = CallLimits(SHARES)
    b = tenant_caller("B")
    fill(limits, b, 10)
    limits.release(b)
    limits.admit(b)
    for _ in range(10):
        limits.release(b)
    assert limits.calls == 0 and limits.in_progress(Budget.TENANTS) == 0
    assert not limits._by_caller and not limits._by_tenant  # nothing kept per caller that has nothing in progress
    with limits.call(b):
        assert limits.calls == 1
    assert limits.calls == 0


def test_a_refused_call_holds_nothing():
    limits = CallLimits(SHARES)
    fill(limits, tenant_caller("B"), 10)
    for _ in range(5):
        refusal(limits, tenant_caller("B"))
    assert limits.calls == 10 and limits._by_tenant == {"B": 10}


def test_who_is_the_platform():
    assert Caller.of_token(token()).budget is Budget.TENANTS
    assert Caller.of_token(token(roles=frozenset({PLATFORM_ROLE}))).budget is Budget.PLATFORM
    assert Caller.of_token(token(roles=frozenset({OPERATOR_ROLE}))).budget is Budget.PLATFORM
    # A managed identity's token: only its platform service obtains it, but the load is its
    # tenant's (speech calling the vault for a tenant's resources), and shares the tenant's part.
    managed = Caller.of_token(token(resource_id="/subscriptions/s/resourceGroups/r/x"))
    assert managed == Caller(Budget.TENANTS, "oid", "tid")
    assert Caller.of_token(token()) == Caller(Budget.TENANTS, "oid", "tid")


@pytest.mark.parametrize(
    ("peer", "address"),
    [("ipv4:127.0.0.1:50123", "127.0.0.1"), ("ipv6:[::1]:50123", "::1"), ("unix:/tmp/s", "unix:/tmp/s"),
     ("10.1.2.3", "10.1.2.3"), ("", "unknown"),
     # A host holds a whole IPv6 /64 and may send from any address of it: one caller.
     ("ipv6:[2001:db8::1]:443", "2001:db8::/64"), ("ipv6:[2001:db8::ffff:1:2]:443", "2001:db8::/64"),
     ("2001:db8:0:1::7", "2001:db8:0:1::/64"), ("ipv6:[::ffff:10.0.0.7]:1", "10.0.0.7")],
)  # fmt: skip
def test_peer_address_drops_the_port(peer, address):
    assert peer_address(peer) == address


def test_small_caps_still_give_every_budget_a_call():
    shares = Shares(calls=5)
    assert (shares.sign_in_calls, shares.platform_reserve, shares.tenant_calls, shares.per_caller) == (1, 1, 3, 1)


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"CMK_MAX_CALLS": "lots"}, "whole numbers"),
        ({"CMK_MAX_CALLS": "0"}, "at least 1"),
        ({"CMK_CALLS_PER_CALLER_PERCENT": "ten"}, "CMK_CALLS_PER_CALLER_PERCENT must be a whole number"),
        ({"CMK_CALLS_PER_TENANT_PERCENT": "0"}, "CMK_CALLS_PER_TENANT_PERCENT must be between 1 and 100"),
        ({"CMK_CALLS_FOR_SIGN_INS_PERCENT": "101"}, "between 1 and 100"),
        ({"CMK_CALLS_PER_CALLER_PERCENT": "30"}, "cannot exceed CMK_CALLS_PER_TENANT_PERCENT"),
        ({"CMK_CALLS_FOR_SIGN_INS_PERCENT": "60", "CMK_CALLS_FOR_PLATFORM_PERCENT": "40"}, "leave no call"),
        ({"CMK_MAX_CALLS": "2"}, "leave no call for the tenants"),
    ],
)
def test_settings_that_make_no_sense_stop_the_service_at_start(env, says):
    with pytest.raises(StartupError, match=says):
        CallLimits.from_env(env)


def test_settings_from_the_environment():
    limits = CallLimits.from_env(
        {"CMK_MAX_CALLS": "200", "CMK_CALLS_PER_CALLER_PERCENT": "5", "CMK_CALLS_PER_TENANT_PERCENT": "50",
         "CMK_CALLS_FOR_SIGN_INS_PERCENT": "10", "CMK_CALLS_FOR_PLATFORM_PERCENT": "30"}
    )  # fmt: skip
    shares = limits.shares
    assert (shares.per_caller, shares.per_tenant, shares.sign_in_calls, shares.platform_reserve) == (10, 100, 20, 60)
    assert limits.max_calls == 200 and limits.max_streams == 200
