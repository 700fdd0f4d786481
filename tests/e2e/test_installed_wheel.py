"""The wheel, installed (not editable) into a fresh virtual environment beside a project that
has its own `services` and `cmk` packages, as a consumer installs us: the CLI, the client,
the pytest plugin and the type information all work, and nothing of ours collides."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CONSUMER_TEST = """
import asyncio
from pathlib import Path

import cmk
import services
from services.orders import place_order

from cmk_trio.client.channel import open_channel
from cmk_trio.client.identity import IdentityClient
from cmk_trio.rpckit.errors import PermissionDenied


def test_our_packages_are_ours_and_the_trio_runs(cmk_trio):
    assert cmk.MONITORING and services.__file__ == str(Path.cwd() / "services" / "__init__.py")
    assert place_order() == "ordered"

    async def scenario():
        channel = open_channel(cmk_trio.endpoints["identity"])
        try:
            operator = IdentityClient(channel, cmk_trio.operator_credentials)
            tenant = await operator.create_tenant("Consumer tenant")
            return tenant.tenant_id, [t.tenant_id for t in (await operator.list_tenants()).tenants]
        finally:
            await channel.close()

    tenant_id, tenants = asyncio.run(scenario())
    assert tenant_id in tenants
    assert issubclass(PermissionDenied, Exception)
"""

# mypy --strict on a consumer module: with py.typed shipped, the client's types are seen
# (the reveal_type note names the real return type, not Any).
CONSUMER_TYPED = """
from cmk_trio.client.identity import ClientCredentials, IdentityClient
from cmk_trio.client.channel import open_channel


async def tenant_name(endpoint: str, creds: ClientCredentials) -> str:
    channel = open_channel(endpoint)
    client = IdentityClient(channel, creds)
    tenant = await client.create_tenant("typed")
    reveal_type(tenant)
    return tenant.display_name
"""


def _run(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CMK_", "PYTEST", "VIRTUAL_ENV", "PYTHONPATH"))}
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env, timeout=timeout, check=False)


def _build_wheel(tmp: Path) -> Path:
    """Build from a copy of the sources (so that the build leaves nothing in the repository),
    with the setuptools of the running environment."""
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in ("protos", "services"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    dist = tmp / "dist"
    built = _run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(dist), "."],
        source,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = dist.glob("cmk_trio-*.whl")
    return wheel


@pytest.mark.timeout(600)
def test_a_consumer_with_its_own_services_and_cmk_packages_uses_the_installed_wheel(tmp_path: Path):
    wheel = _build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"cmk_trio"}, tops
    assert "cmk_trio/client/py.typed" in names and "cmk_trio/proto/keyvault/v1/keyvault_service.proto" in names
    # Google's protos of the rich error model, for other languages to read a refusal's reason.
    shipped = {"cmk_trio/proto/third_party/google/rpc/status.proto",
               "cmk_trio/proto/third_party/google/rpc/error_details.proto"}  # fmt: skip
    assert shipped <= set(names), sorted(n for n in names if n.endswith(".proto"))

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    installed = _run([str(python), "-m", "pip", "install", "--quiet", str(wheel), "pytest", "mypy"], tmp_path)
    assert installed.returncode == 0, installed.stdout + installed.stderr

    project = tmp_path / "consumer"
    (project / "services").mkdir(parents=True)
    (project / "services" / "__init__.py").write_text("")
    (project / "services" / "orders.py").write_text('def place_order() -> str:\n    return "ordered"\n')
    (project / "cmk").mkdir()
    (project / "cmk" / "__init__.py").write_text("MONITORING = True  # another product's package of this name\n")
    (project / "tests").mkdir()
    (project / "tests" / "test_consumer.py").write_text(CONSUMER_TEST)
    (project / "typed.py").write_text(CONSUMER_TYPED)

    cli = _run([str(env_dir / "bin" / "cmk"), "--help"], project)
    assert cli.returncode == 0 and "serve" in cli.stdout, cli.stdout + cli.stderr

    tested = _run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], project)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "1 passed" in tested.stdout

    typed = _run([str(python), "-m", "mypy", "--strict", "--no-incremental", "typed.py"], project)
    assert typed.returncode == 0, typed.stdout + typed.stderr
    assert 'Revealed type is "cmk_trio.proto.identity.v1.resources_pb2.Tenant"' in typed.stdout, typed.stdout
