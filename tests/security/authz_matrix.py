"""The authorization matrix: for every RPC of the three services (and the development clock
each of them serves), what every kind of caller is EXPECTED to get, written from the
product's rules (README "Roles, and where we are stricter than Azure", DESIGN.md section 5,
and the domain code's require_* checks), not from what the services answer.

A cell is "allow" (the call passes authorization: OK, or a non-authorization error such as
FAILED_PRECONDITION about state) or "deny" (UNAUTHENTICATED, PERMISSION_DENIED, or the
NOT_FOUND a caller with no rights gets for an object that exists). A deny may name the code
expected ("deny:NOT_FOUND" where the rules say the object must look missing to the caller);
then the code is compared too. `render_markdown` turns observed results into the tables of
SECURITY.md: one per service, rows the RPCs, columns the caller kinds.

The rules in one paragraph, as the table applies them:
- identity: a principal sees its own tenant only (anything else answers as missing); the
  tenant administrator manages its tenant's principals and secrets; Owner on a scope (or the
  tenant administrator) grants roles under it; the operator does everything; platform
  principals read subscriptions, check anyone's access, read the event stream and own the
  managed identities of their resource provider (only the owner gets an identity's tokens).
- key vault control plane: Reader reads, Contributor writes, Owner (GRANT) changes access
  policies; data plane (KeyService): only an access policy in the vault's tenant grants a
  permission, whatever role the caller holds; the operator reads every audit record, checks
  and streams the log; platform services and the operator read the event stream.
- speech: Reader reads, Contributor writes and reads secrets (LUIS keys), Owner requests CMK
  approval; SetEncryption grants the identity on the vault with the caller's authority, so it
  needs Owner (the request does not skip the grant); the operator decides approvals, reads
  them, and moves resources; nothing else of a customer is the operator's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cmk_trio.proto.common.v1 import dev_service_pb2
from cmk_trio.proto.identity.v1 import identity_service_pb2
from cmk_trio.proto.keyvault.v1 import keyvault_service_pb2
from cmk_trio.proto.speech.v1 import speech_service_pb2

CALLERS = (
    "none",
    "other-tenant",
    "reader",
    "contributor",
    "owner",
    "tenant-admin",
    "managed-identity",
    "keyvault-platform",
    "speech-platform",
    "operator",
)
"""The caller kinds, the columns of every table (see test_authz_matrix for who they are)."""

DEV_HOSTS = ("identity", "keyvault", "speech")
"""DevService is served by each service: its rows are `cmk.common.v1.DevService/AdvanceClock@host`."""

N, X, R, C, O, A, M, K, S, P = CALLERS  # noqa: E741 (the columns' initials)
CUSTOMER = (R, C, O, A, M)
"""Principals of the customer's tenant (the managed identity is one too)."""
AUTHENTICATED = CALLERS[1:]


def rpcs() -> list[str]:
    """Every RPC in the generated descriptors, as `package.Service/Method` (DevService once per host)."""
    found: list[str] = []
    for module in (identity_service_pb2, keyvault_service_pb2, speech_service_pb2, dev_service_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                name = f"{service.full_name}/{method.name}"
                if service.full_name == "cmk.common.v1.DevService":
                    found += [f"{name}@{host}" for host in DEV_HOSTS]
                else:
                    found.append(name)
    return found


def allow(*callers: str, hidden: Iterable[str] = ()) -> dict[str, str]:
    """`callers` allowed, everyone else denied; the callers in `hidden` must be told NOT_FOUND
    (the object answers as missing to them), and "none" UNAUTHENTICATED."""
    hide = set(hidden)
    row = {}
    for caller in CALLERS:
        if caller in callers:
            row[caller] = "allow"
        elif caller == N:
            row[caller] = "deny:UNAUTHENTICATED"
        elif caller in hide:
            row[caller] = "deny:NOT_FOUND"
        else:
            row[caller] = "deny"
    return row


def others(*callers: str) -> tuple[str, ...]:
    """Every authenticated caller kind but `callers`."""
    return tuple(c for c in AUTHENTICATED if c not in callers)


PUBLIC = {c: "allow" for c in CALLERS}
NOT_CUSTOMER = (X, K, S)
"""Principals of another tenant than the customer's (the operator sees every tenant)."""
VAULT_STRANGERS = (X, M, K, S, P)
"""Callers with no role on the customer's vault: it answers as missing to them."""
KEY_STRANGERS = (X, K, S, P)
"""Callers of another tenant than the vault's: the vault answers as missing (key_checks.authorize)."""

SECRET_RPCS = ("SetSecret", "GetSecret", "ListSecrets", "ListSecretVersions", "UpdateSecret", "DeleteSecret",
               "GetDeletedSecret", "ListDeletedSecrets", "RecoverDeletedSecret", "PurgeDeletedSecret",
               "BackupSecret", "RestoreSecret")  # fmt: skip
"""Every call of the SecretService: the tenant admin's alone (the managed identity holds keys only)."""

EXPECTED: dict[str, dict[str, str]] = {
    # --- identity: IdentityService (directory audience) --------------------------------
    "cmk.identity.v1.IdentityService/CreateTenant": allow(P),
    "cmk.identity.v1.IdentityService/GetTenant": allow(*CUSTOMER, P, hidden=NOT_CUSTOMER),
    "cmk.identity.v1.IdentityService/ListTenants": allow(*AUTHENTICATED),  # each sees its own tenant only
    "cmk.identity.v1.IdentityService/UpdateTenant": allow(A, P, hidden=NOT_CUSTOMER),
    "cmk.identity.v1.IdentityService/CreateSubscription": allow(P),
    "cmk.identity.v1.IdentityService/GetSubscription": allow(*CUSTOMER, K, S, P, hidden=(X,)),
    "cmk.identity.v1.IdentityService/ListSubscriptions": allow(*CUSTOMER, P, hidden=NOT_CUSTOMER),
    "cmk.identity.v1.IdentityService/TransferSubscription": allow(P),
    "cmk.identity.v1.IdentityService/CreatePrincipal": allow(A, P, hidden=NOT_CUSTOMER),
    "cmk.identity.v1.IdentityService/GetPrincipal": allow(*CUSTOMER, P, hidden=NOT_CUSTOMER),
    "cmk.identity.v1.IdentityService/ListPrincipals": allow(*CUSTOMER, P, hidden=NOT_CUSTOMER),
    # A platform principal may change the identities it owns in any tenant: the target here is
    # a service principal, so it is refused (PERMISSION_DENIED: it learns the principal exists).
    "cmk.identity.v1.IdentityService/UpdatePrincipal": allow(A, P, hidden=(X,)),
    "cmk.identity.v1.IdentityService/EnablePrincipal": allow(A, P, hidden=(X,)),
    "cmk.identity.v1.IdentityService/DisablePrincipal": allow(A, P, hidden=(X,)),
    "cmk.identity.v1.IdentityService/DeletePrincipal": allow(A, P, hidden=NOT_CUSTOMER),
    # Only the platform service of the resource's provider (speech for CognitiveServices).
    "cmk.identity.v1.IdentityService/CreateManagedIdentity": allow(S),
    # Only the platform principal that owns the identity; another tenant must not learn it exists.
    "cmk.identity.v1.IdentityService/DeleteManagedIdentity": allow(S, hidden=(X,)),
    "cmk.identity.v1.IdentityService/AddClientSecret": allow(A, P, hidden=NOT_CUSTOMER),
    "cmk.identity.v1.IdentityService/ListClientSecrets": allow(A, P, hidden=NOT_CUSTOMER),
    "cmk.identity.v1.IdentityService/DeleteClientSecret": allow(A, P, hidden=NOT_CUSTOMER),
    "cmk.identity.v1.IdentityService/CreateRoleAssignment": allow(O, A, P, hidden=NOT_CUSTOMER),
    "cmk.identity.v1.IdentityService/GetRoleAssignment": allow(*CUSTOMER, P, hidden=NOT_CUSTOMER),
    "cmk.identity.v1.IdentityService/ListRoleAssignments": allow(*AUTHENTICATED),  # filtered to the caller's tenant
    "cmk.identity.v1.IdentityService/DeleteRoleAssignment": allow(O, A, P, hidden=NOT_CUSTOMER),
    # Another principal's access: platform services and the operator only.
    "cmk.identity.v1.IdentityService/CheckAccess": allow(K, S, P),
    "cmk.identity.v1.IdentityService/WatchEvents": allow(K, S, P),
    # --- identity: ResourceGroupService (management or directory audience, roles) ---------
    # Authorization before existence, as in Azure Resource Manager: a caller of the tenant
    # without the role is refused (it learns nothing of which names exist); to another tenant
    # the subscription does not exist.
    "cmk.identity.v1.ResourceGroupService/CreateResourceGroup": allow(C, O, A, P, hidden=NOT_CUSTOMER),
    "cmk.identity.v1.ResourceGroupService/GetResourceGroup": allow(R, C, O, A, P, hidden=NOT_CUSTOMER),
    # Listing is filtered: the managed identity, with no role, gets an empty page.
    "cmk.identity.v1.ResourceGroupService/ListResourceGroups": allow(*CUSTOMER, P, hidden=NOT_CUSTOMER),
    "cmk.identity.v1.ResourceGroupService/UpdateResourceGroup": allow(C, O, A, P, hidden=NOT_CUSTOMER),
    "cmk.identity.v1.ResourceGroupService/DeleteResourceGroup": allow(C, O, A, P, hidden=NOT_CUSTOMER),
    # --- identity: TokenService ----------------------------------------------------------
    "cmk.identity.v1.TokenService/IssueToken": PUBLIC,  # the client secret in the request is the authority
    "cmk.identity.v1.TokenService/IssueManagedIdentityToken": allow(S, hidden=(X,)),
    "cmk.identity.v1.TokenService/ListSigningKeys": PUBLIC,
    "cmk.identity.v1.TokenService/RotateSigningKey": allow(P),
    "cmk.identity.v1.TokenService/RevokeSigningKey": allow(P),
    # --- key vault: VaultService (management audience, roles) -----------------------------
    "cmk.keyvault.v1.VaultService/CreateVault": allow(C, O, A),
    "cmk.keyvault.v1.VaultService/GetVault": allow(R, C, O, A, hidden=VAULT_STRANGERS),
    "cmk.keyvault.v1.VaultService/ListVaults": allow(R, C, O, A),
    "cmk.keyvault.v1.VaultService/UpdateVault": allow(C, O, A, hidden=VAULT_STRANGERS),
    "cmk.keyvault.v1.VaultService/DeleteVault": allow(C, O, A, hidden=VAULT_STRANGERS),
    "cmk.keyvault.v1.VaultService/ListDeletedVaults": allow(R, C, O, A),
    "cmk.keyvault.v1.VaultService/RecoverVault": allow(C, O, A, hidden=VAULT_STRANGERS),
    "cmk.keyvault.v1.VaultService/PurgeVault": allow(C, O, A, hidden=VAULT_STRANGERS),
    # Stricter than Azure: who may use the keys is changed by an Owner only.
    "cmk.keyvault.v1.VaultService/SetAccessPolicy": allow(O, A, hidden=VAULT_STRANGERS),
    "cmk.keyvault.v1.VaultService/UpdateAccessPolicy": allow(O, A, hidden=VAULT_STRANGERS),
    "cmk.keyvault.v1.VaultService/ReplaceAccessPolicies": allow(O, A, hidden=VAULT_STRANGERS),
    # Vault names are global (DNS names): whether one is taken is said to anyone signed in, as
    # Azure's checkNameAvailability does (and as creating one always has).
    "cmk.keyvault.v1.VaultService/CheckVaultNameAvailability": allow(*AUTHENTICATED),
    "cmk.keyvault.v1.VaultService/RemoveAccessPolicy": allow(O, A, hidden=VAULT_STRANGERS),
    # --- key vault: KeyService (vault audience, access policies only) ---------------------
    # Policies: tenant-admin made the vaults (every permission); the managed identity holds
    # get/wrapKey/unwrapKey (granted by SetEncryption). Roles grant nothing on the data plane.
    "cmk.keyvault.v1.KeyService/CreateKey": allow(A, hidden=KEY_STRANGERS),
    "cmk.keyvault.v1.KeyService/ImportKey": allow(A, hidden=KEY_STRANGERS),
    "cmk.keyvault.v1.KeyService/GetKey": allow(A, M, hidden=KEY_STRANGERS),
    "cmk.keyvault.v1.KeyService/ListKeys": allow(A, hidden=KEY_STRANGERS),
    "cmk.keyvault.v1.KeyService/ListKeyVersions": allow(A, hidden=KEY_STRANGERS),
    "cmk.keyvault.v1.KeyService/UpdateKey": allow(A, hidden=KEY_STRANGERS),
    "cmk.keyvault.v1.KeyService/RotateKey": allow(A, hidden=KEY_STRANGERS),
    "cmk.keyvault.v1.KeyService/GetKeyRotationPolicy": allow(A, hidden=KEY_STRANGERS),
    "cmk.keyvault.v1.KeyService/UpdateKeyRotationPolicy": allow(A, hidden=KEY_STRANGERS),
    "cmk.keyvault.v1.KeyService/WrapKey": allow(A, M, hidden=KEY_STRANGERS),
    "cmk.keyvault.v1.KeyService/UnwrapKey": allow(A, M, hidden=KEY_STRANGERS),
    "cmk.keyvault.v1.KeyService/Encrypt": allow(A, hidden=KEY_STRANGERS),
    "cmk.keyvault.v1.KeyService/Decrypt": allow(A, hidden=KEY_STRANGERS),
    "cmk.keyvault.v1.KeyService/BackupKey": allow(A, hidden=KEY_STRANGERS),
    "cmk.keyvault.v1.KeyService/RestoreKey": allow(A, hidden=KEY_STRANGERS),
    "cmk.keyvault.v1.KeyService/Sign": allow(A, hidden=KEY_STRANGERS),
    "cmk.keyvault.v1.KeyService/Verify": allow(A, hidden=KEY_STRANGERS),
    "cmk.keyvault.v1.KeyService/DeleteKey": allow(A, hidden=KEY_STRANGERS),
    # Reading a deleted key needs `get` (as Azure's keys/get): the identity holds it (on contoso-scratch,
    # whose policies mirror contoso-cmk's). First written as deny by mistake, corrected from key_checks/Azure.
    "cmk.keyvault.v1.KeyService/GetDeletedKey": allow(A, M, hidden=KEY_STRANGERS),
    "cmk.keyvault.v1.KeyService/ListDeletedKeys": allow(A, hidden=KEY_STRANGERS),
    "cmk.keyvault.v1.KeyService/RecoverDeletedKey": allow(A, hidden=KEY_STRANGERS),
    "cmk.keyvault.v1.KeyService/PurgeDeletedKey": allow(A, hidden=KEY_STRANGERS),
    # --- key vault: SecretService (vault audience, the secret half of access policies) ---
    # The managed identity holds key permissions only: secrets are the tenant admin's.
    **{f"cmk.keyvault.v1.SecretService/{rpc}": allow(A, hidden=KEY_STRANGERS) for rpc in SECRET_RPCS},
    # --- key vault: AuditService (management audience) ------------------------------------
    "cmk.keyvault.v1.AuditService/ListAuditRecords": allow(R, C, O, A, P, hidden=(X, M, K, S)),
    "cmk.keyvault.v1.AuditService/StreamAuditRecords": allow(P),
    "cmk.keyvault.v1.AuditService/CreateAuditCheckpoint": allow(P),
    "cmk.keyvault.v1.AuditService/VerifyAuditLog": allow(P),
    "cmk.keyvault.v1.AuditService/GetAuditPublicKey": allow(*AUTHENTICATED),  # a public key, to check checkpoints
    # --- key vault: EventService (management audience) ------------------------------------
    "cmk.keyvault.v1.EventService/WatchEvents": allow(K, S, P),
    # --- speech: SpeechResourceService (management audience, roles) -----------------------
    "cmk.speech.v1.SpeechResourceService/CreateSpeechResource": allow(C, O, A),
    "cmk.speech.v1.SpeechResourceService/GetSpeechResource": allow(R, C, O, A, hidden=VAULT_STRANGERS),
    "cmk.speech.v1.SpeechResourceService/ListSpeechResources": allow(R, C, O, A),
    "cmk.speech.v1.SpeechResourceService/DeleteSpeechResource": allow(C, O, A, hidden=VAULT_STRANGERS),
    # The operator moves resources (across tenants too: "done by the platform operator").
    "cmk.speech.v1.SpeechResourceService/MoveSpeechResource": allow(C, O, A, P, hidden=(X, M, K, S)),
    "cmk.speech.v1.SpeechResourceService/AssignIdentity": allow(C, O, A, hidden=VAULT_STRANGERS),
    "cmk.speech.v1.SpeechResourceService/RemoveIdentity": allow(C, O, A, hidden=VAULT_STRANGERS),
    # Grants the identity on the vault with the caller's authority: Owner (README).
    "cmk.speech.v1.SpeechResourceService/SetEncryption": allow(O, A, hidden=VAULT_STRANGERS),
    "cmk.speech.v1.SpeechResourceService/DisableEncryption": allow(C, O, A, hidden=VAULT_STRANGERS),
    "cmk.speech.v1.SpeechResourceService/RequestCmkApproval": allow(O, A),
    "cmk.speech.v1.SpeechResourceService/ApproveCmkApproval": allow(P),
    "cmk.speech.v1.SpeechResourceService/RejectCmkApproval": allow(P),
    "cmk.speech.v1.SpeechResourceService/GetCmkApproval": allow(R, C, O, A, P),
    # --- speech: ApplicationService (speech audience) -------------------------------------
    "cmk.speech.v1.ApplicationService/CreateApplication": allow(C, O, A, hidden=VAULT_STRANGERS),
    "cmk.speech.v1.ApplicationService/GetApplication": allow(R, C, O, A, hidden=VAULT_STRANGERS),  # Reader: withheld
    "cmk.speech.v1.ApplicationService/ListApplications": allow(R, C, O, A, hidden=VAULT_STRANGERS),
    "cmk.speech.v1.ApplicationService/UpdateApplication": allow(C, O, A, hidden=VAULT_STRANGERS),
    "cmk.speech.v1.ApplicationService/DeleteApplication": allow(C, O, A, hidden=VAULT_STRANGERS),
    "cmk.speech.v1.ApplicationService/SetLuisKeys": allow(C, O, A, hidden=VAULT_STRANGERS),
    # Secrets: Contributor, never Reader (README).
    "cmk.speech.v1.ApplicationService/GetLuisKeys": allow(C, O, A, hidden=VAULT_STRANGERS),
    # --- speech: SpeechDevService (management audience; what tests need) -------------------
    "cmk.speech.v1.SpeechDevService/CreateBackdatedSpeechResource": allow(P),
    # The sealed bytes as stored: ciphertext, but still the operator's only, whoever owns the data.
    "cmk.speech.v1.SpeechDevService/GetSealedRecord": allow(P),
    # --- the development clock (served only with --dev-time-control) ----------------------
    **{f"cmk.common.v1.DevService/AdvanceClock@{host}": allow(P) for host in DEV_HOSTS},
}

UNSURE: dict[tuple[str, str], str] = {
    ("cmk.identity.v1.IdentityService/GetSubscription", K): "platform services read subscriptions of any tenant "
    "(directory.get_subscription's docstring), so this is allow by design, not a leak",
    ("cmk.speech.v1.SpeechResourceService/MoveSpeechResource", P): "the operator is allowed by encryption.move; "
    "DESIGN.md gives the operator tenants, subscriptions and approvals only",
}
"""Cells whose expectation is a judgement call, with the reasoning (shown under the tables)."""

KNOWN_FINDINGS: dict[tuple[str, str], str] = {}
"""Cells where the services differ from the rules, reported (SECURITY.md) and tolerated until fixed: the
test fails on any other difference, and on one of these once it is fixed (then delete it here)."""


@dataclass(frozen=True)
class Outcome:
    """What one caller got from one RPC: "allow"/"deny", the gRPC code's short name and the
    ErrorInfo reason ("" for OK)."""

    verdict: str
    code: str = "OK"
    reason: str = ""

    def cell(self) -> str:
        if self.verdict == "allow" and self.code == "OK":
            return "allow"
        detail = f"{self.code} {self.reason}".strip()
        return f"{self.verdict} ({detail})"


def expected_verdict(rpc: str, caller: str) -> str:
    return EXPECTED[rpc][caller].split(":", 1)[0]


def matches(rpc: str, caller: str, outcome: Outcome) -> bool:
    """The observed outcome is what the table says (verdict, and the code where it names one)."""
    verdict, _, code = EXPECTED[rpc][caller].partition(":")
    return outcome.verdict == verdict and (not code or outcome.code == code)


def mismatches(results: Mapping[str, Mapping[str, Outcome]]) -> list[tuple[str, str, str, Outcome]]:
    """(rpc, caller, expected, observed) for every cell where they differ."""
    return [
        (rpc, caller, EXPECTED[rpc][caller], outcome)
        for rpc, row in results.items()
        for caller, outcome in row.items()
        if not matches(rpc, caller, outcome)
    ]


def _service_of(rpc: str) -> str:
    service, _, method = rpc.partition("/")
    host = method.partition("@")[2]
    return f"{service} ({host})" if host else service


def render_markdown(results: Mapping[str, Mapping[str, Outcome]]) -> str:
    """One markdown table per service: rows the RPCs, columns the caller kinds; a cell that
    differs from the expectation is marked with what was expected."""
    lines = [
        "# Authorization matrix",
        "",
        "Generated by `tests/security/test_authz_matrix.py` against the three running services. "
        "`allow`: the call passed authorization (OK, or a non-authorization error in parentheses); "
        "`deny`: UNAUTHENTICATED, PERMISSION_DENIED or the NOT_FOUND of an object the caller may not see. "
        "**bold** cells differ from the expectation written in `tests/security/authz_matrix.py`.",
    ]
    by_service: dict[str, list[str]] = {}
    for rpc in results:
        by_service.setdefault(_service_of(rpc), []).append(rpc)
    for service, rows in by_service.items():
        lines += ["", f"## {service}", "", "| RPC | " + " | ".join(CALLERS) + " |", "|---" * (len(CALLERS) + 1) + "|"]
        for rpc in rows:
            cells = []
            for caller in CALLERS:
                outcome = results[rpc].get(caller)
                if outcome is None:
                    cells.append("-")
                elif matches(rpc, caller, outcome):
                    cells.append(outcome.cell())
                else:
                    cells.append(f"**{outcome.cell()} (expected {EXPECTED[rpc][caller]})**")
            lines.append(f"| {rpc.partition('/')[2].partition('@')[0]} | " + " | ".join(cells) + " |")
    differing = mismatches(results)
    lines += ["", "## Differences from the expectation", ""]
    lines += [f"- {rpc} / {caller}: expected {want}, got {got.cell()}" for rpc, caller, want, got in differing] or [
        "None."
    ]
    lines += ["", "## Known findings", ""]
    lines += [f"- {rpc} / {caller}: {why}" for (rpc, caller), why in KNOWN_FINDINGS.items()] or ["None."]
    lines += ["", "## Judgement calls", ""]
    lines += [f"- {rpc} / {caller}: {why}" for (rpc, caller), why in UNSURE.items()]
    return "\n".join(lines) + "\n"
