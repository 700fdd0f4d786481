"""The gRPC face of the key vault: one module per service (vault_service, key_service,
secret_service, audit_service, with the event stream's), the converters between messages
and domain values, and the audit trail that records every call. Authentication is the
AuthInterceptor's; no rules live here."""

from __future__ import annotations

from cmk_trio.keyvault.api.audit_service import AuditApi, EventApi
from cmk_trio.keyvault.api.convert import Converter
from cmk_trio.keyvault.api.key_service import KeyApi
from cmk_trio.keyvault.api.secret_service import SecretApi
from cmk_trio.keyvault.api.trail import AuditTrail
from cmk_trio.keyvault.api.vault_service import VaultApi

__all__ = ["AuditApi", "AuditTrail", "Converter", "EventApi", "KeyApi", "SecretApi", "VaultApi"]
