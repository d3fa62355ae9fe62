"""The on-disk layout of a consortium's keys, and its public manifest ``consortium.toml``.

``create_consortium(DIR, N, hosts)`` writes everything a loopback or real deployment needs::

    DIR/ca/ca.pem, ca.key              the authority (keep ca.key offline)
    DIR/coordinator/ca.pem, server.pem, server.key
                                       the SuperLink's TLS files (--ssl-ca-certfile,
                                       --ssl-certfile, --ssl-keyfile)
    DIR/hospital-<i>/ca.pem, node.key, node.pub, ring.key, ring.pub
                                       hospital i's trust root, SuperNode authentication key
                                       pair and ring sealing key pair, i = 0 .. N-1
    DIR/consortium.toml                public manifest: the CA certificate's SHA-256
                                       fingerprint and, per hospital id, its node.pub line,
                                       node key fingerprint and ring.pub text

Each ``hospital-<i>`` folder goes to that hospital only; ``consortium.toml`` and ``ca.pem`` are
public. A hospital may instead make its own keys (:func:`create_hospital_keys`) and send only
its public lines, so that no private key ever leaves the site.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w
from cryptography import x509

from fedsynth.consortium.files import ensure_absent, write_public
from fedsynth.consortium.node_keys import NodeKey, create_node_key
from fedsynth.consortium.pki import (
    CA_CERT,
    CA_KEY,
    SERVER_CERT,
    SERVER_KEY,
    Authority,
    create_authority,
    issue_server_certificate,
)
from fedsynth.consortium.sealing import RingKey, create_ring_key
from fedsynth.errors import FedsynthError

MANIFEST = "consortium.toml"
MANIFEST_FORMAT = "fedsynth-consortium-v1"
AUTHORITY_DIR = "ca"
COORDINATOR_DIR = "coordinator"
NODE_NAME = "node"
RING_NAME = "ring"
DEFAULT_HOSTS = ("127.0.0.1", "localhost")


def hospital_dir_name(hospital_id: int) -> str:
    """The folder of hospital ``hospital_id`` in a consortium layout: ``hospital-<id>``."""
    return f"hospital-{hospital_id}"


@dataclass(frozen=True)
class HospitalKeys:
    """One hospital's key files and public values."""

    hospital_id: int
    directory: Path
    node: NodeKey
    ring: RingKey
    ca_certificate: Path | None

    def manifest_entry(self) -> dict[str, Any]:
        """This hospital's public entry in ``consortium.toml``."""
        return {
            "id": self.hospital_id,
            "node_public": self.node.public_openssh.decode("ascii"),
            "node_fingerprint": self.node.fingerprint,
            "ring_public": self.ring.public_text,
        }


@dataclass(frozen=True)
class Consortium:
    """What :func:`create_consortium` wrote."""

    directory: Path
    authority: Authority
    server_certificate: Path
    server_key: Path
    hosts: list[str]
    hospitals: list[HospitalKeys]
    manifest: Path


def hospital_key_paths(directory: Path, *, with_ca: bool) -> list[Path]:
    """The files :func:`create_hospital_keys` writes in ``directory``."""
    names = [f"{NODE_NAME}.key", f"{NODE_NAME}.pub", f"{RING_NAME}.key", f"{RING_NAME}.pub"]
    return [directory / n for n in ([CA_CERT] if with_ca else []) + names]


def coordinator_paths(directory: Path) -> list[Path]:
    """The files :func:`issue_coordinator` writes in ``directory``."""
    return [directory / CA_CERT, directory / SERVER_CERT, directory / SERVER_KEY]


def consortium_paths(directory: Path, hospitals: int) -> list[Path]:
    """Every file :func:`create_consortium` writes, private keys first."""
    paths = [directory / AUTHORITY_DIR / CA_KEY, directory / AUTHORITY_DIR / CA_CERT]
    paths += coordinator_paths(directory / COORDINATOR_DIR)
    for i in range(hospitals):
        paths += hospital_key_paths(directory / hospital_dir_name(i), with_ca=True)
    return [*paths, directory / MANIFEST]


def create_hospital_keys(
    directory: Path, hospital_id: int, ca_certificate: Path | None = None, *, overwrite: bool = False
) -> HospitalKeys:
    """Write one hospital's keys into ``directory``: node.key/node.pub, ring.key/ring.pub, and a
    copy of ``ca_certificate`` as ca.pem when given. Nothing is written when any file exists and
    ``overwrite`` is false (:class:`~fedsynth.consortium.files.ExistingKeyFileError` names it)."""
    if hospital_id < 0:
        raise FedsynthError(f"hospital id {hospital_id}: expected 0 or more")
    directory = Path(directory)
    ensure_absent(hospital_key_paths(directory, with_ca=ca_certificate is not None), overwrite=overwrite)
    copied = None
    if ca_certificate is not None:
        copied = copy_ca_certificate(ca_certificate, directory, overwrite=overwrite)
    label = f"fedsynth-{hospital_dir_name(hospital_id)}"
    node = create_node_key(directory, NODE_NAME, comment=label, overwrite=overwrite)
    ring = create_ring_key(directory, RING_NAME, overwrite=overwrite)
    return HospitalKeys(hospital_id, directory, node, ring, copied)


def copy_ca_certificate(source: Path, directory: Path, *, overwrite: bool = False) -> Path:
    """Copy a CA certificate to ``directory/ca.pem`` after checking it is a PEM certificate."""
    source = Path(source)
    try:
        data = source.read_bytes()
        x509.load_pem_x509_certificate(data)
    except OSError as e:
        raise FedsynthError(f"{source}: unreadable CA certificate") from e
    except ValueError as e:
        raise FedsynthError(f"{source}: not a PEM certificate") from e
    return write_public(Path(directory) / CA_CERT, data, overwrite=overwrite)


def issue_coordinator(
    authority: Authority, directory: Path, hosts: list[str], *, overwrite: bool = False
) -> tuple[Path, Path]:
    """Write the SuperLink's TLS files into ``directory``: ca.pem, server.pem and server.key."""
    directory = Path(directory)
    ensure_absent(coordinator_paths(directory), overwrite=overwrite)
    cert, key = issue_server_certificate(authority, directory, hosts, overwrite=overwrite)
    copy_ca_certificate(authority.certificate_path, directory, overwrite=overwrite)
    return cert, key


def create_consortium(
    directory: Path, hospitals: int, hosts: list[str] | None = None, *, overwrite: bool = False
) -> Consortium:
    """Write the whole layout of the module docstring for ``hospitals`` hospitals.

    ``hosts`` are the coordinator's addresses for its server certificate (default: 127.0.0.1 and
    localhost, a loopback consortium). Nothing is written when any file of the layout exists and
    ``overwrite`` is false; with ``overwrite`` every key is replaced (folders of hospitals beyond
    ``hospitals`` from an earlier, larger consortium are left alone: the manifest lists members).
    """
    if hospitals < 1:
        raise FedsynthError(f"{hospitals} hospitals: expected at least 1")
    hosts = list(hosts) if hosts else list(DEFAULT_HOSTS)
    directory = Path(directory)
    ensure_absent(consortium_paths(directory, hospitals), overwrite=overwrite)
    authority = create_authority(directory / AUTHORITY_DIR, overwrite=overwrite)
    server_cert, server_key = issue_coordinator(authority, directory / COORDINATOR_DIR, hosts, overwrite=overwrite)
    members = [
        create_hospital_keys(directory / hospital_dir_name(i), i, authority.certificate_path, overwrite=overwrite)
        for i in range(hospitals)
    ]
    manifest = write_manifest(directory / MANIFEST, authority, hosts, members, overwrite=overwrite)
    return Consortium(directory, authority, server_cert, server_key, hosts, members, manifest)


def write_manifest(
    path: Path, authority: Authority, hosts: list[str], hospitals: list[HospitalKeys], *, overwrite: bool = False
) -> Path:
    """Write the public manifest ``consortium.toml`` (no private value in it)."""
    document = {
        "format": MANIFEST_FORMAT,
        "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "authority": {
            "certificate": f"{AUTHORITY_DIR}/{CA_CERT}",
            "subject": authority.certificate.subject.rfc4514_string(),
            "sha256": authority.fingerprint,
        },
        "coordinator": {"certificate": f"{COORDINATOR_DIR}/{SERVER_CERT}", "hosts": list(dict.fromkeys(hosts))},
        "hospitals": [h.manifest_entry() for h in sorted(hospitals, key=lambda h: h.hospital_id)],
    }
    header = (
        "# fedsynth consortium manifest: public values only (no private key). Share it with every site.\n"
        "# Check authority.sha256 out of band: openssl x509 -noout -fingerprint -sha256 -in ca.pem\n"
    )
    return write_public(path, (header + tomli_w.dumps(document)).encode("utf-8"), overwrite=overwrite)


def certificate_of(path: Path) -> x509.Certificate:
    """Load a PEM certificate (for printing its fingerprint)."""
    return x509.load_pem_x509_certificate(Path(path).read_bytes())
