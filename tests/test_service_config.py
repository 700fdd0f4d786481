"""The services' configuration from the environment, as containers pass it: the platform
credentials of the key vault and of speech come the same way, from a file or from three
variables, and a service without them refuses with the variable to set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cmk_trio.client.identity import ClientCredentials
from cmk_trio.keyvault.config import KeyVaultConfig
from cmk_trio.rpckit.config import ConfigError
from cmk_trio.speech.config import SpeechConfig

SERVICES = [(KeyVaultConfig, "CMK_KEYVAULT"), (SpeechConfig, "CMK_SPEECH")]


@pytest.mark.parametrize(("config", "prefix"), SERVICES)
def test_platform_credentials_from_a_file(config, prefix, tmp_path: Path):
    path = tmp_path / "credentials.json"
    path.write_text(json.dumps({"tenant_id": "t", "client_id": "c", "client_secret": "s"}))
    path.chmod(0o600)  # a file of secrets is private, or refused (tests/security/test_planted_files.py)
    env = {"CMK_IDENTITY_ENDPOINT": "127.0.0.1:1", f"{prefix}_CREDENTIALS_FILE": str(path)}
    assert config.from_env(env).credentials == ClientCredentials("t", "c", "s")


@pytest.mark.parametrize(("config", "prefix"), SERVICES)
def test_platform_credentials_from_three_variables(config, prefix):
    env = {"CMK_IDENTITY_ENDPOINT": "127.0.0.1:1", f"{prefix}_TENANT_ID": "t", f"{prefix}_CLIENT_ID": "c",
           f"{prefix}_CLIENT_SECRET": "hunter2-secret"}  # fmt: skip
    loaded = config.from_env(env)
    assert loaded.credentials == ClientCredentials("t", "c", "hunter2-secret")
    assert "hunter2-secret" not in repr(loaded)  # the secret stays out of logs and reprs


@pytest.mark.parametrize(("config", "prefix"), SERVICES)
def test_no_platform_credentials_is_refused_naming_the_variable(config, prefix):
    with pytest.raises(ConfigError) as refused:
        config.from_env({"CMK_IDENTITY_ENDPOINT": "127.0.0.1:1"})
    assert f"{prefix}_CREDENTIALS_FILE" in str(refused.value)
