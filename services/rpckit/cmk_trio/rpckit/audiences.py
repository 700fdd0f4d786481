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
