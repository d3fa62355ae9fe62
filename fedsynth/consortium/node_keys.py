"""A hospital's SuperNode authentication key pair, in the form Flower 1.41 expects.

With ``flower-superlink --enable-supernode-auth`` the SuperLink admits only SuperNodes whose
public key was registered (``flwr supernode register node.pub``). The SuperNode proves it holds
the matching private key (``flower-supernode --auth-supernode-private-key node.key``), which Flower
reads with cryptography's ``load_ssh_private_key`` and from which it derives the public key.

So: EC on NIST P-384, the private key in OpenSSH private format without a passphrase (0600,
never overwritten silently), the public key as one OpenSSH line ``ecdsa-sha2-nistp384 AAAA...
comment`` in a ``.pub`` file. :func:`key_fingerprint` gives the ``SHA256:...`` form ``ssh-keygen
-l`` prints, for comparing a key read over the phone with the one in the consortium manifest.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fedsynth.consortium.files import ensure_absent, write_private, write_public
from fedsynth.errors import FedsynthError

#: The NIST curves Flower's node authentication accepts (it rejects other EC curves and key types).
NIST_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)


@dataclass(frozen=True)
class NodeKey:
    """Where a node key pair was written, its public key line and its fingerprint."""

    private_path: Path
    public_path: Path
    public_openssh: bytes
    fingerprint: str


def create_node_key(
    directory: Path, name: str = "node", *, comment: str | None = None, overwrite: bool = False
) -> NodeKey:
    """Create an EC P-384 key pair: ``directory/<name>.key`` (OpenSSH private, 0600) and ``<name>.pub``.

    ``comment`` (default ``fedsynth-<name>``, no spaces) ends the public line, as in ``ssh-keygen``.
    Raises :class:`~fedsynth.consortium.files.ExistingKeyFileError` naming the file when either
    file exists and ``overwrite`` is false.
    """
    label = comment if comment is not None else f"fedsynth-{name}"
    if not label or any(c.isspace() for c in label):
        raise FedsynthError(f"node key comment {label!r}: expected one word without spaces")
    directory = Path(directory)
    private_path, public_path = directory / f"{name}.key", directory / f"{name}.pub"
    ensure_absent([private_path, public_path], overwrite=overwrite)
    key = ec.generate_private_key(ec.SECP384R1())
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    line = public + b" " + label.encode("ascii")
    write_private(private_path, private, overwrite=overwrite)
    write_public(public_path, line + b"\n", overwrite=overwrite)
    return NodeKey(private_path, public_path, line, key_fingerprint(line))


def load_node_public(path: Path) -> bytes:
    """Read an OpenSSH public key file and return its line (no trailing newline).

    Checks what Flower checks before registering a node: an EC public key on a NIST curve.
    Raises :class:`~fedsynth.errors.FedsynthError` naming the file otherwise.
    """
    path = Path(path)
    if not path.is_file():
        raise FedsynthError(f"{path}: no such public key file")
    line = path.read_bytes().strip()
    try:
        key = serialization.load_ssh_public_key(line)
    except (ValueError, UnsupportedAlgorithm) as e:
        raise FedsynthError(f"{path}: not an OpenSSH public key line ('ecdsa-sha2-nistp384 AAAA... comment')") from e
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, NIST_CURVES):
        raise FedsynthError(f"{path}: not an EC key on a NIST curve (Flower's node authentication needs one)")
    return line


def key_fingerprint(public_openssh: bytes) -> str:
    """``SHA256:`` + unpadded base64 of SHA-256 over the key blob, as ``ssh-keygen -l`` shows it.

    ``public_openssh`` is an OpenSSH public key line (``type base64-blob [comment]``). The blob is
    checked to decode and to name the same key type as the line.
    """
    fields = public_openssh.strip().split()
    if len(fields) < 2:
        raise FedsynthError("OpenSSH public key: expected 'type base64-blob [comment]'")
    try:
        blob = base64.b64decode(fields[1], validate=True)
    except binascii.Error as e:
        raise FedsynthError("OpenSSH public key: the key blob is not base64") from e
    if len(blob) < 4:
        raise FedsynthError("OpenSSH public key: the key blob is too short")
    (length,) = struct.unpack(">I", blob[:4])
    if blob[4 : 4 + length] != fields[0]:
        raise FedsynthError("OpenSSH public key: the key blob names another key type than the line")
    digest = hashlib.sha256(blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")
