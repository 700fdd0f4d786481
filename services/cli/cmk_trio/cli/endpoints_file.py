"""Where the trio `cmk up` started in a directory listens, for the commands typed beside it.

`cmk up` writes DATA_DIR/endpoints.json once its services listen: their host:port and the
development PKI's directory, nothing secret. `cmk login` given no endpoint (no --endpoint,
no CMK_IDENTITY_ENDPOINT) reads ./.cmk/endpoints.json (CMK_DATA_DIR's, as `cmk up` does), so
the quick start works whatever --port-base the trio was started with; without the file, the
default ports. The file tells the CLI where to send a secret, so it is written and read as a
profile is: mode 0600, in a directory only its user may write (rpckit.keyfiles), and a planted
one is refused, never followed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import click

from cmk_trio.rpckit.keyfiles import read_private_text, write_private_file

NAME = "endpoints.json"
SERVICES = ("identity", "keyvault", "speech")


@dataclass(frozen=True)
class TrioEndpoints:
    """Where a started trio listens, and its PKI directory ("" without mutual TLS)."""

    services: dict[str, str]
    tls_dir: str = ""

    def write(self, data_dir: Path) -> None:
        write_private_file(data_dir / NAME, json.dumps({"services": self.services, "tls_dir": self.tls_dir}),
                           replace=True)  # fmt: skip

    @classmethod
    def read(cls, data_dir: Path) -> TrioEndpoints | None:
        """What `cmk up` wrote in `data_dir`, None if it wrote nothing there."""
        path = data_dir / NAME
        try:
            text = read_private_text(path)
        except FileNotFoundError:
            return None
        try:
            data = json.loads(text)
            services = {name: data["services"][name] for name in SERVICES}
            tls_dir = data.get("tls_dir", "")
            if not all(isinstance(v, str) and v for v in services.values()) or not isinstance(tls_dir, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise click.ClickException(
                f"{path} is not the endpoints file `cmk up` writes; remove it, or give cmk login --endpoint"
            ) from None
        from cmk_trio.rpckit.server import is_loopback  # (it imports gRPC, which `cmk --help` does without)

        # What `cmk up` writes names this machine's loopback and its own PKI directory, and
        # nothing else: a file of the user's own that says otherwise (unpacked from an archive,
        # say) would send the sign-in's secret elsewhere and trust another CA.
        far = [e for e in services.values() for part in e.split(",") if not is_loopback(part.rpartition(":")[0])]
        inside = not tls_dir or Path(tls_dir).resolve().is_relative_to(data_dir.resolve())
        if far or not inside:
            raise click.ClickException(
                f"{path} names {', '.join(far) or tls_dir}, which `cmk up` never does (it listens on loopback, its "
                "PKI in its data directory); remove the file, or give cmk login --endpoint"
            )
        return cls(services, tls_dir)

    @classmethod
    def beside(cls, environ: Mapping[str, str] = os.environ) -> TrioEndpoints | None:
        """What the `cmk up` of this directory (its default data directory) wrote, if any."""
        return cls.read(Path(environ.get("CMK_DATA_DIR") or ".cmk"))
