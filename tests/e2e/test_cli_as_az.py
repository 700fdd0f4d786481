"""The CLI as az users type it: `--query` takes JMESPath, `-o tsv` prints values for shell
variables, errors go to standard error whatever the output, and a value the user typed that
cannot be read is one line naming its option, never a traceback."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.e2e.conftest import CMK, Served, cmk_json, invoke


@pytest.fixture
def directory(served: Served) -> dict[str, str]:
    """The operator signed in, with two tenants (one with a subscription)."""
    operator_file = str(served.data_dir / "operator.json")
    cmk_json(served.env, "login", "--endpoint", served.endpoint, "--operator-file", operator_file)
    contoso = cmk_json(served.env, "tenant", "create", "Contoso")
    cmk_json(served.env, "tenant", "create", "Fabrikam")
    sub = cmk_json(served.env, "subscription", "create", "--tenant", contoso["tenant_id"], "Production")
    return {"tenant_id": contoso["tenant_id"], "subscription_id": sub["subscription_id"]}


def out(served: Served, *args: str) -> str:
    done = invoke(served.env, *args)
    assert done.exit_code == 0, done.stdout + done.stderr
    return done.stdout


def test_query_takes_jmespath_over_the_whole_result(served, directory):
    names = out(served, "tenant", "list", "--query", "[?platform == `false`].display_name", "-o", "json")
    assert sorted(json.loads(names)) == ["Contoso", "Fabrikam"]
    assert out(served, "tenant", "list", "--query", "length([?display_name == 'Contoso'])") == "1\n"
    picked = json.loads(out(served, "-o", "json", "tenant", "show", directory["tenant_id"], "--query",
                            "{id: tenant_id, name: display_name}"))  # fmt: skip
    assert picked == {"id": directory["tenant_id"], "name": "Contoso"}


def test_tsv_prints_values_for_shell_variables(served, directory):
    tenant = directory["tenant_id"]
    assert out(served, "tenant", "show", tenant, "--query", "display_name", "-o", "tsv") == "Contoso\n"
    # A list: a line per item; an object (or a multi-select list): its values on one line.
    listed = out(served, "tenant", "list", "--query", "[?platform == `false`].[display_name, tenant_id]", "-o", "tsv")
    assert sorted(line.split("\t")[0] for line in listed.splitlines()) == ["Contoso", "Fabrikam"]
    assert f"Contoso\t{tenant}" in listed.splitlines()
    whole = out(served, "-o", "tsv", "tenant", "show", tenant)
    assert len(whole.splitlines()) == 1 and tenant in whole.strip().split("\t") and "Contoso" in whole.split("\t")
    # Every line of a listing has the same columns, a platform tenant's as a customer's (their
    # fields come set in different orders, and false ones last).
    rows = [line.split("\t") for line in out(served, "tenant", "list", "-o", "tsv").splitlines()]
    assert len(rows) == 3 and len({len(r) for r in rows}) == 1
    assert len({r.index("true" if "true" in r else "false") for r in rows}) == 1, rows
    # A JSON null prints nothing, as az's tsv does.
    assert out(served, "tenant", "show", tenant, "--query", "not_null(no_such_field)", "-o", "tsv") == ""


def test_the_quick_starts_plain_field_queries_keep_working(served, directory):
    """`--query a,b` (the form the README's quick start used before JMESPath) still prints
    those fields' values on one line, each item of a list on its own."""
    tenant = directory["tenant_id"]
    assert out(served, "tenant", "show", tenant, "--query", "tenant_id") == f"{tenant}\n"
    assert out(served, "tenant", "show", tenant, "--query", "display_name,tenant_id") == f"Contoso\t{tenant}\n"
    listed = out(served, "tenant", "list", "--query", "display_name").splitlines()
    assert "Contoso" in listed and "Fabrikam" in listed
    missing = invoke(served.env, "tenant", "show", tenant, "--query", "display_name,nope")
    assert missing.exit_code == 1 and missing.stdout == ""
    assert "no field 'nope' in the result; it has" in missing.stderr


@pytest.mark.parametrize("output", ["table", "json", "tsv"])
def test_errors_go_to_standard_error_whatever_the_output(served, directory, output):
    refused = invoke(served.env, "-o", output, "tenant", "show", "00000000-0000-4000-8000-000000000000")
    assert refused.exit_code == 1 and refused.stdout == "", refused.stdout
    if output == "json":
        assert json.loads(refused.stderr)["error"]["reason"] == "TENANT_NOT_FOUND"
    else:
        assert refused.stderr.startswith("error: NOT_FOUND TENANT_NOT_FOUND")


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["key", "wrap", "https://v.vault.azure.net/keys/k/0123456789abcdef0123456789abcdef", "--value", "not base64!"],
         "--value"),
        (["key", "unwrap", "https://v.vault.azure.net/keys/k", "--value", "%%%"], "--value"),
        (["key", "sign", "https://v.vault.azure.net/keys/k", "--algorithm", "RS256", "--digest", "a b"], "--digest"),
        (["key", "verify", "https://v.vault.azure.net/keys/k", "--algorithm", "RS256", "--digest", "AA==",
          "--signature", "A"], "--signature"),
        (["tenant", "list", "--query", "[?"], "--query"),
        (["key", "create", "v", "k", "--expires", "next tuesday"], "--expires"),
        (["key", "update", "https://v.vault.azure.net/keys/k", "--not-before", "2027-13-01"], "--not-before"),
        (["speech", "create", "s", "--subscription", "x", "--resource-group", "rg", "--location", "westeurope",
          "--created", "yesterday"], "--created"),
        (["speech", "app", "create", "r", "--name", "n", "--config-file", "{tmp}/missing.json"], "--config-file"),
        (["speech", "app", "create", "r", "--name", "n", "--config-file", "{tmp}/binary"], "--config-file"),
        (["key", "import", "v", "k", "--jwk-file", "{tmp}"], "--jwk-file"),
        (["secret", "set", "v", "s", "--file", "{tmp}/binary"], "--file"),
        (["audit", "verify", "--checkpoint", "{tmp}/binary"], "--checkpoint"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("output", ["table", "json"])
def test_a_value_that_cannot_be_read_is_one_line_naming_its_option(tmp_path, args, option, output):
    """Refused by the command line itself, before anything is dialled (no service runs here)."""
    (tmp_path / "binary").write_bytes(b"\xff\xfe\x00 not text")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if args[0] == "secret":
        args = ["vault", *args]
    done = subprocess.run([*CMK, "-o", output, *args], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "XDG_CONFIG_HOME": str(tmp_path)})  # fmt: skip
    assert done.returncode == 2 and done.stdout == "", done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    if output == "json":
        assert json.loads(done.stderr)["error"]["reason"] == "CLI_USAGE" and option in done.stderr
    else:
        (error,) = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
        assert error.startswith("Error: Invalid value for ") and option in error.split(":")[1], done.stderr
