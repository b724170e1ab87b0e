"""Self-signed TLS for the embedded default: a federation CA, server and client certificates.

esgcet and esgpull only speak HTTPS, and esgcet's legacy authentication is an X.509 client
certificate, so the index can present a server certificate and accept client certificates
signed by the same CA. All of it lives under `<state-dir>/tls/`, made on first start.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass
class TLSFiles:
    ca: Path  # what clients verify this server with
    cert: Path
    key: Path
    # the only CA whose client certificates are accepted (None: client certificates are not
    # asked for). Never the served chain: that may lead to a public root, and every holder of
    # a certificate from that root would then be a publisher.
    client_ca: Path | None = None


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _load_ca(tls_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_cert_path, ca_key_path = tls_dir / "ca.pem", tls_dir / "ca.key"
    if ca_cert_path.exists() and ca_key_path.exists():
        cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
        key = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return cert, key
    tls_dir.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "esgf-ha federation CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(ca_key_path, key)
    ca_cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _leaf(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    common_name: str,
    names: list[str],
    usage: x509.ObjectIdentifier,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    sans: list[x509.GeneralName] = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def ensure_ca(ca_dir: Path) -> Path:
    """The CA certificate in `ca_dir`, made (with its key) if missing."""
    _load_ca(ca_dir)
    return ca_dir / "ca.pem"


def ensure_server_tls(state_dir: Path, hostnames: list[str]) -> TLSFiles:
    """The CA and a server certificate for these names, made once and then reused."""
    tls_dir = state_dir / "tls"
    return issue_server_cert(tls_dir, hostnames, tls_dir / "server.pem", tls_dir / "server.key")


def issue_server_cert(
    ca_dir: Path, hostnames: list[str], cert_path: Path, key_path: Path
) -> TLSFiles:
    """A server certificate for these names signed by the CA in `ca_dir` (made if missing);
    an existing certificate that already covers the names is kept."""
    ca_cert, ca_key = _load_ca(ca_dir)
    wanted = sorted(set(hostnames) | {"localhost", "127.0.0.1"})
    if cert_path.exists() and key_path.exists():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            have = {str(v) for v in san.get_values_for_type(x509.DNSName)} | {
                str(v) for v in san.get_values_for_type(x509.IPAddress)
            }
        except x509.ExtensionNotFound:
            have = set()
        if set(wanted) <= have and _signed_by(cert, ca_cert):
            return TLSFiles(ca_dir / "ca.pem", cert_path, key_path, ca_dir / "ca.pem")
    cert, key = _leaf(ca_cert, ca_key, wanted[0], wanted, ExtendedKeyUsageOID.SERVER_AUTH)
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    _write_key(key_path, key)
    cert_path.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + ca_cert.public_bytes(serialization.Encoding.PEM)
    )
    return TLSFiles(ca_dir / "ca.pem", cert_path, key_path, ca_dir / "ca.pem")


def _signed_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def issue_client_cert(state_dir: Path, common_name: str, out: Path) -> Path:
    """One PEM holding a client certificate and its key (the MyProxy-style credential esgcet
    passes as `cert=(pem, pem)`)."""
    ca_cert, ca_key = _load_ca(state_dir / "tls")
    cert, key = _leaf(ca_cert, ca_key, common_name, [], ExtendedKeyUsageOID.CLIENT_AUTH)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    out.chmod(0o600)
    return out
