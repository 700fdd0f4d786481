"""Which calls a service takes on at once, and whose: a cap on the calls in progress, shared
so that no one caller, no one tenant and no flood of anonymous sign-ins can take it from
everyone else.

A call is admitted once its caller is known (the `AdmissionInterceptor` sits inside the
`AuthInterceptor`; authentication is cheap, a verified token being remembered), and counted
against one of three budgets, all fractions of `CMK_MAX_CALLS`:

- the token endpoints (gRPC IssueToken, identity's HTTPS token endpoint) have a budget of
  their own, `CMK_CALLS_FOR_SIGN_INS_PERCENT` of the cap, that nothing else uses and that
  they never exceed: a flood of sign-ins, which are anonymous and cost a slow hash, cannot
  take the capacity of authenticated callers, nor they the sign-ins';
- the platform's own principals (the services calling one another: a token with the
  Platform.Service role, or a managed identity's, which only its platform service can
  obtain) and the operator may use all the rest, and `CMK_CALLS_FOR_PLATFORM_PERCENT` of the
  cap is kept for them alone: a flood of tenants' calls cannot stop the speech service from
  reaching the vault and identity, nor the operator from disabling the flooding principal;
- the tenants' principals (and other anonymous calls, such as reading the signing keys)
  share what remains, each caller (its principal; an anonymous caller by its peer address)
  at most `CMK_CALLS_PER_CALLER_PERCENT` of the cap and each tenant at most
  `CMK_CALLS_PER_TENANT_PERCENT` (anonymous calls count as one tenant).

Beyond its share a call is refused at once with RESOURCE_EXHAUSTED (CALLER_TOO_MANY_CALLS,
TENANT_TOO_MANY_CALLS, or TOO_MANY_CALLS when its budget is full) and a retry advice, instead
of queueing without bound. Health checks are never counted nor refused.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

import grpc

from cmk_trio.rpckit import errors
from cmk_trio.rpckit.auth import verified_caller
from cmk_trio.rpckit.datadir import StartupError
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.tokens import OPERATOR_ROLE, PLATFORM_ROLE, VerifiedToken
from cmk_trio.rpckit.types import Context, Continuation, Handler, Message, Stream, Unary, WrapCache, rewrap

UNCAPPED = frozenset({"/grpc.health.v1.Health/Check"})
"""Calls no cap refuses: a probe must see a busy service as alive."""

K = TypeVar("K")

RETRY_AFTER_SECONDS = "1"
"""The retry advice of a refusal for want of a place: calls finish within milliseconds."""


class Budget(StrEnum):
    """The part of the cap a call is counted against."""

    TENANTS = "tenants"
    """The tenants' principals, and anonymous calls other than sign-ins."""
    PLATFORM = "platform"
    """The platform's services calling one another, and the operator."""
    SIGN_INS = "sign_ins"
    """The token endpoints, where anonymous callers present a secret."""


ANONYMOUS_TENANT = ""
"""The tenant anonymous calls are counted under, together."""


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a call is counted against: its budget, the caller (a principal's object id, or
    `peer <address>` for an anonymous call) and the caller's tenant."""

    budget: Budget
    key: str
    tenant: str

    @classmethod
    def of_token(cls, token: VerifiedToken) -> Caller:
        """The caller a verified token names. A managed identity's token is its tenant's, though
        only the platform service that owns the identity can obtain it: speech's calls to the
        vault on a resource's behalf are that tenant's load, and share the tenant's part (as the
        platform's, one tenant's resources could take the vault from the others)."""
        platform = bool({PLATFORM_ROLE, OPERATOR_ROLE} & token.roles) and not token.resource_id
        return cls(Budget.PLATFORM if platform else Budget.TENANTS, token.object_id, token.tenant_id)

    @classmethod
    def anonymous(cls, peer: str, *, sign_in: bool) -> Caller:
        """An anonymous caller, known by its peer's address (`peer` as gRPC's
        `context.peer()` or aiohttp's `request.remote` gives it)."""
        return cls(Budget.SIGN_INS if sign_in else Budget.TENANTS, f"peer {peer_address(peer)}", ANONYMOUS_TENANT)


def peer_address(peer: str) -> str:
    """The address of a peer without its port: one client opening many connections (each on
    a port of its own) is still one caller. "ipv4:10.0.0.7:51234" -> "10.0.0.7",
    "ipv6:[::1]:51234" -> "::1"; anything else (a unix socket, aiohttp's plain address) as given."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0] or rest
    if kind == "ipv6":
        return _ipv6_caller(rest.rpartition(":")[0].strip("[]") or rest)
    if ":" in peer:  # aiohttp's plain address
        return _ipv6_caller(peer)
    return peer or "unknown"


def _ipv6_caller(address: str) -> str:
    """An IPv6 caller by its /64: one host is given a whole /64 and may send from any address
    of it, so counting each address apart would give it 2**64 shares."""
    try:
        ip = ipaddress.IPv6Address(address.split("%", 1)[0])
    except ValueError:
        return address
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    if ip.is_loopback:
        return str(ip)
    return str(ipaddress.IPv6Network(f"{ip}/64", strict=False))


def _percent(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, str(default))
    try:
        return int(raw)
    except ValueError:
        raise StartupError(f"{name} must be a whole number of percent, not {raw!r}") from None


@dataclass(frozen=True)
class Shares:
    """How a service's cap on calls in progress is shared (see the module docstring). Every
    share is a percentage of `calls`; each budget and share is at least one call."""

    calls: int = 1000
    streams: int = 200
    sign_in_percent: int = 20
    platform_percent: int = 20
    caller_percent: int = 10
    tenant_percent: int = 25

    def __post_init__(self) -> None:
        if self.calls < 1 or self.streams < 1:
            raise ValueError("CMK_MAX_CALLS and CMK_MAX_STREAMS must be at least 1")
        for name, value in (
            ("CMK_CALLS_FOR_SIGN_INS_PERCENT", self.sign_in_percent),
            ("CMK_CALLS_FOR_PLATFORM_PERCENT", self.platform_percent),
            ("CMK_CALLS_PER_CALLER_PERCENT", self.caller_percent),
            ("CMK_CALLS_PER_TENANT_PERCENT", self.tenant_percent),
        ):
            if not 1 <= value <= 100:
                raise ValueError(f"{name} must be between 1 and 100, not {value}")
        if self.caller_percent > self.tenant_percent:
            raise ValueError(
                "CMK_CALLS_PER_CALLER_PERCENT cannot exceed CMK_CALLS_PER_TENANT_PERCENT: a caller's share is part of "
                "its tenant's"
            )
        if self.tenant_calls < 1:
            raise ValueError(
                f"with CMK_MAX_CALLS={self.calls}, the sign-ins' budget ({self.sign_in_calls}) and the platform's "
                f"({self.platform_reserve}) leave no call for the tenants: raise CMK_MAX_CALLS or lower "
                "CMK_CALLS_FOR_SIGN_INS_PERCENT and CMK_CALLS_FOR_PLATFORM_PERCENT"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Shares:
        """From CMK_MAX_CALLS, CMK_MAX_STREAMS and the CMK_CALLS_*_PERCENT settings; a
        setting that makes no sense stops the service at start, saying which."""
        try:
            calls, streams = int(env.get("CMK_MAX_CALLS", "1000")), int(env.get("CMK_MAX_STREAMS", "200"))
        except ValueError:
            raise StartupError("CMK_MAX_CALLS and CMK_MAX_STREAMS must be whole numbers") from None
        try:
            return cls(
                calls,
                streams,
                sign_in_percent=_percent(env, "CMK_CALLS_FOR_SIGN_INS_PERCENT", cls.sign_in_percent),
                platform_percent=_percent(env, "CMK_CALLS_FOR_PLATFORM_PERCENT", cls.platform_percent),
                caller_percent=_percent(env, "CMK_CALLS_PER_CALLER_PERCENT", cls.caller_percent),
                tenant_percent=_percent(env, "CMK_CALLS_PER_TENANT_PERCENT", cls.tenant_percent),
            )
        except ValueError as exc:
            raise StartupError(str(exc)) from None

    def _of_cap(self, percent: int) -> int:
        return max(1, self.calls * percent // 100)

    @property
    def sign_in_calls(self) -> int:
        """The token endpoints' budget: only sign-ins use it, and they use no more."""
        return self._of_cap(self.sign_in_percent)

    @property
    def platform_reserve(self) -> int:
        """The calls kept for the platform alone."""
        return self._of_cap(self.platform_percent)

    @property
    def platform_calls(self) -> int:
        """What the platform may use: everything but the sign-ins' budget."""
        return self.calls - self.sign_in_calls

    @property
    def tenant_calls(self) -> int:
        """What the tenants' calls share (the platform's calls in progress count against it too)."""
        return self.calls - self.sign_in_calls - self.platform_reserve

    @property
    def per_caller(self) -> int:
        """One caller's share (one peer's, for anonymous calls)."""
        return self._of_cap(self.caller_percent)

    @property
    def per_tenant(self) -> int:
        """One tenant's share."""
        return self._of_cap(self.tenant_percent)


class CallLimits:
    """The calls and streams one service serves at once, and whose (see the module
    docstring). `admit` and `release` are the policy, pure and synchronous; `call` and
    `stream` hold a place for the length of a block."""

    def __init__(self, shares: Shares | None = None) -> None:
        self.shares = shares or Shares()
        self.calls = 0
        """Calls in progress, every budget together."""
        self.streams = 0
        self._in_budget = dict.fromkeys(Budget, 0)
        self._by_caller: dict[tuple[Budget, str], int] = {}
        self._by_tenant: dict[str, int] = {}

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> CallLimits:
        return cls(Shares.from_env(env))

    @property
    def max_calls(self) -> int:
        return self.shares.calls

    @property
    def max_streams(self) -> int:
        return self.shares.streams

    def in_progress(self, budget: Budget) -> int:
        """The calls in progress counted against `budget`."""
        return self._in_budget[budget]

    def admit(self, caller: Caller) -> None:
        """Count a call of `caller`, or refuse it (ResourceExhausted) if it is beyond the
        caller's share, its tenant's, or its budget."""
        shares = self.shares
        held = self._by_caller.get((caller.budget, caller.key), 0)
        if caller.budget is Budget.SIGN_INS:
            self._check_caller(caller, held, min(shares.per_caller, shares.sign_in_calls))
            self._check_budget(caller.budget, self._in_budget[Budget.SIGN_INS], shares.sign_in_calls, "sign-ins")
        elif caller.budget is Budget.PLATFORM:
            # The platform's services are the trio itself: no share of theirs is capped but the whole.
            general = self._in_budget[Budget.TENANTS] + self._in_budget[Budget.PLATFORM]
            self._check_budget(caller.budget, general, shares.platform_calls, "calls")
        else:
            self._check_caller(caller, held, shares.per_caller)
            tenant_held = self._by_tenant.get(caller.tenant, 0)
            if tenant_held >= shares.per_tenant:
                raise errors.ResourceExhausted(
                    Reason.TENANT_TOO_MANY_CALLS,
                    f"{'anonymous callers' if caller.tenant == ANONYMOUS_TENANT else 'this tenant'} already "
                    f"{'have' if caller.tenant == ANONYMOUS_TENANT else 'has'} {tenant_held} calls in progress, "
                    f"its share of this service; wait for some to finish, or retry in a moment",
                    metadata={"limit": str(shares.per_tenant), "retry_after_seconds": RETRY_AFTER_SECONDS},
                )
            general = self._in_budget[Budget.TENANTS] + self._in_budget[Budget.PLATFORM]
            self._check_budget(caller.budget, general, shares.tenant_calls, "calls")
            self._by_tenant[caller.tenant] = tenant_held + 1
        self._by_caller[(caller.budget, caller.key)] = held + 1
        self._in_budget[caller.budget] += 1
        self.calls += 1

    def release(self, caller: Caller) -> None:
        """The admitted call of `caller` is over. Counts that reach zero are dropped, so that
        many callers passing by leave nothing behind."""
        self.calls -= 1
        self._in_budget[caller.budget] -= 1
        _decrement(self._by_caller, (caller.budget, caller.key))
        if caller.budget is Budget.TENANTS:
            _decrement(self._by_tenant, caller.tenant)

    @staticmethod
    def _check_caller(caller: Caller, held: int, limit: int) -> None:
        if held >= limit:
            who = "this client's address" if caller.tenant == ANONYMOUS_TENANT else "this caller"
            raise errors.ResourceExhausted(
                Reason.CALLER_TOO_MANY_CALLS,
                f"{who} already has {held} calls in progress, its share of this service; wait for some to "
                "finish, or retry in a moment",
                metadata={"limit": str(limit), "retry_after_seconds": RETRY_AFTER_SECONDS},
            )

    @staticmethod
    def _check_budget(budget: Budget, held: int, limit: int, what: str) -> None:
        if held >= limit:
            raise errors.ResourceExhausted(
                Reason.TOO_MANY_CALLS,
                f"this service is serving its limit of {limit} {what} at once; retry in a moment",
                metadata={"limit": str(limit), "budget": budget.value, "retry_after_seconds": RETRY_AFTER_SECONDS},
            )

    @contextmanager
    def call(self, caller: Caller) -> Iterator[None]:
        """A place for one call of `caller` for the length of the block, or ResourceExhausted."""
        self.admit(caller)
        try:
            yield
        finally:
            self.release(caller)

    @contextmanager
    def stream(self) -> Iterator[None]:
        """A place for one stream for the length of the block, or ResourceExhausted."""
        if self.streams >= self.shares.streams:
            raise errors.ResourceExhausted(
                Reason.TOO_MANY_STREAMS,
                f"this service has its limit of {self.shares.streams} streams open; close one or retry later",
                metadata={"limit": str(self.shares.streams), "retry_after_seconds": "5"},
            )
        self.streams += 1
        try:
            yield
        finally:
            self.streams -= 1


def _decrement(counts: dict[K, int], key: K) -> None:
    left = counts[key] - 1
    if left:
        counts[key] = left
    else:
        del counts[key]


class AdmissionInterceptor(grpc.aio.ServerInterceptor):
    """Admits every call (but health checks) against `limits` once its caller is known, and
    every server stream against the cap on streams.

    Sits inside the AuthInterceptor, which has bound the verified caller by then; a call
    without one (a public method) is anonymous, known by its peer's address. The methods in
    `sign_in_methods` are counted against the sign-ins' budget. Its refusals are raised, for
    the ErrorInterceptor outside to map.
    """

    def __init__(self, limits: CallLimits, sign_in_methods: Collection[str] = ()) -> None:
        self._limits = limits
        self._sign_in = frozenset(sign_in_methods)
        self._wrapped = WrapCache()

    async def intercept_service(
        self,
        continuation: Continuation,
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method in UNCAPPED:
            return handler
        sign_in = method in self._sign_in
        limits = self._limits

        def unary(inner: Unary) -> Unary:
            async def admitted(request: Message, context: Context) -> Message:
                token = None if sign_in else verified_caller()
                caller = Caller.anonymous(context.peer(), sign_in=sign_in) if token is None else Caller.of_token(token)
                with limits.call(caller):
                    return await inner(request, context)

            return admitted

        def stream(inner: Stream) -> Stream:
            async def admitted(request: Message, context: Context) -> AsyncIterator[Message]:
                with limits.stream():
                    async for response in inner(request, context):
                        yield response

            return admitted

        return self._wrapped.get(method, handler, lambda: rewrap(handler, unary, stream))
