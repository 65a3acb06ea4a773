"""The sandbox's local certificate authority and its server certificate.

On first start the sandbox creates, in its data directory (mode 0700):

```
ca.pem          the CA certificate clients trust (published as `Sandbox.ca_cert`)
ca-key.pem      the CA's private key (0600), kept so the server certificate can be renewed
server.pem      the server certificate for localhost / 127.0.0.1 / ::1, signed by the CA
server-key.pem  its private key (0600)
```

Later starts reuse them, so a notebook that trusts `ca.pem` keeps working across restarts.
The server certificate is renewed (by the same CA) when it nears expiry or lacks a host
name the server is asked to serve.  Nothing here is ever checked in.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CertificatePaths", "ensure_certificates", "ensure_private_dir", "write_private"]

_CA_NAME = "d365nb sandbox local CA"
_CA_DAYS = 3650
# Browsers and Apple platforms refuse server certificates valid for more than 398 days.
_SERVER_DAYS = 397
_RENEW_BEFORE = dt.timedelta(days=30)
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class CertificatePaths:
    """Where the CA certificate and the server's certificate and key live."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


def ensure_private_dir(path: Path) -> Path:
    """Create `path` and every missing parent readable by their owner only, whatever the
    umask (mkdir's mode is filtered by it); tighten `path` if it exists."""
    missing: list[Path] = []
    folder = path
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)
        if os.name == "posix":
            os.chmod(folder, 0o700)
    if os.name == "posix":
        os.chmod(path, 0o700)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically, readable by its owner only (0600)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        if os.name == "posix":
            os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def ensure_certificates(data_dir: Path, *, hosts: tuple[str, ...] = ()) -> CertificatePaths:
    """The CA and server certificate in `data_dir`, created or renewed as needed.

    **Parameters:**

    * **data_dir** - the sandbox data directory; created with mode 0700.
    * **hosts** - extra host names or IP addresses the server certificate must cover
      (loopback names are always covered).
    """
    ensure_private_dir(data_dir)
    paths = CertificatePaths(
        ca_cert=data_dir / "ca.pem",
        server_cert=data_dir / "server.pem",
        server_key=data_dir / "server-key.pem",
    )
    ca_key_path = data_dir / "ca-key.pem"
    now = dt.datetime.now(dt.timezone.utc)

    ca_pair = _load_pair(paths.ca_cert, ca_key_path)
    if ca_pair is None or ca_pair[0].not_valid_after_utc - _RENEW_BEFORE < now:
        ca_pair = _make_ca(now)
        write_private(ca_key_path, _key_pem(ca_pair[1]))
        paths.ca_cert.write_bytes(ca_pair[0].public_bytes(serialization.Encoding.PEM))
        paths.server_cert.unlink(missing_ok=True)
    ca_cert, ca_key = ca_pair

    names = tuple(dict.fromkeys((*_LOOPBACK_NAMES, *(h for h in hosts if h))))
    server_pair = _load_pair(paths.server_cert, paths.server_key)
    if server_pair is None or not _server_cert_fits(server_pair[0], ca_cert, names, now):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _make_server_cert(key, ca_cert, ca_key, names, now)
        write_private(paths.server_key, _key_pem(key))
        paths.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return paths


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_pair(
    cert_path: Path, key_path: Path
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return None
    if cert.public_key() != key.public_key():
        return None
    return cert, key


def _server_cert_fits(
    cert: x509.Certificate,
    ca_cert: x509.Certificate,
    names: tuple[str, ...],
    now: dt.datetime,
) -> bool:
    if cert.issuer != ca_cert.subject or cert.not_valid_after_utc - _RENEW_BEFORE < now:
        return False
    try:
        cert.verify_directly_issued_by(ca_cert)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, x509.ExtensionNotFound, InvalidSignature):
        return False
    covered = {str(v) for v in san.get_values_for_type(x509.DNSName)} | {
        str(v) for v in san.get_values_for_type(x509.IPAddress)
    }
    return all(_san_text(name) in covered for name in names)


def _san_text(name: str) -> str:
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name.lower()


def _make_ca(now: dt.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "d365nb"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{_CA_NAME} ({os.urandom(4).hex()})"),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=_CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _make_server_cert(
    key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    names: tuple[str, ...],
    now: dt.datetime,
) -> x509.Certificate:
    alt_names: list[x509.GeneralName] = []
    for name in names:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt_names.append(x509.DNSName(name.lower()))
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=_SERVER_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
