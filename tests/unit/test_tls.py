"""The stack's CA and host certificates: issued once, reused, renewed when they must be."""

from __future__ import annotations

import ipaddress
import ssl
import stat

from cryptography import x509

from infra.tls import ensure_tls


def _load(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_issues_a_ca_and_one_certificate_per_host_all_0600(tmp_path):
    tls = ensure_tls(tmp_path / "tls", "lab", {"db": "127.0.10.32", "backup": "127.0.10.60"})
    assert set(tls.hosts) == {"db", "backup"}
    for path in (tmp_path / "tls").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    cert = _load(tls.hosts["db"].cert)
    cert.verify_directly_issued_by(_load(tls.ca_cert))
    assert cert.subject.rfc4514_string() == "CN=db"
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.10.32")]
    # pgBackRest 2.45 matches only DNS entries and the CN against the address it dials.
    assert sans.get_values_for_type(x509.DNSName) == ["127.0.10.32"]


def test_openssl_accepts_the_chain_for_the_host_address(tmp_path):
    tls = ensure_tls(tmp_path, "lab", {"backup": "127.0.10.60"})
    ctx = ssl.create_default_context(cafile=str(tls.ca_cert))
    # The same files pgBackRest's server and client load (key matches certificate).
    ctx.load_cert_chain(str(tls.hosts["backup"].cert), str(tls.hosts["backup"].key))


def test_second_run_keeps_everything(tmp_path):
    first = ensure_tls(tmp_path, "lab", {"db": "127.0.10.32"})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    ensure_tls(tmp_path, "lab", {"db": "127.0.10.32"})
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert first.hosts["db"].cert.exists()


def test_a_moved_host_gets_a_new_certificate_and_the_others_stay(tmp_path):
    ensure_tls(tmp_path, "lab", {"db": "127.0.10.32", "backup": "127.0.10.60"})
    backup_before = (tmp_path / "backup.crt").read_bytes()
    db_before = (tmp_path / "db.crt").read_bytes()
    ensure_tls(tmp_path, "lab", {"db": "127.0.10.33", "backup": "127.0.10.60"})
    assert (tmp_path / "backup.crt").read_bytes() == backup_before
    assert (tmp_path / "db.crt").read_bytes() != db_before
    sans = _load(tmp_path / "db.crt").extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.10.33")]


def test_a_new_ca_reissues_every_host(tmp_path):
    ensure_tls(tmp_path, "lab", {"db": "127.0.10.32"})
    (tmp_path / "ca.key").unlink()
    ensure_tls(tmp_path, "lab", {"db": "127.0.10.32"})
    _load(tmp_path / "db.crt").verify_directly_issued_by(_load(tmp_path / "ca.crt"))
