"""The services' configuration from the environment, as containers pass it: the platform
credentials of the key vault and of speech come the same way, from a file or from three
variables, and a service without them refuses with the variable to set."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from cmk_trio.client.identity import ClientCredentials
from cmk_trio.identity.config import IdentityConfig
from cmk_trio.keyvault.config import KeyVaultConfig
from cmk_trio.rpckit.config import ConfigError
from cmk_trio.rpckit.settings import options
from cmk_trio.speech.config import SpeechConfig

SERVICES = [(KeyVaultConfig, "CMK_KEYVAULT"), (SpeechConfig, "CMK_SPEECH")]


@pytest.mark.parametrize(("config", "prefix"), SERVICES)
def test_platform_credentials_from_a_file(config, prefix, tmp_path: Path):
    path = tmp_path / "credentials.json"
    path.write_text(json.dumps({"tenant_id": "t", "client_id": "c", "client_secret": "s"}))
    path.chmod(0o600)  # a file of secrets is private, or refused (tests/security/test_planted_files.py)
    env = {"CMK_IDENTITY_ENDPOINT": "127.0.0.1:1", f"{prefix}_CREDENTIALS_FILE": str(path)}
    assert config.load(env).credentials == ClientCredentials("t", "c", "s")


@pytest.mark.parametrize(("config", "prefix"), SERVICES)
def test_platform_credentials_from_three_variables(config, prefix):
    env = {"CMK_IDENTITY_ENDPOINT": "127.0.0.1:1", f"{prefix}_TENANT_ID": "t", f"{prefix}_CLIENT_ID": "c",
           f"{prefix}_CLIENT_SECRET": "hunter2-secret"}  # fmt: skip
    loaded = config.load(env)
    assert loaded.credentials == ClientCredentials("t", "c", "hunter2-secret")
    assert "hunter2-secret" not in repr(loaded)  # the secret stays out of logs and reprs


@pytest.mark.parametrize(("config", "prefix"), SERVICES)
def test_no_platform_credentials_is_refused_naming_the_variable(config, prefix):
    with pytest.raises(ConfigError) as refused:
        config.load({"CMK_IDENTITY_ENDPOINT": "127.0.0.1:1"})
    assert f"{prefix}_CREDENTIALS_FILE" in str(refused.value)


# --- one shape and one parser for every service (rpckit.settings) ------------------------------

ALL = [IdentityConfig, KeyVaultConfig, SpeechConfig]
LINKED = {"CMK_IDENTITY_ENDPOINT": "127.0.0.1:1", "CMK_KEYVAULT_TENANT_ID": "t", "CMK_KEYVAULT_CLIENT_ID": "c",
          "CMK_KEYVAULT_CLIENT_SECRET": "s", "CMK_SPEECH_TENANT_ID": "t", "CMK_SPEECH_CLIENT_ID": "c",
          "CMK_SPEECH_CLIENT_SECRET": "s"}  # fmt: skip


@pytest.mark.parametrize("config", ALL)
def test_every_setting_has_one_variable_and_one_flag_shared_with_every_service(config):
    found = options(config)
    assert len({o.flag for o in found}) == len(found) and len({o.env for o in found}) == len(found)
    shared = {(o.flag, o.env.replace(config.SERVICE, "<S>")) for o in options(config)}
    # What every service has is named alike everywhere: its variables differ by the prefix only.
    assert {
        ("--port", "CMK_<S>_PORT"), ("--data-dir", "CMK_DATA_DIR"), ("--tls-client-ca", "CMK_TLS_CLIENT_CA"),
        ("--metrics-port", "CMK_<S>_METRICS_PORT"), ("--clock-skew-seconds", "CMK_CLOCK_SKEW_SECONDS"),
        ("--database-url", "CMK_DATABASE_URL"), ("--dev-time-control", "CMK_DEV_TIME_CONTROL"),
    } <= shared  # fmt: skip
    assert all(o.help for o in found), [o.flag for o in found if not o.help]


@pytest.mark.parametrize("config", ALL)
def test_given_values_win_over_the_environment_and_are_read_by_type(config, tmp_path):
    prefix = config.SERVICE
    (tmp_path / "c.pem").write_text("a certificate")
    (tmp_path / "k.pem").write_text("its key")
    loaded = config.load(
        {**LINKED, f"CMK_{prefix}_PORT": "7", "CMK_CLOCK_SKEW_SECONDS": "5", "CMK_DEV_TIME_CONTROL": "false"},
        {f"CMK_{prefix}_PORT": "0", "CMK_DATA_DIR": str(tmp_path), "CMK_DEV_TIME_CONTROL": "1",
         "CMK_TLS_CERT": str(tmp_path / "c.pem"), "CMK_TLS_KEY": str(tmp_path / "k.pem")},
    )  # fmt: skip
    assert (loaded.port, loaded.data_dir, loaded.dev_time_control) == (0, tmp_path, True)
    assert loaded.clock_skew == timedelta(seconds=5) and loaded.tls.cert_file == tmp_path / "c.pem"
    assert loaded.metrics_port is None  # not said: the default


@pytest.mark.parametrize("config", ALL)
def test_a_malformed_value_names_its_variable_and_flag(config):
    with pytest.raises(ConfigError) as refused:
        config.load(LINKED, {"CMK_CLOCK_SKEW_SECONDS": "soon"})
    assert str(refused.value) == "CMK_CLOCK_SKEW_SECONDS (--clock-skew-seconds) must be a number of seconds, not 'soon'"
    with pytest.raises(ConfigError) as refused:
        config.load({**LINKED, "CMK_DEV_TIME_CONTROL": "perhaps"})
    assert "CMK_DEV_TIME_CONTROL (--dev-time-control) must be true or false" in str(refused.value)


@pytest.mark.parametrize("config", ALL)
def test_a_given_name_that_is_no_setting_of_the_service_is_refused(config):
    with pytest.raises(ConfigError) as refused:
        config.load(LINKED, {f"CMK_{config.SERVICE}_PROT": "1"})
    assert f"CMK_{config.SERVICE}_PROT" in str(refused.value)


def test_a_required_setting_missing_is_named_with_its_flag():
    with pytest.raises(ConfigError) as refused:
        KeyVaultConfig.load({"CMK_KEYVAULT_CLIENT_ID": "c", "CMK_KEYVAULT_CLIENT_SECRET": "s"})
    assert (
        str(refused.value)
        == "the keyvault service needs its identity endpoint: set CMK_IDENTITY_ENDPOINT or --identity-endpoint"
    )


def test_a_start_without_flags_names_only_the_variables():
    """python -m cmk_trio.<service> takes no flags, so its messages do not offer one."""
    env = {"CMK_KEYVAULT_CLIENT_ID": "c", "CMK_KEYVAULT_CLIENT_SECRET": "s"}
    with pytest.raises(ConfigError) as missing:
        KeyVaultConfig.load(env, with_flags=False)
    assert str(missing.value) == "the keyvault service needs its identity endpoint: set CMK_IDENTITY_ENDPOINT"
    with pytest.raises(ConfigError) as malformed:
        KeyVaultConfig.load(env | {"CMK_IDENTITY_ENDPOINT": "x:1", "CMK_KEYVAULT_PORT": "fifty"}, with_flags=False)
    assert str(malformed.value) == "CMK_KEYVAULT_PORT must be an integer, not 'fifty'"
    with pytest.raises(ConfigError) as flagged:
        KeyVaultConfig.load(env | {"CMK_IDENTITY_ENDPOINT": "x:1", "CMK_KEYVAULT_PORT": "fifty"})
    assert str(flagged.value) == "CMK_KEYVAULT_PORT (--port) must be an integer, not 'fifty'"


def test_a_secret_setting_has_no_flag_and_is_never_quoted_back():
    assert "--operator-client-secret" not in {o.flag for o in options(IdentityConfig)}
    loaded = IdentityConfig.load({"CMK_OPERATOR_CLIENT_ID": "op", "CMK_OPERATOR_CLIENT_SECRET": "a-secret-of-16-chars"})
    assert "a-secret-of-16-chars" not in repr(loaded)


# Found by a review of the parser: each was a traceback (or a silent default) instead of one line.


@pytest.mark.parametrize("seconds", ["inf", "nan", "1e300"])
def test_a_duration_that_is_no_finite_number_is_refused(seconds):
    with pytest.raises(ConfigError) as refused:
        KeyVaultConfig.load(LINKED, {"CMK_PURGE_INTERVAL_SECONDS": seconds})
    assert "CMK_PURGE_INTERVAL_SECONDS (--purge-interval-seconds) must be a number of seconds" in str(refused.value)


def test_a_missing_certificate_or_credentials_file_is_named_before_anything_starts(tmp_path):
    with pytest.raises(ConfigError) as refused:
        KeyVaultConfig.load(LINKED, {"CMK_TLS_CERT": str(tmp_path / "no.pem"), "CMK_TLS_KEY": str(tmp_path / "k")})
    assert str(refused.value) == f"CMK_TLS_CERT (--tls-cert): no such file: {tmp_path / 'no.pem'}"
    with pytest.raises(ConfigError) as refused:
        SpeechConfig.load({"CMK_IDENTITY_ENDPOINT": "x:1", "CMK_SPEECH_CREDENTIALS_FILE": str(tmp_path / "c.json")})
    assert (
        str(refused.value) == f"CMK_SPEECH_CREDENTIALS_FILE (--credentials-file): no such file: {tmp_path / 'c.json'}"
    )


def test_an_empty_text_setting_is_a_value_not_an_absence():
    with pytest.raises(ConfigError, match="set both the operator client id and secret, or neither"):
        IdentityConfig.load({"CMK_OPERATOR_CLIENT_ID": ""})


@pytest.mark.parametrize("service", ["keyvault", "speech"])
def test_every_service_a_server_serves_has_an_audience(service):
    """A server serves every service of its proto files (rpckit.bootstrap.served_by); each
    must have the token audience it demands, or its every call would fail at authentication."""
    import importlib

    from cmk_trio.proto.common.v1 import dev_service_pb2
    from cmk_trio.rpckit.bootstrap import served_by

    server = importlib.import_module(f"cmk_trio.{service}.server")
    served = served_by([server.pb.DESCRIPTOR, dev_service_pb2.DESCRIPTOR])
    assert len(served) >= 3
    assert sorted(served) == sorted(server.AUDIENCES)
