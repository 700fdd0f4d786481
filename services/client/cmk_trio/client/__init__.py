"""Typed clients of the three services, for users and for service-to-service calls.

    from cmk_trio.client import CmkClient, ClientCredentials, NotFound, Reason, deadline

The front door is `CmkClient` (asyncio) or `SyncCmkClient` (scripts; its `identity`, `vault`
and `speech` are a SyncIdentityClient, SyncKeyVaultClient and SyncSpeechClient, named here
for annotations); the error classes a call raises and the `Reason` they carry are importable
from here too. Names are imported when first used, so that importing this package costs
nothing until then.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "CmkClient": "cmk_trio.client.front",
    "SyncCmkClient": "cmk_trio.client.front",
    "SyncIdentityClient": "cmk_trio.client.sync_identity",
    "SyncKeyVaultClient": "cmk_trio.client.sync_keyvault",
    "SyncSpeechClient": "cmk_trio.client.sync_speech",
    "ClientCredentials": "cmk_trio.client.identity",
    "IdentityClient": "cmk_trio.client.identity",
    "deadline": "cmk_trio.client.calls",
    "DEFAULT_TIMEOUT": "cmk_trio.client.calls",
    "TokenSource": "cmk_trio.client.calls",
    "Tokens": "cmk_trio.client.calls",
    "fixed_token": "cmk_trio.client.calls",
    "principal_name": "cmk_trio.client.identity",
    "KeyVaultClient": "cmk_trio.client.keyvault",
    "SpeechClient": "cmk_trio.client.speech",
    "ChannelTls": "cmk_trio.client.channel",
    "open_channel": "cmk_trio.client.channel",
    "Reason": "cmk_trio.rpckit.reasons",
    "Aborted": "cmk_trio.rpckit.errors",
    "AlreadyExists": "cmk_trio.rpckit.errors",
    "FailedPrecondition": "cmk_trio.rpckit.errors",
    "FieldViolation": "cmk_trio.rpckit.errors",
    "InvalidArgument": "cmk_trio.rpckit.errors",
    "NotFound": "cmk_trio.rpckit.errors",
    "PermissionDenied": "cmk_trio.rpckit.errors",
    "ResourceExhausted": "cmk_trio.rpckit.errors",
    "ServiceError": "cmk_trio.rpckit.errors",
    "Unauthenticated": "cmk_trio.rpckit.errors",
    "Unavailable": "cmk_trio.rpckit.errors",
}

__all__ = [
    "DEFAULT_TIMEOUT",
    "Aborted",
    "AlreadyExists",
    "ChannelTls",
    "ClientCredentials",
    "CmkClient",
    "FailedPrecondition",
    "FieldViolation",
    "IdentityClient",
    "InvalidArgument",
    "KeyVaultClient",
    "NotFound",
    "PermissionDenied",
    "Reason",
    "ResourceExhausted",
    "ServiceError",
    "SpeechClient",
    "SyncCmkClient",
    "SyncIdentityClient",
    "SyncKeyVaultClient",
    "SyncSpeechClient",
    "TokenSource",
    "Tokens",
    "Unauthenticated",
    "Unavailable",
    "deadline",
    "fixed_token",
    "open_channel",
    "principal_name",
]

if TYPE_CHECKING:
    from cmk_trio.client.calls import DEFAULT_TIMEOUT, Tokens, TokenSource, deadline, fixed_token
    from cmk_trio.client.channel import ChannelTls, open_channel
    from cmk_trio.client.front import CmkClient, SyncCmkClient
    from cmk_trio.client.identity import ClientCredentials, IdentityClient, principal_name
    from cmk_trio.client.keyvault import KeyVaultClient
    from cmk_trio.client.speech import SpeechClient
    from cmk_trio.client.sync_identity import SyncIdentityClient
    from cmk_trio.client.sync_keyvault import SyncKeyVaultClient
    from cmk_trio.client.sync_speech import SyncSpeechClient
    from cmk_trio.rpckit.errors import (
        Aborted,
        AlreadyExists,
        FailedPrecondition,
        FieldViolation,
        InvalidArgument,
        NotFound,
        PermissionDenied,
        ResourceExhausted,
        ServiceError,
        Unauthenticated,
        Unavailable,
    )
    from cmk_trio.rpckit.reasons import Reason


def __getattr__(name: str) -> Any:  # whichever public name is asked for, imported on first use
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'cmk_trio.client' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
