"""Writes SECURITY.md from a run of the security suite: `python3 dev.py security` runs it in
full (the fuzzer at 10,000 inputs per service), and only if every test passed renders what
the run measured (the fuzz figures, what a slow client held, another tenant's latency under
floods, the authorization matrix as observed; the HTTPS doors' fuzz, flood and matrix) beside
what we defend and how. Run: python -m tests.security.report --fuzz F.json --matrix M.md
[--listeners L.json] [--fairness R.json] [--door-matrix D.json] [--door-fuzz Z.json]
[--door-flood H.json] --out SECURITY.md"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.security.test_existence import EXISTENCE_RULE
from tests.security.test_jwt_attacks import ATTACKS

DEFENCES = (
    (
        "forged or tampered tokens",
        "RS256 only, keys only from the directory (no jwk/jku/x5u/x5c), kid and header bounds, exact issuer, "
        "audience and tenant, expiry with bounded skew",
        "tests/security/test_jwt_attacks.py (table below)",
    ),
    (
        "a leaked or retired signing key",
        "validators refetch the keys once a minute and drop unpublished ones; `cmk signing-key revoke` "
        "withdraws a key everywhere at once through SIGNING_KEY_REVOKED; services drop their own tokens of "
        "that key",
        "tests/security/test_signing_key_revocation.py, tests/rpckit/test_tokens.py",
    ),
    (
        "a revoked principal or access policy",
        "revocations pushed on event streams; a service whose stream is not current refuses "
        "(REVOCATIONS_UNKNOWN) and keeps no customer data key; keepalives notice a silent partition within 8 "
        "s",
        "tests/speech, tests/faults (RELIABILITY.md)",
    ),
    (
        "a caller beyond its role",
        "Reader / Contributor / Owner as Azure, stricter where keys are concerned: access policies need "
        "Owner, secrets need Contributor; platform principals act only for their own resource provider",
        "the authorization matrix below",
    ),
    (
        "learning what exists in another tenant",
        "a caller of another tenant gets for any object exactly what a missing object gets, and so does every "
        "caller without a role on the management plane; the one exception, as in Azure, is a vault's data plane, "
        "where a principal of the vault's own tenant without an access policy is told FORBIDDEN_BY_POLICY naming "
        "the vault (so that a revoked identity learns why); see 'Who learns that a vault exists'. No error names "
        "an id the caller did not give",
        "tests/security/test_existence.py, tests/security/test_door_matrix.py (the HTTPS door)",
    ),
    (
        "another tenant's audit history",
        "records belong to one vault incarnation (vault id)",
        "tests/security/test_audit_tenancy.py",
    ),
    (
        "malformed input",
        "bytes that are no message, oversize requests, JSON nested deep, timestamps out of range: "
        "INVALID_ARGUMENT with a reason, nothing stored, logs rate-limited; HTTP requests the parser refuses: 400, "
        "one rate-limited log line per kind of fault without the request's bytes, no server version in any answer",
        "tests/security/test_malformed_input.py, tests/security/test_listeners.py, the fuzzer below",
    ),
    (
        "exhaustion",
        "caps on calls and streams per service; one scrypt hash per sign-in whatever the principal holds (a "
        "secret names its own id), at most 1,000 secrets per principal; scrypt on its own bounded pool, its "
        "queue served in turn across tenants and client ids, a full queue refusing the newest check of whoever "
        "holds the most of it; per-client backoff counted from each failure (at most 30 s, never for a secret "
        "verified lately); anonymous refusals audited in aggregate",
        "tests/security/test_limits.py, tests/security/test_many_secrets.py",
    ),
    (
        "slow clients and connection floods",
        "every listener closes a connection whose TLS handshake and request head (gRPC: HTTP/2 settings) are not "
        "in within 10 s, and one idle for 60 s; caps on connections per listener and per peer address, beyond "
        "which a connection is closed at once (gRPC, whose core has no cap per peer: the newest of a peer's "
        "connections beyond its cap within half a second, found among the process's own sockets) and the "
        "refusal logged rate-limited; a process raises its soft descriptor limit at start, keeps a quarter in "
        "reserve and gives each listener at most an eighth of the rest",
        "tests/security/test_listeners.py (figures below)",
    ),
    (
        "one caller or tenant taking the cap from everyone",
        "the cap on calls is shared: each caller (an anonymous one by its address) and each tenant at most a "
        "share, the token endpoints (gRPC and HTTPS) a budget of their own, a part kept for the platform's "
        "services and the operator, health checks never counted; beyond a share CALLER_TOO_MANY_CALLS or "
        "TENANT_TOO_MANY_CALLS with a retry advice",
        "tests/rpckit/test_admission.py, tests/identity/test_call_shares.py, tests/security/test_fairness.py "
        "(figures below)",
    ),
    (
        "plaintext on the network",
        "a gRPC listener other machines can reach must be mutual TLS or the service does not start; metrics on "
        "loopback unless exposed on purpose",
        "tests/e2e/test_listeners.py",
    ),
    (
        "identity's HTTP endpoints (OpenID Connect discovery, keys, client-credentials token)",
        "public as an identity provider's are, so no client certificate: HTTPS with the service's certificate "
        "(plain HTTP only on loopback), served only when --http-port is given; the token endpoint is the gRPC "
        "call by another road: the same secret checks, failed-sign-in pauses and cap on calls, a body read "
        "within 5 s before it takes a place, credentials never in the URL, refusals counted by reason",
        "tests/identity/test_oidc_http.py",
    ),
    (
        "the key vault's HTTPS door (Azure Key Vault's data plane, for Microsoft's SDKs)",
        "a door that translates only: the token checked by the gRPC side's validator (vault audience, revocations), "
        "then the gRPC API's own method decides, with the same access policies, existence rule, audit trail and "
        "shares of the cap on calls (one count for both doors); Key Vault's statuses (401 with the challenge, 403, "
        "404); the body read within 5 s and at most 64 KiB before the call takes a place; a Host that names no "
        "vault of the service refused; the listener's limits on heads, idle connections and connections per peer",
        "tests/security/test_door_matrix.py, test_door_fuzz.py, test_door_limits.py (figures below), "
        "tests/keyvault/test_azure_door.py",
    ),
    (
        "the CONNECT proxy used as an open proxy",
        "it tunnels only CONNECTs to port 443 of login.microsoftonline.com and one label under .vault.azure.net, "
        "each to its door, and refuses anything else (403 another name or port, 405 another method or an "
        "absolute-form request, 400 a head over 8 KiB) before opening any connection; it does not terminate TLS, "
        "so the client's own certificate check stands; slow heads are cut off, connections capped per peer",
        "tests/security/test_door_fuzz.py (a canary port is never reached), tests/rpckit/test_connect_proxy.py",
    ),
    (
        "secrets at rest",
        "private keys sealed under master key files (0600, refused otherwise), client secrets as scrypt "
        "hashes, data only under envelope encryption; tests read the raw files",
        "tests/speech, tests/keyvault, tests/e2e/test_bad_environments.py",
    ),
    (
        "another local user planting or reading a profile or credential file",
        "files of secrets (profiles, operator and platform credentials, master keys, database passwords, the "
        "development CA's keys) read only if the user's own and private, in directories no one else may write "
        "(sticky ones excepted), as ssh treats its own; written under a random name with O_EXCL|O_NOFOLLOW, "
        "mode 0600, synced and renamed into place, never through a link: refused with FILE_NOT_PRIVATE",
        "tests/security/test_planted_files.py",
    ),
    (
        "a tampered audit log",
        "a keyed-MAC chain with signed checkpoints; every change's record commits with it",
        "tests/keyvault/test_audit.py, tests/faults",
    ),
)
"""(threat, how it is met, the tests that keep it so)."""


THREAT_MODEL = """\
## What we defend, and against whom

The trio holds customer-managed keys and the data they protect, so the attacker we design
against is anyone on the network who can reach a port, including a genuine customer of
another tenant with valid tokens, and a customer's own principals acting beyond their role.
What they must never get: a data key or a secret of a tenant that is not theirs, a key
unwrap after its access was revoked, a token accepted that the directory did not sign (or no
longer trusts), knowledge of what exists in another tenant, a way to exhaust the services for
everyone, or an audit log that hides what they did.

{defences}

## Out of scope

- An attacker with the operator credential or with the master key files: they are the
  platform. Protect `operator.json` and the data directories (0600/0700 as made).
- An attacker on the machine as the services' user, reading process memory.
- Denial of service below the gRPC layer (SYN floods, TLS handshake floods): put the trio
  behind what your platform uses for that. gRPC's core caps connections per listener but not
  per peer, and the process closes a peer's connections beyond its cap only once it sees them
  (within half a second), so a burst of connections from one address can fill a gRPC port's
  cap for that long; the process, its other ports and its reserve of descriptors are
  untouched. A request's metadata over 16 KiB is refused by
  gRPC itself (RESOURCE_EXHAUSTED without our reason).
- Side channels in timing beyond the slow hash: every refused sign-in checks one scrypt hash,
  whether or not its client id or secret id exists, but the lookups around it are not
  constant-time.

## How to report

Open an issue marked *security* on the project's tracker without the details, and ask for a
private channel; we answer within two working days. Please include the commit you run, what you did, what you
expected, and what happened.
"""


def render_listeners(listeners: dict[str, Any]) -> list[str]:
    """The section on slow clients: what one held, and for how long, with the limits of the run."""
    limits, fds = listeners["limits"], listeners["descriptors"]
    lines = [
        "## Slow clients and connection floods",
        "",
        f"One client opens connections at once from one address and trickles a byte into each every half second, "
        f"never finishing a request (on HTTPS after its TLS handshake; on gRPC, without a client certificate, "
        f"inside its TLS hello), while a client from another address asks for a document and a health check. "
        f"Limits of the run, the defaults: request head (TLS handshake included) within {limits['head_timeout']:g} s, "
        f"idle {limits['idle_timeout']:g} s, at most {limits['max_connections']:,} connections per listener and "
        f"{limits['max_per_peer']:,} per peer; descriptors {fds['limit']:,}, {fds['reserve']:,} of them in "
        f"reserve, a listener's share {fds['per_listener']:,}.",
        "",
        "| listener | connections tried | held by the slow client | refused at once | all cut off within | "
        "still open | others served meanwhile |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for f in listeners["figures"]:
        within = "-" if f["cut_off_within"] is None else f"{f['cut_off_within']:g} s"
        lines.append(
            f"| {f['listener']} | {f['tried']:,} | {f['held']:,} | {f['refused']:,} | {within} | {f['still_open']:,} | "
            f"{'yes' if f['served_meanwhile'] else 'no'} |"
        )
    return [*lines, ""]


def fairness_section(figures: dict[str, Any]) -> list[str]:
    """Tenant A's latency, quiet and under each flood, as tests/security/test_fairness.py measured it."""
    quiet = figures["quiet"]
    lines = [
        "## Another tenant's latency under a flood",
        "",
        f"`cmk up` capped at {figures['cap']} calls (CMK_MAX_CALLS; the default shares), tenant A listing its "
        f"principals, one call after another, {figures['samples']} calls a phase, while a client in another "
        f"process keeps {figures['in_flight']} calls in flight (more than the whole cap) as each row says. The "
        f"bound is max({figures['factor']} x quiet p99, quiet p99 + {figures['slack_ms']:,.0f} ms) = "
        f"{figures['bound_ms']:,.1f} ms ({figures['cpus']} CPUs, load average {figures['load_average']:.1f} at "
        "the end; why that bound: tests/security/test_fairness.py).",
        "",
        "| flood | tenant A refused | tenant A p50 | tenant A p99 | tenant A max | the flood's calls answered |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| none (quiet) | {sum(quiet['refused'].values())} | {quiet['p50_ms']:,.1f} ms | {quiet['p99_ms']:,.1f} ms "
        f"| {quiet['max_ms']:,.1f} ms | - |",
    ]
    for phase in figures["floods"]:
        flood = phase["flood"]
        outcomes = ", ".join(f"{reason} {count:,}" for reason, count in flood["outcomes"].items())
        lines.append(
            f"| {phase['name']} | {sum(phase['refused'].values())} | {phase['p50_ms']:,.1f} ms "
            f"| {phase['p99_ms']:,.1f} ms | {phase['max_ms']:,.1f} ms | {flood['answered']:,} in "
            f"{flood['seconds']:,.1f} s ({outcomes}) |"
        )
    return [*lines, ""]


def door_fuzz_section(found: dict[str, Any]) -> list[str]:
    """The doors' and the proxy's fuzz, as tests/security/test_door_fuzz.py measured it."""
    lines = [
        "## Fuzzing the HTTPS doors and the CONNECT proxy",
        "",
        f"Raw requests on sockets of their own (seed {found['seed']}), to a trio started as `cmk up` starts it (TLS, "
        f"head timeout {found['head_timeout']:g} s here): hostile JSON fields and bodies, api-versions, paths, "
        "Host headers, methods, header floods and framing to the key vault's door as its tenant's administrator; "
        "form bodies to identity's token endpoint; CONNECT lines, targets, ports and heads to the proxy, whose "
        "routes are the production ones to stand-in doors, beside a canary port that nothing may reach.",
        "",
        "| target | inputs | 5xx | unanswered | refusals checked to have stored nothing | failures |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, key in (
        ("key vault door", "vault_door"),
        ("token endpoint", "token_endpoint"),
        ("CONNECT proxy", "proxy"),
    ):
        t = found[key]
        checks = f"{t['store_checks']:,}" if t["store_checks"] else "-"
        lines.append(f"| {name} | {t['inputs']:,} | {t['server_errors']} | {t['unanswered']} | {checks} | "
                     f"{t['failure_count']} |")  # fmt: skip
    proxy = found["proxy"]
    lines += [
        "",
        f"The proxy opened {proxy['tunnels']} tunnels, each to a routed name on port 443, and "
        f"{proxy['door_connections']} connections reached the stand-in doors; the canary was reached "
        f"{proxy['canary_connections']} times.",
        "",
        "| key vault door: status and reason | count |",
        "| --- | --- |",
        *[f"| {status} | {count:,} |" for status, count in found["vault_door"]["statuses"].items()],
        "",
        "| slow client | answer | after |",
        "| --- | --- | --- |",
        *[f"| {name} | {_slow_answer(s)} | {s['seconds']:g} s |" for name, s in found["slow"].items()],
        "",
    ]
    return lines


def arm_section(matrix: dict[str, Any] | None, fuzz: dict[str, Any] | None) -> list[str]:
    """Azure Resource Manager's door: its authorisation matrix (tests/security/test_arm_matrix.py)
    and its fuzz (tests/security/test_arm_fuzz.py)."""
    lines = ["## Azure Resource Manager's door", ""]
    if matrix is not None:
        c = matrix["counts"]
        lines += [
            f"Every ARM operation the door serves, by every kind of caller of the gRPC matrix, each with a token for "
            f"the management audience: {len(matrix['rows'])} operations, {c['cells']:,} cells, {c['allow']:,} allowed, "
            f"{c['deny']:,} denied, {c['5xx']} answers of 5xx, {len(matrix['wrong'])} differing from the rules. An "
            "operation's expectation is not written again: it is allowed exactly when every call it makes of the "
            "services is allowed to that caller by the gRPC matrix below (the door decides nothing itself). A denial "
            "is a 401, a 403, or the 404 of an object that exists (the existence rule: a caller without a role is told "
            "alike of what exists and what does not); a refused delete is checked to have left its target in place.",
            "",
            "| operation | " + " | ".join(matrix["callers"]) + " |",
            "| --- |" + " --- |" * len(matrix["callers"]),
            *[
                f"| {op} | " + " | ".join(row[who] for who in matrix["callers"]) + " |"
                for op, row in matrix["rows"].items()
            ],
            "",
        ]
    if fuzz is not None:
        t = fuzz["arm_door"]
        lines += [
            f"Fuzzed with raw requests (seed {fuzz['seed']}) as the subscription's Owner, on a trio started as "
            "`cmk up` starts it: every field of every body with a value of each JSON type, then hostile fields at "
            "every depth, bodies, api-versions, paths, methods, headers and framing. "
            f"{t['inputs']:,} inputs, {t['server_errors']} answers of 5xx, {t['unanswered']} unanswered, "
            f"{t['store_checks']:,} refusals each checked to have changed no table of any service, "
            f"{t['failure_count']} failures.",
            "",
            "| ARM door: status and reason | count |",
            "| --- | --- |",
            *[f"| {status} | {count:,} |" for status, count in t["statuses"].items()],
            "",
        ]
    return lines


def _slow_answer(slow: dict[str, Any]) -> str:
    return "cut off, nothing said" if slow["status"] is None else f"{slow['status']} {slow['reason']}"


def door_flood_section(found: dict[str, Any]) -> list[str]:
    """A flood over the key vault's door beside another tenant's calls (tests/security/test_door_limits.py)."""
    flood = ", ".join(f"{outcome} {count:,}" for outcome, count in found["flood"].items())
    tenant_a = ", ".join(f"{outcome} {count:,}" for outcome, count in found["tenant_a"].items())
    return [
        "## A flood over the key vault's HTTPS door",
        "",
        f"The key vault capped at {found['cap']} calls ({found['per_caller']} per caller), one calling share for both "
        f"doors. Tenant B keeps {found['in_flight']} unwraps in flight on the door; meanwhile tenant A makes "
        f"{found['calls']} unwraps one after another, alternately on the door and on gRPC. Tenant B held at most "
        f"{found['flood_most_held']} calls at once and was answered: {flood}. Tenant A: {tenant_a}. Counts only; "
        "the test asserts that every call of tenant A's is served and that tenant B never holds more than its share.",
        "",
    ]


def render(
    fuzz: dict[str, Any], matrix: str, listeners: dict[str, Any] | None = None, fairness: dict[str, Any] | None = None,
    door_matrix: dict[str, Any] | None = None, door_fuzz: dict[str, Any] | None = None,
    door_flood: dict[str, Any] | None = None, arm_matrix: dict[str, Any] | None = None,
    arm_fuzz: dict[str, Any] | None = None,
) -> str:  # fmt: skip
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    inputs = fuzz["inputs"]
    bad = [s for s in fuzz["statuses"] if s["code"] in ("UNKNOWN", "INTERNAL", "DATA_LOSS", "UNIMPLEMENTED")]
    lines = [
        "# Security",
        "",
        f"Written by `python3 dev.py security` on {when} from that run: every test of `tests/security` passed, "
        "and the figures below are what it measured.",
        "",
        THREAT_MODEL.format(
            defences="\n".join(
                ["| threat | how it is met | kept by |", "| --- | --- | --- |"]
                + [f"| {threat} | {how} | {kept} |" for threat, how, kept in DEFENCES]
            )
        ),
        "## Forged tokens",
        "",
        "Each attack is sent to all three services (identity, key vault, speech); all refuse it as shown, and the "
        "genuine token is accepted by all three (the positive control).",
        "",
        "| attack | identity | key vault | speech |",
        "| --- | --- | --- | --- |",
    ]
    for attack in ATTACKS:
        cells = []
        for service in ("identity", "keyvault", "speech"):
            code, reason = attack.expected[service]
            cells.append(f"{code.name if code else 'OK'} {reason or ''}".strip())
        lines.append(f"| {attack.name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Fuzzing",
        "",
        f"A structure-aware fuzz of every RPC (seed {fuzz['seed']}): "
        + ", ".join(f"{n:,} inputs to {service}" for service, n in inputs.items())
        + f" ({sum(inputs.values()):,} in all, {fuzz['input_kinds'].get('mutated', 0):,} of them mutated bytes), "
        f"sent as the tenant's owner and the operator after learning a valid request per method. "
        f"UNKNOWN, INTERNAL, DATA_LOSS or UNIMPLEMENTED: {sum(s['count'] for s in bad)}; failures: "
        f"{len(fuzz['failures'])}; refused calls checked to have stored nothing: {fuzz['store_checks']:,}.",
        "",
        "| status | reason | count |",
        "| --- | --- | --- |",
        *[f"| {s['code']} | {s['reason'] or '-'} | {s['count']:,} |" for s in fuzz["statuses"][:25]],
        "",
    ]
    if listeners is not None:
        lines += render_listeners(listeners)
    if fairness is not None:
        lines += fairness_section(fairness)
    if door_fuzz is not None:
        lines += door_fuzz_section(door_fuzz)
    if door_flood is not None:
        lines += door_flood_section(door_flood)
    if arm_matrix is not None or arm_fuzz is not None:
        lines += arm_section(arm_matrix, arm_fuzz)
    lines += existence_section()
    if door_matrix is not None:
        from tests.security.door_matrix import render_markdown as render_door_matrix

        lines += render_door_matrix(door_matrix)
    matrix_body = matrix.split("\n", 1)[1] if matrix.startswith("# ") else matrix
    lines += ["## Authorization matrix", matrix_body.replace("\n## ", "\n### ")]
    return "\n".join(lines).rstrip() + "\n"


def existence_section() -> list[str]:
    """The existence rule as tests/security/test_existence.py asserts it on the wire, cell by cell."""
    planes = ("data", "management")
    callers = list(dict.fromkeys(who for who, _, _ in EXISTENCE_RULE))
    lines = [
        "## Who learns that a vault exists",
        "",
        "What a caller without rights is told about an existing vault and a missing one, on each plane (the data "
        "plane here is GetKey; the management plane GetVault). Only a principal of the vault's own tenant, on the "
        "data plane, can tell them apart, as in Azure: FORBIDDEN_BY_POLICY names the vault and the permission "
        "wanting. Vault names are global, as Azure's are: creating a vault with a name in use is refused "
        "(VAULT_NAME_TAKEN) without saying whose it is. Asserted cell by cell in tests/security/test_existence.py; "
        "at the key vault's HTTPS door the same cells (403 Forbidden, 404 VaultNotFound) for every operation, another "
        "tenant's answer being a missing vault's and a missing key's to the byte but for names and request ids "
        "(tests/security/test_door_matrix.py).",
        "",
        "| caller | "
        + " | ".join(f"{which} vault, {plane} plane" for plane in planes for which in ("existing", "missing"))
        + " |",
        "| --- |" + " --- |" * 4,
    ]
    for who in callers:
        cells = []
        for plane in planes:
            for which in ("existing", "missing"):
                code, reason = EXISTENCE_RULE[who, which, plane]
                cells.append(f"{code.name} {reason.value}")
        lines.append(f"| {who} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fuzz", type=Path, required=True)
    parser.add_argument("--matrix", type=Path, required=True)
    parser.add_argument("--listeners", type=Path, help="the slow-client figures (tests/security/test_listeners.py)")
    parser.add_argument("--fairness", type=Path, help="tests/security/test_fairness.py's figures (JSON)")
    parser.add_argument("--door-matrix", type=Path, help="tests/security/test_door_matrix.py's figures (JSON)")
    parser.add_argument("--door-fuzz", type=Path, help="tests/security/test_door_fuzz.py's figures (JSON)")
    parser.add_argument("--door-flood", type=Path, help="tests/security/test_door_limits.py's figures (JSON)")
    parser.add_argument("--arm-matrix", type=Path, help="tests/security/test_arm_matrix.py's cells (JSON)")
    parser.add_argument("--arm-fuzz", type=Path, help="tests/security/test_arm_fuzz.py's figures (JSON)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    def read(path: Path | None) -> dict[str, Any] | None:
        return json.loads(path.read_text()) if path is not None else None

    listeners = json.loads(args.listeners.read_text()) if args.listeners else None
    fairness = json.loads(args.fairness.read_text()) if args.fairness is not None else None
    fuzz = json.loads(args.fuzz.read_text())
    doors = {
        "door_matrix": read(args.door_matrix),
        "door_fuzz": read(args.door_fuzz),
        "door_flood": read(args.door_flood),
        "arm_matrix": read(args.arm_matrix),
        "arm_fuzz": read(args.arm_fuzz),
    }
    args.out.write_text(render(fuzz, args.matrix.read_text(), listeners, fairness, **doors))


if __name__ == "__main__":
    main()
