"""What a start of identity (alone, or with the others: the launcher's trio and replicas)
tells the person who started it, as data: the front end (the `cmk` command, `python -m
cmk_trio.identity`) decides how to print it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cmk_trio.identity.server import IdentityServer


@dataclass(frozen=True)
class Announcement:
    """Where the services listen, where their metrics are, how to sign in, and, on the first
    start only, the operator credential: shown this once on standard output (it is also in
    the operator file, mode 0600), never written to the log. With `show_secret` off (a
    container, whose standard output its engine keeps in `logs` for good) the secret is
    only in the file."""

    endpoint: str
    """The identity service, which every sign-in starts from."""
    services: dict[str, str]
    """Each started service's host:port, identity first."""
    login: str
    """The `cmk login` command line that signs in as the operator."""
    created_operator: dict[str, str] | None = None
    tls_dir: Path | None = None
    metrics: dict[str, str] = field(default_factory=dict)
    oidc: str | None = None
    """The base URL of identity's HTTP endpoints (discovery, keys, token), when served."""
    proxy: str | None = None
    """The CONNECT proxy that serves Azure's default names (what HTTPS_PROXY is set to)."""
    vault_door: str | None = None
    """The key vault's Azure data plane (https://{vault}.vault.azure.net reaches it through
    cmk_trio.client.azure's transport), when served."""
    arm: str | None = None
    """Azure Resource Manager's door (https://management.azure.com's API), when served."""

    @classmethod
    def of(
        cls,
        identity: IdentityServer,
        keyvault_endpoint: str | None = None,
        speech_endpoint: str | None = None,
        tls_dir: Path | None = None,
        metrics: dict[str, str] | None = None,
        *,
        show_secret: bool = True,
        vault_door: str | None = None,
        proxy: str | None = None,
        arm: str | None = None,
    ) -> Announcement:
        """The announcement of an identity service, and of the key vault and speech when
        they were started beside it."""
        login = f"cmk login --endpoint {identity.endpoint} --operator-file {identity.config.operator_file}"
        services = {"identity": identity.endpoint}
        if keyvault_endpoint:
            login += f" --keyvault-endpoint {keyvault_endpoint}"
            services["keyvault"] = keyvault_endpoint
        if speech_endpoint:
            login += f" --speech-endpoint {speech_endpoint}"
            services["speech"] = speech_endpoint
        if tls_dir is not None:
            login = login.replace("cmk login", f"cmk --tls-dir {tls_dir} login", 1)
        created = None
        if identity.new_operator_secret is not None:
            created = {
                "tenant_id": identity.operator.tenant_id,
                "client_id": identity.new_operator_secret.client_id,
                "file": str(identity.config.operator_file),
            }
            if show_secret:
                created["client_secret"] = identity.new_operator_secret.value
        return cls(
            identity.endpoint,
            services,
            login,
            created,
            tls_dir,
            metrics or {},
            identity.http_url,
            proxy,
            vault_door,
            arm,
        )

    def to_json(self) -> str:
        """One line of JSON, for scripts and tests that wait for the start."""
        return json.dumps(
            {
                "services": self.services,
                "endpoint": self.endpoint,
                "created_operator": self.created_operator,
                "login": self.login,
                "tls_dir": str(self.tls_dir) if self.tls_dir else None,
                "metrics": self.metrics,
                "oidc": self.oidc,
                "vault_door": self.vault_door,
                "arm": self.arm,
                "proxy": self.proxy,
            }
        )

    def lines(self) -> list[str]:
        """The same for people."""
        lines = [f"{name} listening on {endpoint}" for name, endpoint in self.services.items()]
        lines += [f"{name} metrics at {url}" for name, url in self.metrics.items()]
        if self.oidc:
            lines.append(
                f"identity OpenID Connect discovery at {self.oidc}/<tenant_id>/v2.0/.well-known/openid-configuration"
            )
        if self.vault_door:
            lines.append(
                f"key vault's Azure data plane at {self.vault_door} (vaults as https://<vault>.vault.azure.net)"
            )
        if self.arm:
            lines.append(f"Azure Resource Manager's door at {self.arm} (management clients' base_url)")
        if self.proxy and self.tls_dir:
            ca = self.tls_dir / "ca.crt"
            lines += [
                "Azure's SDKs under Azure's own names (login.microsoftonline.com, *.vault.azure.net,"
                " management.azure.com), by the proxy:",
                f"  export HTTPS_PROXY={self.proxy} NO_PROXY=127.0.0.1,localhost"
                f" REQUESTS_CA_BUNDLE={ca} SSL_CERT_FILE={ca} NODE_EXTRA_CA_CERTS={ca}",
            ]
        if self.created_operator is not None:
            created = self.created_operator
            lines += [
                "platform operator created (shown once; also in the file below):",
                f"  tenant id:     {created['tenant_id']}",
                f"  client id:     {created['client_id']}",
                f"  client secret: {created.get('client_secret', 'in the file only (--hide-operator-secret)')}",
                f"  file:          {created['file']}",
            ]
        lines.append(f"sign in with: {self.login}")
        return lines
