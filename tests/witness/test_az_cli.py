"""The az CLI witness: the README's az walk, run verbatim with azure-cli unmodified against a
`cmk up` of the test's own, both ways of naming the hosts: the cloud registered by ARM's door
(`az cloud register`, the README's az-cloud block), and az's own AzureCloud untouched, through
the proxy. Each step's output is checked: the group and the vault with purge protection made,
the key created in that vault, the account's system-assigned identity, the encryption set to
the key, the data refused with its cause once `az keyvault delete-policy` removed the
identity's access (and the account showing the key inaccessible), read again once restored,
and the account back on Microsoft-managed keys.

Marked `azcli` (python3 dev.py az): azure-cli is installed once into a cache of its own
(tests/witness/az_cli.py), which takes minutes the first time; the walk takes about half a
minute each way."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import CMK
from tests.witness.az_cli import ensure_az

pytestmark = [pytest.mark.azcli, pytest.mark.timeout(900)]

README = Path(__file__).resolve().parents[2] / "README.md"
BASH = shutil.which("bash") or "/bin/bash"  # the shell the README's blocks are written for


def block(marker: str) -> str:
    found = re.search(rf"<!-- {marker} -->\n```sh\n(.*?)\n```", README.read_text(), re.S)
    assert found, f"the README has no {marker} block"
    return found.group(1)


@pytest.fixture(scope="module")
def az() -> Path:
    return ensure_az()


@pytest.mark.parametrize("way", ["explicit", "defaults"])
def test_the_readme_az_walk_runs_as_written(tmp_path: Path, az: Path, way: str) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CMK_", "PYTEST", "AZURE_", "HTTPS_PROXY", "HTTP_PROXY", "REQUESTS_CA"))}  # fmt: skip
    env.update({"CMK_SECRET_HASH_COST": "10", "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path),
                "PATH": f"{env.get('PATH', '')}:{az}", "AZURE_CORE_COLLECT_TELEMETRY": "false"})  # fmt: skip
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))  # the environment `python3 dev.py up` made
    trio = subprocess.Popen(
        [*CMK, "--output", "json", "up", "--data-dir", ".cmk", "--port-base", "0"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert trio.stdout is not None
        banner = json.loads(trio.stdout.readline())
        services = banner["services"]
        env.update({"CMK_IDENTITY_ENDPOINT": services["identity"], "CMK_KEYVAULT_ENDPOINT": services["keyvault"],
                    "CMK_SPEECH_ENDPOINT": services["speech"], "CMK_ARM_HTTPS": banner["arm"],
                    "CMK_PROXY": banner["proxy"]})  # fmt: skip
        script = "\n".join((block("az-setup"), block("az-cloud") if way == "explicit" else "", block("az-walk")))
        done = subprocess.run(
            [BASH, "-euo", "pipefail", "-c", script], cwd=tmp_path, capture_output=True, text=True, env=env,
            timeout=600,
        )  # fmt: skip
    finally:
        trio.send_signal(signal.SIGTERM)
        trio.wait(timeout=30)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    out = done.stdout
    lines = out.splitlines()
    # What each step printed, in order (the cmk steps print their tables between them).
    assert "Succeeded" in lines  # the group
    assert "true" in lines  # the vault's purge protection
    kid = next(line for line in lines if line.startswith("https://contoso-cmk.vault.azure.net/keys/cmk/"))
    assert re.fullmatch(r"https://contoso-cmk\.vault\.azure\.net/keys/cmk/[0-9a-f]{32}", kid)
    assert lines.count("Microsoft.KeyVault") == 1 and lines.count("Microsoft.CognitiveServices") == 1
    assert lines.index("Microsoft.KeyVault") < lines.index("refused, as the seed says")
    # The revocation: refused with its cause, and the account shows the key inaccessible.
    assert "CUSTOMER_KEY_ACCESS_REVOKED" in done.stderr
    assert lines[lines.index("refused, as the seed says") + 1] == "KeyInaccessible"
    # Restored: the same data, then back to Microsoft-managed keys.
    assert lines.index('{"room": "kitchen"}') < lines.index("Microsoft.CognitiveServices")
    assert "Traceback" not in done.stderr
    config = (tmp_path / ".azure" / "config").read_text()
    if way == "explicit":
        clouds = (tmp_path / ".azure" / "clouds.config").read_text()
        assert "[CmkTrio]" in clouds and banner["arm"] in clouds, clouds
        assert "instance_discovery = false" in config
    else:
        assert not (tmp_path / ".azure" / "clouds.config").exists() or "CmkTrio" not in (
            tmp_path / ".azure" / "clouds.config"
        ).read_text()  # fmt: skip
