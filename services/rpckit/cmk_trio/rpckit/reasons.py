"""The one catalogue of error reasons, for every service.

A reason is a stable UPPER_SNAKE string carried in `google.rpc.ErrorInfo.reason`. Clients
branch on it, so a reason is never renamed or reused for something else; add new ones.
Each member's value is the wire string; the comment says when it is used.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Every error reason any service may return."""

    # --- bad input (INVALID_ARGUMENT) ---
    FIELD_REQUIRED = "FIELD_REQUIRED"  # a required field is empty
    FIELD_TOO_LONG = "FIELD_TOO_LONG"  # a string or list exceeds its limit
    FIELD_INVALID = "FIELD_INVALID"  # a value is of the wrong shape (characters, range)
    UUID_MALFORMED = "UUID_MALFORMED"  # an id that must be a UUID is not one
    ENUM_UNKNOWN = "ENUM_UNKNOWN"  # an enum is unspecified or a number the API does not know
    NAME_MALFORMED = "NAME_MALFORMED"  # a resource name does not match its pattern
    SCOPE_MALFORMED = "SCOPE_MALFORMED"  # a role scope is not a subscription or a path under one
    PAGE_SIZE_INVALID = "PAGE_SIZE_INVALID"  # page_size below 0
    PAGE_TOKEN_INVALID = "PAGE_TOKEN_INVALID"  # page_token not one this service issued
    UPDATE_MASK_INVALID = "UPDATE_MASK_INVALID"  # empty mask or a field that cannot be updated
    AUDIENCE_UNKNOWN = "AUDIENCE_UNKNOWN"  # a token was asked for an audience nobody serves
    REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE"  # the message exceeds the server's size limit
    REQUEST_MALFORMED = "REQUEST_MALFORMED"  # the request bytes are not a message of the method's type
    REQUEST_TOO_SLOW = "REQUEST_TOO_SLOW"  # identity's HTTP endpoints: the body did not arrive in time (408)
    HTTP_PATH_UNKNOWN = "HTTP_PATH_UNKNOWN"  # identity's HTTP endpoints: no such path (404)
    HTTP_METHOD_NOT_ALLOWED = "HTTP_METHOD_NOT_ALLOWED"  # identity's HTTP endpoints: wrong method (405)
    AUTHORITY_UNKNOWN = "AUTHORITY_UNKNOWN"  # instance discovery: the authority named is not this identity service
    GRAPH_QUERY_UNSUPPORTED = "GRAPH_QUERY_UNSUPPORTED"  # Microsoft Graph at identity's door: a $filter not served
    DELEGATED_TOKEN_REQUIRED = "DELEGATED_TOKEN_REQUIRED"  # Microsoft Graph's /me: the token is an application's

    # --- authentication (UNAUTHENTICATED) ---
    TOKEN_MISSING = "TOKEN_MISSING"  # no "authorization: Bearer" metadata
    TOKEN_MALFORMED = "TOKEN_MALFORMED"  # not a compact JWS with JSON header and claims
    TOKEN_UNSIGNED = "TOKEN_UNSIGNED"  # alg "none"
    TOKEN_ALGORITHM_NOT_ALLOWED = "TOKEN_ALGORITHM_NOT_ALLOWED"  # alg other than the key's
    TOKEN_HEADER_KEY_REFERENCE = "TOKEN_HEADER_KEY_REFERENCE"  # jwk/jku/x5u/x5c in the header
    TOKEN_KID_INVALID = "TOKEN_KID_INVALID"  # kid missing or not a plain key id
    TOKEN_KEY_UNKNOWN = "TOKEN_KEY_UNKNOWN"  # kid not among the issuer's keys, even after refresh
    TOKEN_SIGNATURE_MISSING = "TOKEN_SIGNATURE_MISSING"  # the signature part is empty
    TOKEN_SIGNATURE_INVALID = "TOKEN_SIGNATURE_INVALID"  # the signature does not verify
    TOKEN_CLAIMS_INVALID = "TOKEN_CLAIMS_INVALID"  # a required claim is missing or mistyped
    TOKEN_ISSUER_INVALID = "TOKEN_ISSUER_INVALID"  # iss is not the issuer of the token's tid
    TOKEN_AUDIENCE_INVALID = "TOKEN_AUDIENCE_INVALID"  # aud is not this service
    TOKEN_AUDIENCE_AMBIGUOUS = "TOKEN_AUDIENCE_AMBIGUOUS"  # aud names several audiences
    TOKEN_EXPIRED = "TOKEN_EXPIRED"  # exp is past (beyond the skew)
    TOKEN_NOT_YET_VALID = "TOKEN_NOT_YET_VALID"  # nbf or iat is in the future (beyond the skew)
    TOKEN_TENANT_MISMATCH = "TOKEN_TENANT_MISMATCH"  # the token's tenant is not the target's
    TOKEN_REVOKED = "TOKEN_REVOKED"  # its principal was disabled or deleted
    INVALID_CLIENT_CREDENTIALS = "INVALID_CLIENT_CREDENTIALS"  # unknown client or wrong secret
    CLIENT_SECRET_EXPIRED = "CLIENT_SECRET_EXPIRED"  # the secret's lifetime is over

    # --- authorization (PERMISSION_DENIED) ---
    OPERATOR_REQUIRED = "OPERATOR_REQUIRED"  # only the platform operator may do this
    TENANT_ADMIN_REQUIRED = "TENANT_ADMIN_REQUIRED"  # needs a tenant administrator (or operator)
    PLATFORM_PRINCIPAL_REQUIRED = "PLATFORM_PRINCIPAL_REQUIRED"  # needs a platform service
    PROVIDER_NOT_OWNED = "PROVIDER_NOT_OWNED"  # a platform service acted for another provider's resource
    ROLE_REQUIRED = "ROLE_REQUIRED"  # no role assignment grants the action on the scope
    MANAGED_IDENTITY_NOT_OWNED = "MANAGED_IDENTITY_NOT_OWNED"  # caller is not the owning platform
    PRINCIPAL_DISABLED = "PRINCIPAL_DISABLED"  # a disabled principal asked for a token

    # --- not found (NOT_FOUND) ---
    TENANT_NOT_FOUND = "TENANT_NOT_FOUND"
    SUBSCRIPTION_NOT_FOUND = "SUBSCRIPTION_NOT_FOUND"
    PRINCIPAL_NOT_FOUND = "PRINCIPAL_NOT_FOUND"
    CLIENT_SECRET_NOT_FOUND = "CLIENT_SECRET_NOT_FOUND"
    ROLE_ASSIGNMENT_NOT_FOUND = "ROLE_ASSIGNMENT_NOT_FOUND"
    RESOURCE_GROUP_NOT_FOUND = "RESOURCE_GROUP_NOT_FOUND"
    SIGNING_KEY_NOT_FOUND = "SIGNING_KEY_NOT_FOUND"  # no published signing key has that kid

    # --- already exists (ALREADY_EXISTS) ---
    ROLE_ASSIGNMENT_EXISTS = "ROLE_ASSIGNMENT_EXISTS"  # same principal, role and scope
    RESOURCE_GROUP_EXISTS = "RESOURCE_GROUP_EXISTS"  # the subscription has a group of that name
    MANAGED_IDENTITY_EXISTS = "MANAGED_IDENTITY_EXISTS"  # the resource already has one

    # --- rule violations (FAILED_PRECONDITION) ---
    PRINCIPAL_KIND_NOT_ALLOWED = "PRINCIPAL_KIND_NOT_ALLOWED"  # e.g. a secret for a managed identity
    OPERATOR_PROTECTED = "OPERATOR_PROTECTED"  # the operator cannot be disabled or deleted
    SUBSCRIPTION_ALREADY_IN_TENANT = "SUBSCRIPTION_ALREADY_IN_TENANT"  # transfer to its own tenant
    RESOURCE_NOT_IN_TENANT = "RESOURCE_NOT_IN_TENANT"  # resource's subscription is elsewhere
    EVENT_CURSOR_AHEAD = "EVENT_CURSOR_AHEAD"  # a watch cursor beyond the newest event
    CLOCK_CONTROL_DISABLED = "CLOCK_CONTROL_DISABLED"  # the service was not started with --dev-time-control
    CLIENT_SECRET_LIMIT = "CLIENT_SECRET_LIMIT"  # a principal holds at most 1000 client secrets

    # --- key vault: bad input (INVALID_ARGUMENT) ---
    VAULT_NAME_INVALID = "VAULT_NAME_INVALID"  # not 3-24 letters/digits/hyphens, starting with a letter
    KEY_NAME_INVALID = "KEY_NAME_INVALID"  # not 1-127 letters, digits and hyphens
    KEY_URI_MALFORMED = "KEY_URI_MALFORMED"  # not https://{vault}.{suffix}/keys/{name}[/{version}]
    SECRET_NAME_INVALID = "SECRET_NAME_INVALID"  # not 1-127 letters, digits and hyphens
    SECRET_URI_MALFORMED = "SECRET_URI_MALFORMED"  # not https://{vault}.{suffix}/secrets/{name}[/{version}]
    SECRET_TOO_LARGE = "SECRET_TOO_LARGE"  # a value over 25 KiB, as Key Vault's limit
    PERMISSION_UNKNOWN = "PERMISSION_UNKNOWN"  # not one of the real key permission names
    RETENTION_DAYS_INVALID = "RETENTION_DAYS_INVALID"  # soft-delete retention outside 7-90 days
    KEY_SIZE_INVALID = "KEY_SIZE_INVALID"  # RSA size other than 2048, 3072, 4096
    KEY_CURVE_INVALID = "KEY_CURVE_INVALID"  # EC curve other than P-256, P-384, P-521
    KEY_OPERATION_UNKNOWN = "KEY_OPERATION_UNKNOWN"  # not a JWK key operation name
    KEY_MATERIAL_INVALID = "KEY_MATERIAL_INVALID"  # an imported JWK that is not a usable RSA or EC private key
    ALGORITHM_UNKNOWN = "ALGORITHM_UNKNOWN"  # not an encryption or signature algorithm the vault knows
    ALGORITHM_NOT_FOR_KEY = "ALGORITHM_NOT_FOR_KEY"  # an algorithm of another key type or curve (wrap with EC)
    KEY_OPERATION_NOT_FOR_KEY = "KEY_OPERATION_NOT_FOR_KEY"  # key_ops an EC key cannot do (encrypt, wrapKey...)
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"  # more plaintext than the key and padding can take
    CANNOT_DECRYPT = "CANNOT_DECRYPT"  # unwrap/decrypt failed: wrong key, padding or altered blob
    TAGS_INVALID = "TAGS_INVALID"  # more than 15 tags, or a name or value too long
    ROTATION_POLICY_INVALID = "ROTATION_POLICY_INVALID"  # bad action, trigger or duration (minimum P7D)

    # --- key vault: authorization (PERMISSION_DENIED) ---
    FORBIDDEN_BY_POLICY = "FORBIDDEN_BY_POLICY"  # no access policy grants the permission (ForbiddenByPolicy)

    # --- key vault: not found / already exists ---
    VAULT_NOT_FOUND = "VAULT_NOT_FOUND"
    VAULT_DELETED = "VAULT_DELETED"  # the vault is soft-deleted: recoverable (told only to callers it grants)
    DELETED_VAULT_NOT_FOUND = "DELETED_VAULT_NOT_FOUND"  # recover/purge of a vault that is not deleted
    VAULT_NAME_TAKEN = "VAULT_NAME_TAKEN"  # the name is used, possibly by a soft-deleted vault
    ACCESS_POLICY_NOT_FOUND = "ACCESS_POLICY_NOT_FOUND"
    KEY_NOT_FOUND = "KEY_NOT_FOUND"  # KeyNotFound
    KEY_VERSION_NOT_FOUND = "KEY_VERSION_NOT_FOUND"
    DELETED_KEY_NOT_FOUND = "DELETED_KEY_NOT_FOUND"  # recover/purge of a key that is not deleted
    KEY_DELETED = "KEY_DELETED"  # the key is soft-deleted: recover it to use it
    KEY_DELETED_BUT_RECOVERABLE = "KEY_DELETED_BUT_RECOVERABLE"  # ObjectIsDeletedButRecoverable
    KEY_EXISTS = "KEY_EXISTS"  # ALREADY_EXISTS: a restore names a key the vault holds
    SECRET_NOT_FOUND = "SECRET_NOT_FOUND"  # SecretNotFound
    SECRET_VERSION_NOT_FOUND = "SECRET_VERSION_NOT_FOUND"
    DELETED_SECRET_NOT_FOUND = "DELETED_SECRET_NOT_FOUND"  # recover/purge of a secret that is not deleted
    SECRET_DELETED = "SECRET_DELETED"  # the secret is soft-deleted: recover it to use it
    SECRET_DELETED_BUT_RECOVERABLE = "SECRET_DELETED_BUT_RECOVERABLE"  # ObjectIsDeletedButRecoverable
    SECRET_EXISTS = "SECRET_EXISTS"  # ALREADY_EXISTS: a restore names a secret the vault holds

    # --- key vault: backups (INVALID_ARGUMENT unless said) ---
    BACKUP_INVALID = "BACKUP_INVALID"  # not a backup this key vault service made, or altered
    BACKUP_OTHER_SUBSCRIPTION = "BACKUP_OTHER_SUBSCRIPTION"  # restored only into a vault of its subscription
    BACKUP_TOO_LARGE = "BACKUP_TOO_LARGE"  # FAILED_PRECONDITION: more versions than a backup holds

    # --- key vault: rule violations (FAILED_PRECONDITION) ---
    SOFT_DELETE_IRREVERSIBLE = "SOFT_DELETE_IRREVERSIBLE"  # soft-delete cannot be turned off
    PURGE_PROTECTION_IRREVERSIBLE = "PURGE_PROTECTION_IRREVERSIBLE"  # purge protection cannot be turned off
    PURGE_PROTECTION_NEEDS_SOFT_DELETE = "PURGE_PROTECTION_NEEDS_SOFT_DELETE"
    ACCESS_POLICY_LIMIT = "ACCESS_POLICY_LIMIT"  # a vault holds at most 1024 entries
    ACCESS_POLICY_TENANT_MISMATCH = "ACCESS_POLICY_TENANT_MISMATCH"  # an entry for another tenant
    PURGE_PROTECTED = "PURGE_PROTECTED"  # purge refused before the retention period has passed
    VAULT_NOT_SOFT_DELETE = "VAULT_NOT_SOFT_DELETE"  # recover asked of a vault without soft-delete
    KEY_DISABLED = "KEY_DISABLED"  # KeyDisabled: the version refuses every operation
    KEY_EXPIRED = "KEY_EXPIRED"  # after exp: wrap, encrypt and sign refused
    KEY_NOT_YET_VALID = "KEY_NOT_YET_VALID"  # before nbf: wrap, encrypt and sign refused
    KEY_OPERATION_NOT_ALLOWED = "KEY_OPERATION_NOT_ALLOWED"  # not in the version's key_ops
    SECRET_DISABLED = "SECRET_DISABLED"  # SecretDisabled: a disabled version's value is not given

    # --- speech ---
    RESOURCE_ID_MALFORMED = "RESOURCE_ID_MALFORMED"  # INVALID_ARGUMENT: not a CognitiveServices account id
    ACCOUNT_NAME_INVALID = "ACCOUNT_NAME_INVALID"  # INVALID_ARGUMENT: not 2-64 letters, digits, hyphens
    CONFIGURATION_NOT_JSON = "CONFIGURATION_NOT_JSON"  # INVALID_ARGUMENT: the application configuration
    CONFIGURATION_TOO_LARGE = "CONFIGURATION_TOO_LARGE"  # INVALID_ARGUMENT: over the size limit
    CMK_AT_CREATION = "CMK_AT_CREATION"  # INVALID_ARGUMENT: CMK cannot be chosen when creating a resource
    SPEECH_RESOURCE_NOT_FOUND = "SPEECH_RESOURCE_NOT_FOUND"  # NOT_FOUND
    SPEECH_RESOURCE_EXISTS = "SPEECH_RESOURCE_EXISTS"  # ALREADY_EXISTS
    APPLICATION_NOT_FOUND = "APPLICATION_NOT_FOUND"  # NOT_FOUND
    LUIS_KEYS_NOT_SET = "LUIS_KEYS_NOT_SET"  # NOT_FOUND: the resource has no LUIS keys yet
    ETAG_MISMATCH = "ETAG_MISMATCH"  # ABORTED: the record changed since it was read
    CHANGE_UNDONE = "CHANGE_UNDONE"  # ABORTED: another replica took this change for interrupted and undid it
    APPROVAL_NOT_FOUND = "APPROVAL_NOT_FOUND"  # NOT_FOUND: the subscription never asked for CMK
    APPROVAL_ALREADY_DECIDED = "APPROVAL_ALREADY_DECIDED"  # FAILED_PRECONDITION
    CMK_RESOURCE_TOO_OLD = "CMK_RESOURCE_TOO_OLD"  # FAILED_PRECONDITION: created before 2020-06-27
    CMK_TIER_NOT_SUPPORTED = "CMK_TIER_NOT_SUPPORTED"  # FAILED_PRECONDITION: not the S0 tier
    CMK_NOT_APPROVED = "CMK_NOT_APPROVED"  # FAILED_PRECONDITION: the subscription is not approved for CMK
    CMK_APPROVED_AFTER_CREATION = "CMK_APPROVED_AFTER_CREATION"  # FAILED_PRECONDITION: approval came later
    DATA_UNREADABLE = "DATA_UNREADABLE"  # FAILED_PRECONDITION: a record does not open with the data key
    KEYVAULT_NOT_CONFIGURED = "KEYVAULT_NOT_CONFIGURED"  # FAILED_PRECONDITION: no key vault endpoint
    MOVE_TO_SAME_PLACE = "MOVE_TO_SAME_PLACE"  # FAILED_PRECONDITION: the target is where the resource is
    IDENTITY_REMOVAL_UNCONFIRMED = "IDENTITY_REMOVAL_UNCONFIRMED"  # FAILED_PRECONDITION: CMK on, no confirmation
    ENCRYPTION_KEY_REQUIRED = "ENCRYPTION_KEY_REQUIRED"  # INVALID_ARGUMENT: neither key URI nor vault + key
    VAULT_OTHER_TENANT = "VAULT_OTHER_TENANT"  # FAILED_PRECONDITION: vault not in the resource's tenant
    VAULT_OTHER_REGION = "VAULT_OTHER_REGION"  # FAILED_PRECONDITION: vault not in the resource's region
    VAULT_NOT_RECOVERABLE = "VAULT_NOT_RECOVERABLE"  # FAILED_PRECONDITION: soft-delete or purge protection off
    KEY_NOT_SUPPORTED = "KEY_NOT_SUPPORTED"  # FAILED_PRECONDITION: not an enabled RSA 2048 key with wrap/unwrap
    GRANT_REFUSED = "GRANT_REFUSED"  # PERMISSION_DENIED: the caller may not change the vault's access policies
    # Why a customer key is inaccessible (FAILED_PRECONDITION on reads, and the resource's status):
    CUSTOMER_KEY_ACCESS_REVOKED = "CUSTOMER_KEY_ACCESS_REVOKED"  # the identity's access policy is gone
    CUSTOMER_KEY_DISABLED = "CUSTOMER_KEY_DISABLED"  # the key version is disabled
    CUSTOMER_KEY_DELETED = "CUSTOMER_KEY_DELETED"  # the key is soft-deleted: recover it
    CUSTOMER_KEY_VAULT_DELETED = "CUSTOMER_KEY_VAULT_DELETED"  # the key's vault is soft-deleted: recover it
    CUSTOMER_KEY_PURGED = "CUSTOMER_KEY_PURGED"  # the key or its vault is purged: the data is permanently unrecoverable
    CUSTOMER_KEY_IDENTITY_MISSING = "CUSTOMER_KEY_IDENTITY_MISSING"  # the managed identity is gone or disabled
    CUSTOMER_KEY_TENANT_MISMATCH = "CUSTOMER_KEY_TENANT_MISMATCH"  # resource or subscription moved tenants
    CUSTOMER_KEY_VAULT_UNREACHABLE = "CUSTOMER_KEY_VAULT_UNREACHABLE"  # UNAVAILABLE: the vault did not answer

    # --- limits (RESOURCE_EXHAUSTED) ---
    SIGN_INS_BUSY = "SIGN_INS_BUSY"  # too many secret checks waiting: retry shortly
    SIGN_IN_THROTTLED = "SIGN_IN_THROTTLED"  # this client's secrets kept failing: retry after the pause
    TOO_MANY_CALLS = "TOO_MANY_CALLS"  # the cap on calls in progress is reached (for the tenants, sign-ins or all)
    CALLER_TOO_MANY_CALLS = "CALLER_TOO_MANY_CALLS"  # this caller (or client address) holds its share of the cap
    TENANT_TOO_MANY_CALLS = "TENANT_TOO_MANY_CALLS"  # this tenant's principals hold its share of the cap
    TOO_MANY_STREAMS = "TOO_MANY_STREAMS"  # the service's cap on open streams is reached

    # --- dependencies and everything else ---
    DEPENDENCY_UNAVAILABLE = "DEPENDENCY_UNAVAILABLE"  # UNAVAILABLE: another service is down
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"  # client side: the call did not finish within its deadline
    ENDPOINT_WRONG_SERVICE = "ENDPOINT_WRONG_SERVICE"  # client side: the endpoint is another service
    ENDPOINT_TLS_MISMATCH = "ENDPOINT_TLS_MISMATCH"  # client side: TLS against plain TCP, or the other way
    FILE_NOT_PRIVATE = "FILE_NOT_PRIVATE"  # client side: a profile or credential file not its user's alone
    AUDIT_UNAVAILABLE = "AUDIT_UNAVAILABLE"  # UNAVAILABLE: the audit record could not be written
    DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"  # UNAVAILABLE: the service's PostgreSQL did not answer
    REVOCATIONS_UNKNOWN = "REVOCATIONS_UNKNOWN"  # UNAVAILABLE: the directory's events not heard lately
    INTERNAL = "INTERNAL"  # INTERNAL: a bug; the details are in the server's log only
