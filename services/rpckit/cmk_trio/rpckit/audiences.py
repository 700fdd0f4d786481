"""The token audiences of the trio, as the real cloud names them: a token for one is
refused by the others."""

DIRECTORY = "https://graph.microsoft.com"
"""The identity service's own API (the directory)."""
MANAGEMENT = "https://management.azure.com"
"""Control-plane calls of the key vault and speech services."""
VAULT = "https://vault.azure.net"
"""Key operations of the key vault (wrap, unwrap, ...)."""
SPEECH = "https://cognitiveservices.azure.com"
"""Data calls of the speech service (applications, LUIS keys)."""

ALL = frozenset({DIRECTORY, MANAGEMENT, VAULT, SPEECH})

ALIASES = {"https://management.core.windows.net": MANAGEMENT}
"""Other names clients use for an audience: Azure's classic name for the management API, which
the az CLI asks tokens for (its clouds' `active_directory_resource_id`), is the management
audience, as Azure Resource Manager accepts tokens for either."""


def canonical(audience: str) -> str:
    """The audience a token is issued for when a client asks for `audience` (without its
    trailing slash; an alias as the audience it names)."""
    bare = audience.rstrip("/")
    return ALIASES.get(bare, bare)
