"""The pytest plugin, used from a test file outside the package, as another project would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

OTHER_PROJECTS_TEST = """
import asyncio

from cmk_trio.client.channel import open_channel
from cmk_trio.client.identity import IdentityClient


def test_my_service_gets_a_token_from_the_trio(cmk_trio):
    async def scenario():
        channel = open_channel(cmk_trio.endpoints["identity"])
        try:
            operator = IdentityClient(channel, cmk_trio.operator_credentials)
            tenant = await operator.create_tenant("My project's tenant")
            return tenant.tenant_id, (await operator.list_tenants()).tenants
        finally:
            await channel.close()

    tenant_id, tenants = asyncio.run(scenario())
    assert tenant_id in {t.tenant_id for t in tenants}
    assert set(cmk_trio.endpoints) == {"identity", "keyvault", "speech"}
"""


def test_another_project_uses_the_trio_fixture(tmp_path: Path):
    (tmp_path / "test_other_project.py").write_text(OTHER_PROJECTS_TEST)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CMK_", "PYTEST"))}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_other_project.py"],
        cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
