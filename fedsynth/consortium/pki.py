"""The consortium's private certificate authority and the coordinator's TLS server certificate.

Flower's SuperLink serves the hospitals' SuperNodes over TLS (``--ssl-ca-certfile``,
``--ssl-certfile``, ``--ssl-keyfile``), and SuperNode authentication requires TLS. A consortium does
not need a public CA for that: the coordinator creates its own authority once, hands its
certificate (``ca.pem``, public) to every hospital as the only trust root (``flower-supernode
--root-certificates ca.pem``), and keeps its key (``ca.key``) offline. A hospital then connects only
to a server holding a certificate this authority issued for the address it dials.

Keys are EC on NIST P-384, signatures ECDSA with SHA-384. Private keys are written as unencrypted
PKCS#8 PEM with mode 0600; no file is overwritten unless ``overwrite=True`` (see
:mod:`fedsynth.consortium.files`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedsynth.consortium.files import ensure_absent, write_private, write_public
from fedsynth.errors import FedsynthError

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
SERVER_CERT = "server.pem"
SERVER_KEY = "server.key"

#: Allowance for clocks that run behind the coordinator's when a certificate starts being valid.
CLOCK_SKEW = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class Authority:
    """A loaded certificate authority: its certificate, its signing key and where they live."""

    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)
    certificate_path: Path
    key_path: Path

    @property
    def fingerprint(self) -> str:
        """SHA-256 fingerprint of the CA certificate, as ``openssl x509 -fingerprint -sha256`` prints it."""
        return certificate_fingerprint(self.certificate)


def certificate_fingerprint(certificate: x509.Certificate) -> str:
    """SHA-256 of the DER certificate as colon-separated upper-case hex (``AB:CD:...``), OpenSSL's form.

    Sites compare it out of band with ``openssl x509 -noout -fingerprint -sha256 -in ca.pem``.
    """
    digest = hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def create_authority(
    directory: Path, name: str = "fedsynth consortium CA", days: int = 3650, *, overwrite: bool = False
) -> Authority:
    """Create a self-signed CA (EC P-384) and write ``directory/ca.pem`` and ``directory/ca.key`` (0600).

    The certificate is a CA (basic constraints, critical, path length 0: it signs server
    certificates only) whose key may sign certificates and CRLs and nothing else.
    Raises :class:`~fedsynth.consortium.files.ExistingKeyFileError` naming the file when either
    exists and ``overwrite`` is false.
    """
    _check_days(days)
    directory = Path(directory)
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    ensure_absent([key_path, cert_path], overwrite=overwrite)
    key = ec.generate_private_key(ec.SECP384R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA384())
    )
    write_private(key_path, _private_pem(key), overwrite=overwrite)
    write_public(cert_path, certificate.public_bytes(serialization.Encoding.PEM), overwrite=overwrite)
    return Authority(certificate, key, cert_path, key_path)


def load_authority(directory: Path) -> Authority:
    """Load ``directory/ca.pem`` and ``directory/ca.key``; check the key is the certificate's and it is a CA."""
    directory = Path(directory)
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    for path in (cert_path, key_path):
        if not path.is_file():
            raise FedsynthError(f"{path}: missing (expected the authority's {path.name}, see `fedsynth keys`)")
    try:
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except ValueError as e:
        raise FedsynthError(f"{cert_path}: not a PEM certificate") from e
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (ValueError, TypeError) as e:
        raise FedsynthError(f"{key_path}: not an unencrypted PEM private key") from e
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise FedsynthError(f"{key_path}: not an EC private key")
    if key.public_key() != certificate.public_key():
        raise FedsynthError(f"{key_path} does not belong to the certificate {cert_path}")
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise FedsynthError(f"{cert_path}: not a CA certificate (no CA basic constraint)")
    return Authority(certificate, key, cert_path, key_path)


def issue_server_certificate(
    authority: Authority, directory: Path, hosts: list[str], days: int = 825, *, overwrite: bool = False
) -> tuple[Path, Path]:
    """Issue the coordinator's TLS server certificate; write ``server.pem`` and ``server.key`` (0600).

    ``hosts`` are every address hospitals dial: IP addresses become IPAddress entries of the
    subjectAltName, anything else a DNSName (TLS clients match hostnames against the SAN only).
    The certificate is for server authentication only (extended key usage serverAuth), signed by
    ``authority``. Returns ``(certificate path, key path)``.
    """
    _check_days(days)
    names = _subject_alt_names(hosts)
    directory = Path(directory)
    cert_path, key_path = directory / SERVER_CERT, directory / SERVER_KEY
    ensure_absent([key_path, cert_path], overwrite=overwrite)
    key = ec.generate_private_key(ec.SECP384R1())
    public = key.public_key()
    now = dt.datetime.now(dt.UTC)
    not_after = min(now + dt.timedelta(days=days), authority.certificate.not_valid_after_utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(authority.certificate.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.private_key.public_key()), critical=False
        )
        .sign(authority.private_key, hashes.SHA384())
    )
    try:
        certificate.verify_directly_issued_by(authority.certificate)
    except (ValueError, TypeError, InvalidSignature) as e:  # a mismatched authority: never write it
        raise FedsynthError(f"{authority.certificate_path}: the issued certificate does not verify") from e
    write_private(key_path, _private_pem(key), overwrite=overwrite)
    write_public(cert_path, certificate.public_bytes(serialization.Encoding.PEM), overwrite=overwrite)
    return cert_path, key_path


def _subject_alt_names(hosts: list[str]) -> list[x509.GeneralName]:
    if not hosts:
        raise FedsynthError("server certificate: no host given (expected the addresses hospitals dial)")
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):  # in order, without repeats
        if not host or host != host.strip() or any(c.isspace() for c in host):
            raise FedsynthError(f"server certificate host {host!r}: expected an IP address or a DNS name")
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _check_days(days: int) -> None:
    if days < 1:
        raise FedsynthError(f"certificate validity {days} days: expected at least 1")
