"""Consortium keys: the CA, the coordinator's TLS certificate (checked in a real TLS handshake),
the hospitals' Flower node-authentication keys, and the `fedsynth keys` commands."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import shutil
import socket
import ssl
import stat
import subprocess
import threading
import tomllib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID
from typer.testing import CliRunner

from fedsynth.cli.main import app
from fedsynth.consortium import (
    ExistingKeyFileError,
    create_authority,
    create_node_key,
    issue_server_certificate,
    key_fingerprint,
    load_authority,
    load_node_public,
)
from fedsynth.errors import FedsynthError

HOSTS = ["127.0.0.1", "::1", "localhost", "coordinator.example.org"]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _verifies(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except Exception:
        return False
    return True


@pytest.fixture
def pki(tmp_path: Path):
    authority = create_authority(tmp_path / "ca")
    cert_path, key_path = issue_server_certificate(authority, tmp_path / "coordinator", HOSTS)
    return authority, cert_path, key_path


# --- certificate authority and server certificate ---------------------------------------------


def test_authority_is_a_p384_ca_that_only_signs_certificates(pki) -> None:
    authority, _, _ = pki
    ca = x509.load_pem_x509_certificate(authority.certificate_path.read_bytes())
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    assert ca.issuer == ca.subject and _verifies(ca, ca)  # self-signed
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    assert isinstance(ca.public_key().curve, ec.SECP384R1)
    loaded = load_authority(authority.certificate_path.parent)
    assert loaded.certificate == ca and loaded.fingerprint == authority.fingerprint


def test_server_certificate_verifies_against_the_ca_and_names_every_host(pki) -> None:
    authority, cert_path, key_path = pki
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    ca_public = authority.certificate.public_key()
    ca_public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    assert cert.issuer == authority.certificate.subject
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "coordinator.example.org"]
    assert ExtendedKeyUsageOID.SERVER_AUTH in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert key.public_key() == cert.public_key()


def test_a_certificate_from_another_authority_does_not_verify(pki, tmp_path: Path) -> None:
    _, cert_path, _ = pki
    other = create_authority(tmp_path / "other-ca")
    assert not _verifies(x509.load_pem_x509_certificate(cert_path.read_bytes()), other.certificate)


def test_private_keys_are_0600_and_never_chmod_ed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("private files must be created with mode 0600, not chmod-ed")

    monkeypatch.setattr(os, "chmod", refuse)
    monkeypatch.setattr(os, "fchmod", refuse)
    authority = create_authority(tmp_path / "ca")
    _, server_key = issue_server_certificate(authority, tmp_path / "srv", ["127.0.0.1"])
    node = create_node_key(tmp_path / "site")
    for path in (authority.key_path, server_key, node.private_path):
        assert _mode(path) == 0o600, path
    assert _mode(node.public_path) & 0o044  # public files stay readable by others


def test_a_second_creation_without_overwrite_raises_naming_the_file(pki, tmp_path: Path) -> None:
    authority, cert_path, key_path = pki
    before = {p: p.read_bytes() for p in (authority.key_path, authority.certificate_path, cert_path, key_path)}
    with pytest.raises(ExistingKeyFileError, match=str(authority.key_path)):
        create_authority(tmp_path / "ca")
    with pytest.raises(ExistingKeyFileError, match=str(key_path)):
        issue_server_certificate(authority, tmp_path / "coordinator", ["127.0.0.1"])
    create_node_key(tmp_path / "site")
    with pytest.raises(ExistingKeyFileError, match=str(tmp_path / "site" / "node.key")):
        create_node_key(tmp_path / "site")
    assert {p: p.read_bytes() for p in before} == before


def test_overwrite_replaces_a_key_with_a_fresh_0600_file(tmp_path: Path) -> None:
    first = create_authority(tmp_path / "ca")
    old = first.key_path.read_bytes()
    first.key_path.chmod(0o644)  # a key someone loosened by hand
    second = create_authority(tmp_path / "ca", overwrite=True)
    assert second.key_path.read_bytes() != old
    assert _mode(second.key_path) == 0o600
    assert sorted(p.name for p in (tmp_path / "ca").iterdir()) == ["ca.key", "ca.pem"]  # no temporary left


def test_load_authority_rejects_a_key_of_another_certificate(tmp_path: Path) -> None:
    create_authority(tmp_path / "a")
    create_authority(tmp_path / "b")
    shutil.copy(tmp_path / "b" / "ca.key", tmp_path / "a" / "ca.key")
    with pytest.raises(FedsynthError, match="does not belong"):
        load_authority(tmp_path / "a")


# --- a real TLS handshake with the issued certificate -----------------------------------------


class _TLSServer:
    """Accepts TLS connections on 127.0.0.1 and echoes one message per connection."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                raw, _ = self.listener.accept()
            except TimeoutError:
                continue
            raw.settimeout(5)
            try:
                with self.context.wrap_socket(raw, server_side=True) as tls:
                    tls.sendall(tls.recv(64))
            except (ssl.SSLError, OSError):
                raw.close()

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.listener.close()


@pytest.fixture
def tls_server(pki):
    _, cert, key = pki
    server = _TLSServer(cert, key)
    yield server
    server.close()


def _echo(port: int, trusted_ca: Path, hostname: str) -> tuple[bytes, dict]:
    context = ssl.create_default_context(cafile=str(trusted_ca))
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=hostname) as tls:
            tls.sendall(b"ping")
            return tls.recv(64), tls.getpeercert()


@pytest.mark.parametrize("hostname", ["127.0.0.1", "localhost"])
def test_tls_handshake_succeeds_when_only_the_consortium_ca_is_trusted(pki, tls_server, hostname: str) -> None:
    authority, _, _ = pki
    echoed, peer = _echo(tls_server.port, authority.certificate_path, hostname)
    assert echoed == b"ping"
    assert ("DNS", "localhost") in peer["subjectAltName"]


def test_tls_handshake_fails_with_another_ca_or_an_unlisted_host(pki, tls_server, tmp_path: Path) -> None:
    authority, _, _ = pki
    stranger = create_authority(tmp_path / "stranger-ca")
    with pytest.raises(ssl.SSLCertVerificationError):
        _echo(tls_server.port, stranger.certificate_path, "127.0.0.1")
    with pytest.raises(ssl.SSLCertVerificationError):
        _echo(tls_server.port, authority.certificate_path, "not-the-coordinator.example.org")


# --- node authentication keys ------------------------------------------------------------------


def test_node_key_is_an_openssh_p384_key_matching_node_pub(tmp_path: Path) -> None:
    node = create_node_key(tmp_path / "site")
    private = serialization.load_ssh_private_key(node.private_path.read_bytes(), password=None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert isinstance(private.curve, ec.SECP384R1)
    derived = private.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    pub_fields = node.public_path.read_bytes().split()
    assert pub_fields[0] == b"ecdsa-sha2-nistp384"
    assert b" ".join(pub_fields[:2]) == derived
    assert load_node_public(node.public_path) == node.public_path.read_bytes().strip() == node.public_openssh


def test_flowers_own_loader_accepts_node_pub(tmp_path: Path) -> None:
    # `flwr supernode register KEY.pub` reads the key with this function (defined in the same module).
    from flwr.cli.supernode.register import try_load_public_key

    node = create_node_key(tmp_path / "site")
    private = serialization.load_ssh_private_key(node.private_path.read_bytes(), password=None)
    expected = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert try_load_public_key(node.public_path) == expected


def test_key_fingerprint_is_sha256_of_the_decoded_blob(tmp_path: Path) -> None:
    node = create_node_key(tmp_path / "site")
    blob = base64.b64decode(node.public_path.read_bytes().split()[1])
    expected = "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    assert key_fingerprint(node.public_openssh) == expected == node.fingerprint
    other = create_node_key(tmp_path / "other")
    assert key_fingerprint(other.public_openssh) != expected


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs OpenSSH's ssh-keygen")
def test_key_fingerprint_equals_ssh_keygen(tmp_path: Path) -> None:
    node = create_node_key(tmp_path / "site")
    shown = subprocess.run(["ssh-keygen", "-l", "-f", str(node.public_path)], capture_output=True, check=True)
    assert shown.stdout.split()[1].decode() == node.fingerprint


def test_node_public_must_be_an_ec_key_on_a_nist_curve(tmp_path: Path) -> None:
    ed = ed25519.Ed25519PrivateKey.generate().public_key()
    path = tmp_path / "ed.pub"
    path.write_bytes(ed.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH))
    with pytest.raises(FedsynthError, match="NIST curve"):
        load_node_public(path)
    (tmp_path / "junk.pub").write_text("ecdsa-sha2-nistp384 not-base64 x\n")
    with pytest.raises(FedsynthError, match="junk.pub"):
        load_node_public(tmp_path / "junk.pub")
    with pytest.raises(FedsynthError, match="base64"):
        key_fingerprint(b"ecdsa-sha2-nistp384 ***")


# --- the `fedsynth keys` commands ---------------------------------------------------------------

PRIVATE_FILES = ["ca/ca.key", "coordinator/server.key"] + [
    f"hospital-{i}/{name}" for i in range(3) for name in ("node.key", "ring.key")
]


def _ca_sha256(pem: bytes) -> str:
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, 64, 2))


def test_keys_consortium_writes_the_layout_and_a_matching_manifest(tmp_path: Path) -> None:
    out = tmp_path / "consortium"
    args = ["keys", "consortium", "--out", str(out), "--hospitals", "3", "--host", "127.0.0.1", "--host", "localhost"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    expected = {"ca/ca.pem", "ca/ca.key", "coordinator/ca.pem", "coordinator/server.pem", "coordinator/server.key"}
    expected |= {
        f"hospital-{i}/{n}" for i in range(3) for n in ("ca.pem", "node.key", "node.pub", "ring.key", "ring.pub")
    }
    expected |= {"consortium.toml"}
    assert {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()} == expected
    for name in PRIVATE_FILES:
        assert _mode(out / name) == 0o600, name
    ca_pem = (out / "ca" / "ca.pem").read_bytes()
    assert all((out / d / "ca.pem").read_bytes() == ca_pem for d in ["coordinator", "hospital-0", "hospital-2"])
    ca = x509.load_pem_x509_certificate(ca_pem)
    assert _verifies(x509.load_pem_x509_certificate((out / "coordinator" / "server.pem").read_bytes()), ca)

    manifest = tomllib.loads((out / "consortium.toml").read_text())
    assert manifest["authority"]["sha256"] == _ca_sha256(ca_pem)
    assert manifest["coordinator"]["hosts"] == ["127.0.0.1", "localhost"]
    assert [h["id"] for h in manifest["hospitals"]] == [0, 1, 2]
    for entry in manifest["hospitals"]:
        site = out / f"hospital-{entry['id']}"
        assert entry["node_public"] == (site / "node.pub").read_text().strip()
        assert entry["node_fingerprint"] == key_fingerprint((site / "node.pub").read_bytes())
        assert entry["ring_public"] == (site / "ring.pub").read_text().strip()
    assert len({h["ring_public"] for h in manifest["hospitals"]}) == 3
    assert "PRIVATE KEY" not in result.output
    assert manifest["hospitals"][1]["node_fingerprint"] in result.output


def test_keys_consortium_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    out = tmp_path / "consortium"
    runner = CliRunner()
    assert runner.invoke(app, ["keys", "consortium", "--out", str(out), "--hospitals", "2"]).exit_code == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    again = runner.invoke(app, ["keys", "consortium", "--out", str(out), "--hospitals", "2"])
    assert again.exit_code == 2
    assert str(out / "ca" / "ca.key") in again.output and "--force" in again.output
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    forced = runner.invoke(app, ["keys", "consortium", "--out", str(out), "--hospitals", "2", "--force"])
    assert forced.exit_code == 0, forced.output
    assert (out / "ca" / "ca.key").read_bytes() != before[out / "ca" / "ca.key"]
    assert (out / "hospital-1" / "node.key").read_bytes() != before[out / "hospital-1" / "node.key"]


def test_keys_hospital_and_keys_server(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["keys", "consortium", "--out", str(tmp_path / "c"), "--hospitals", "1"]).exit_code == 0
    ca_pem = tmp_path / "c" / "ca" / "ca.pem"

    site = tmp_path / "site-5"
    result = runner.invoke(app, ["keys", "hospital", "--out", str(site), "--id", "5", "--ca-cert", str(ca_pem)])
    assert result.exit_code == 0, result.output
    assert (site / "ca.pem").read_bytes() == ca_pem.read_bytes()
    assert _mode(site / "node.key") == 0o600 and _mode(site / "ring.key") == 0o600
    entry = tomllib.loads(result.output.split("consortium.toml:\n", 1)[1])["hospitals"][0]
    assert entry["id"] == 5 and entry["node_public"] == (site / "node.pub").read_text().strip()
    assert "PRIVATE KEY" not in result.output

    coordinator = tmp_path / "new-coordinator"
    args = ["keys", "server", "--ca", str(tmp_path / "c" / "ca"), "--out", str(coordinator), "--host", "10.1.2.3"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    cert = x509.load_pem_x509_certificate((coordinator / "server.pem").read_bytes())
    assert _verifies(cert, x509.load_pem_x509_certificate(ca_pem.read_bytes()))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.1.2.3")]
    assert _mode(coordinator / "server.key") == 0o600
    assert runner.invoke(app, args).exit_code == 2  # server.key exists now
