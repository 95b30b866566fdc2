"""The stack's own certificate authority, and a certificate for each host that needs one.

pgBackRest's TLS servers (the repository's and the database host's) authenticate both
ends with certificates: the client's Common Name says which stanzas it may use. Like
the other secrets they are generated at deploy, kept 0600 in the stack's secrets
directory, reused on later deploys, and never printed. A host's certificate is issued
again when its address changed, when it expires within `RENEW_BEFORE`, or when the CA
is not the one that signed it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from infra.paths import tls_dir
from infra.topology import Topology

CA_VALIDITY = dt.timedelta(days=3650)
HOST_VALIDITY = dt.timedelta(days=397)
RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True)
class HostCertificate:
    cert: Path
    key: Path


@dataclass(frozen=True)
class StackTls:
    ca_cert: Path
    hosts: dict[str, HostCertificate]


def ensure_tls(directory: Path, stack: str, hosts: dict[str, str]) -> StackTls:
    """The CA and a certificate per host (name -> IP address), created or renewed as
    needed. The certificate's CN is the host name; its SANs are the address."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    ca_key, ca_cert = _ensure_ca(directory, stack)
    issued = {}
    for name, address in sorted(hosts.items()):
        cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
        if not _still_good(cert_path, key_path, ca_cert, address):
            key = ec.generate_private_key(ec.SECP256R1())
            _write(key_path, key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
            _write(cert_path, _issue(ca_key, ca_cert, key, name, address)
                   .public_bytes(serialization.Encoding.PEM))
        issued[name] = HostCertificate(cert=cert_path, key=key_path)
    return StackTls(ca_cert=directory / "ca.crt", hosts=issued)


def _ensure_ca(directory: Path, stack: str) -> tuple[ec.EllipticCurvePrivateKey,
                                                     x509.Certificate]:
    key_path, cert_path = directory / "ca.key", directory / "ca.crt"
    if key_path.exists() and cert_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        if isinstance(key, ec.EllipticCurvePrivateKey) and _valid_for(cert, RENEW_BEFORE):
            return key, cert
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"civicpulse {stack} CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False,
                                         decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    _write(key_path, key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


def _issue(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate,
           key: ec.EllipticCurvePrivateKey, name: str, address: str) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + HOST_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            # The address twice: as an IP entry (what TLS clients such as Python's check)
            # and as a DNS name, because pgBackRest 2.45 matches the host it connects to
            # against DNS entries and the CN only ("unable to find hostname").
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(address)), x509.DNSName(address)]),
                critical=False)
            # One certificate per host for both ends: it serves (its TLS server) and
            # connects (to the other host's).
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))


def _still_good(cert_path: Path, key_path: Path, ca_cert: x509.Certificate,
                address: str) -> bool:
    if not (cert_path.exists() and key_path.exists()):
        return False
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    try:
        cert.verify_directly_issued_by(ca_cert)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    return (ipaddress.ip_address(address) in sans.get_values_for_type(x509.IPAddress)
            and address in sans.get_values_for_type(x509.DNSName)
            and key.public_key() == cert.public_key()
            and _valid_for(cert, RENEW_BEFORE))


def _valid_for(cert: x509.Certificate, margin: dt.timedelta) -> bool:
    return cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > margin


def _write(path: Path, data: bytes) -> None:
    """Replace `path` with a file that is 0600 from its first byte."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def ensure_stack_tls(topology: Topology) -> StackTls | None:
    """The certificates of the hosts that run a pgBackRest TLS server (the repository
    and the database host), or None when the stack keeps no backups."""
    hosts = {s.host: s.address for s in topology.services
             if s.name in ("pgbackrest", "pgbackrest_pg")}
    if not hosts:
        return None
    return ensure_tls(tls_dir(topology), topology.stack, hosts)
