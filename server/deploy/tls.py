"""The site's own certificate authority and the broker's certificate, made with the
`cryptography` package.

Agents check the broker against the site's CA (`ca.pem`, copied to each Pi): nothing
else is trusted, so no public CA is needed and nothing leaves the site. Keys are
ECDSA P-256, which every TLS 1.2 stack on a Pi speaks; the CA lasts 20 years, the
broker's certificate 5, and its names (DNS names or IP addresses) are those agents and
the server use to reach it.

    >>> is_ip("192.168.1.10"), is_ip("broker.lan")
    (True, False)
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ruche.broker.mosquitto_config import write_private

CA_YEARS = 20
CERT_YEARS = 5


def is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Ruche"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private(path, data)


def make_ca(cert_path: Path, key_path: Path, *, site: str, now: datetime | None = None) -> None:
    """A new self-signed CA for the site: its key (0600) and certificate."""
    now = now or datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(f"Ruche CA {site}")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=365 * CA_YEARS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(key_path, key)
    write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def make_server_cert(
    cert_path: Path,
    key_path: Path,
    *,
    ca_cert: Path,
    ca_key: Path,
    names: list[str],
    now: datetime | None = None,
) -> None:
    """A certificate for the broker under the site's CA, valid for each of `names`."""
    now = now or datetime.now(UTC)
    issuer = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    signer = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    if not isinstance(signer, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{ca_key} is not the EC key `ruche server init` makes")
    key = ec.generate_private_key(ec.SECP256R1())
    alternatives: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address(n)) if is_ip(n) else x509.DNSName(n) for n in names
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=365 * CERT_YEARS))
        .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
            critical=False,
        )
        .sign(signer, hashes.SHA256())
    )
    _write_key(key_path, key)
    write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def cert_names(cert_path: Path) -> list[str]:
    """The DNS names and IP addresses a certificate is valid for."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    alternatives = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = alternatives.get_values_for_type(x509.DNSName)
    ips = [str(ip) for ip in alternatives.get_values_for_type(x509.IPAddress)]
    return [*dns, *ips]
