"""A development certificate authority: one CA and a certificate per service (usable as
server and as client, for mutual TLS between the services) and one for the CLI. Made with
`cryptography`; for development and tests, not production."""

from __future__ import annotations

import ipaddress
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cmk_trio.rpckit.datadir import make_private_dir
from cmk_trio.rpckit.keyfiles import read_private_file, require_private_dir, write_private_file

SERVICES = ("identity", "keyvault", "speech")
AZURE_NAMES = {
    "identity": ("login.microsoftonline.com", "graph.microsoft.com"),
    "keyvault": ("*.vault.azure.net",),
    "arm": ("management.azure.com",),
}
"""The names Microsoft's SDKs dial by default, which each service's HTTPS door answers to
(through the trio's proxy, or an explicit endpoint that keeps the name)."""
VALIDITY = timedelta(days=825)


@dataclass(frozen=True)
class Identity:
    """The files of one certificate: the certificate and its private key."""

    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class DevPki:
    """Where the CA and the certificates are."""

    directory: Path

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.crt"

    def identity(self, name: str) -> Identity:
        return Identity(self.directory / f"{name}.crt", self.directory / f"{name}.key")


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def ensure_dev_pki(
    directory: Path,
    *,
    hosts: tuple[str, ...] = ("localhost",),
    names: tuple[str, ...] = (*SERVICES, "arm", "cli"),
    ca_key_dir: Path | None = None,
) -> DevPki:
    """Make the CA and every certificate that is missing; keep those that exist (a second
    `cmk up` reuses them). Private keys are written with mode 0600. The CA's key goes to
    `ca_key_dir` when given (in containers: a volume only the one-shot certs step mounts, so
    that no service can mint certificates), else beside the certificates."""
    pki = DevPki(directory)
    make_private_dir(directory)
    if ca_key_dir is not None:
        make_private_dir(ca_key_dir)
        beside, kept = directory / "ca.key", ca_key_dir / "ca.key"
        if beside.exists():
            # A PKI made before the key had a place of its own: move the key there (a move
            # interrupted after the copy leaves the same key twice; the copy beside goes).
            if not kept.exists():
                write_private_file(kept, read_private_file(beside))
            if read_private_file(kept) != read_private_file(beside):
                raise ValueError(f"two different CA keys: {beside} and {kept}; keep the one that signed {pki.ca_file}")
            beside.unlink()
    ca_key_file = (ca_key_dir or directory) / "ca.key"
    if pki.ca_file.exists() != ca_key_file.exists():
        have, missing = (pki.ca_file, ca_key_file) if pki.ca_file.exists() else (ca_key_file, pki.ca_file)
        raise ValueError(f"{have} is there but {missing} is not: the CA is half there; remove both to make a "
                         "new one (every certificate it signed must then be made again)")  # fmt: skip
    if pki.ca_file.exists():
        loaded = serialization.load_pem_private_key(read_private_file(ca_key_file), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{ca_key_file} is not the development CA's key")
        ca_key = loaded
        ca_cert = x509.load_pem_x509_certificate(pki.ca_file.read_bytes())
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cmk-trio development CA")])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        write_private_file(ca_key_file, _key_pem(ca_key))
        pki.ca_file.write_text(_cert_pem(ca_cert))
    for name in names:
        files = pki.identity(name)
        wanted = [*hosts, name, *AZURE_NAMES.get(name, ())]
        current = files.cert_file.exists() and files.key_file.exists()
        if current and (name == "cli" or _names_in(files.cert_file) >= set(wanted)):
            continue  # (one made before it had to answer to a name is made again)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH] if name == "cli" else [
            ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH,
        ]  # fmt: skip
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        )
        if name != "cli":
            alt: list[x509.GeneralName] = [x509.DNSName(h) for h in wanted]
            alt.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
            builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        write_private_file(files.key_file, _key_pem(key), replace=True)
        files.cert_file.write_text(_cert_pem(cert))
    return pki


def _names_in(cert_file: Path) -> set[str]:
    """The DNS names a certificate answers to."""
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    try:
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return set(alt.get_values_for_type(x509.DNSName))


def issue_copy(pki: DevPki, name: str, target: Path) -> None:
    """Copy `name`'s certificate and private key (0600), with the CA's certificate, into
    `target`: a directory that only `name` mounts (a container's volume)."""
    files = pki.identity(name)
    make_private_dir(target)
    require_private_dir(target)  # before any file goes there, the certificates too
    for source in (pki.ca_file, files.cert_file, files.key_file):
        destination = target / source.name
        private = source == files.key_file
        content = read_private_file(source) if private else source.read_bytes()
        if destination.exists() and destination.read_bytes() == content:
            continue
        if private:  # whole or not at all, never through a link: rpckit.keyfiles
            write_private_file(destination, content, replace=True)
            continue
        # Written beside, then moved over: never a moment without the file, nor a half one.
        fd, temporary = tempfile.mkstemp(dir=target, prefix=f".{source.name}.")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(content)
            os.chmod(temporary, 0o644)  # a certificate: public
            os.replace(temporary, destination)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
