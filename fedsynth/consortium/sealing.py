"""End-to-end sealing of ring payloads between neighbouring hospitals.

In a ring federation a hospital's model travels to its successor through the coordinator's
SuperLink (hospital -> server -> next hospital). TLS protects each hop, but the server sees the
payload in the clear and could read, alter, replay or substitute it. Sealing closes that: the
sender encrypts for the receiver's pinned ring key and authenticates with its own, so the relay
sees only ciphertext, and any change, a blob from an earlier round or another ring position, or
one made by anyone but the pinned sender is refused.

Keys. Each hospital holds a long-term X25519 ring key (``ring.key``, PKCS#8 PEM, 0600) and
publishes its public half (``ring.pub``: the raw 32 bytes as base64 text, what a site file or the
consortium manifest pins).

Construction (version 1), per message:

- a fresh ephemeral X25519 key ``e``;
- ``s1 = DH(e, receiver static)`` (only the receiver can open it) and
  ``s2 = DH(sender static, receiver static)`` (only the pinned sender or the receiver can compute
  it, so it authenticates the sender to the receiver);
- ``key = HKDF-SHA256(s1 || s2, salt = e's public key, info = "fedsynth ring seal v1" || sender id
  || receiver id || length-prefixed context)``, 32 bytes for AES-256-GCM;
- ``header = version (1 byte) || sender id (4 bytes) || receiver id (4 bytes) || e's public key
  (32 bytes) || context length (4 bytes) || context``; ids and lengths are big-endian;
- ``blob = header || nonce (12 random bytes) || AES-256-GCM(key, nonce, payload, aad = header)``.

The context (for example ``b"run=...;round=3"``) names what the payload is for: a blob sealed for
one round does not open in another. Limits: the sealing does not hide who talks to whom or the
payload size, and whoever steals a hospital's ring key can both read what is sealed for it and
forge blobs to it from any sender (static-static authentication); keep ``ring.key`` like
``node.key``.
"""

from __future__ import annotations

import base64
import binascii
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fedsynth.consortium.files import ensure_absent, write_private, write_public
from fedsynth.errors import FedsynthError

VERSION = 1
LABEL = b"fedsynth ring seal v1"
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
#: version, sender id, receiver id, ephemeral public key, context length (the context follows).
_FIXED = struct.Struct(">BII32sI")
MAX_ID = 2**32 - 1


class SealError(FedsynthError):
    """A sealed blob could not be opened: malformed, for someone else, or not authentic."""


@dataclass(frozen=True)
class RingKey:
    """Where a ring key pair was written and its public key as pinned text."""

    private_path: Path
    public_path: Path
    public_text: str


def create_ring_key(directory: Path, name: str = "ring", *, overwrite: bool = False) -> RingKey:
    """Create an X25519 ring key: ``directory/<name>.key`` (PKCS#8 PEM, 0600) and ``<name>.pub`` (base64).

    Raises :class:`~fedsynth.consortium.files.ExistingKeyFileError` naming the file when either
    file exists and ``overwrite`` is false.
    """
    directory = Path(directory)
    private_path, public_path = directory / f"{name}.key", directory / f"{name}.pub"
    ensure_absent([private_path, public_path], overwrite=overwrite)
    key = X25519PrivateKey.generate()
    text = ring_public_text(key.public_key())
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_private(private_path, private, overwrite=overwrite)
    write_public(public_path, (text + "\n").encode("ascii"), overwrite=overwrite)
    return RingKey(private_path, public_path, text)


def ring_public_text(public: X25519PublicKey) -> str:
    """The pinned text form of a ring public key: its raw 32 bytes in standard base64."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def load_ring_private(path: Path) -> X25519PrivateKey:
    """Load a ring private key written by :func:`create_ring_key`; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FedsynthError(f"{path}: no such ring key file")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as e:
        raise FedsynthError(f"{path}: not an unencrypted PEM private key") from e
    if not isinstance(key, X25519PrivateKey):
        raise FedsynthError(f"{path}: not an X25519 ring key")
    return key


def load_ring_public(path: Path) -> X25519PublicKey:
    """Load a ``ring.pub`` file (see :func:`ring_public_from_text`); errors name the file."""
    path = Path(path)
    try:
        return ring_public_from_text(path.read_text(encoding="ascii"))
    except (OSError, UnicodeDecodeError) as e:
        raise FedsynthError(f"{path}: unreadable ring public key file") from e
    except FedsynthError as e:
        raise FedsynthError(f"{path}: {e}") from e


def ring_public_from_text(text: str) -> X25519PublicKey:
    """Parse a pinned ring public key: base64 of 32 raw bytes (surrounding whitespace ignored).

    Rejects text that is not base64, that decodes to another length, and the low-order points
    with which every key exchange gives zero (a "key" that would make the seal keyless).
    """
    stripped = text.strip()
    if not stripped:
        raise FedsynthError("ring public key: empty (expected 32 bytes as base64 text)")
    try:
        raw = base64.b64decode(stripped, validate=True)
    except (binascii.Error, ValueError) as e:
        raise FedsynthError("ring public key: not base64 text (expected 32 bytes as base64 text)") from e
    if len(raw) != KEY_BYTES:
        raise FedsynthError(f"ring public key: decodes to {len(raw)} bytes, expected {KEY_BYTES}")
    public = X25519PublicKey.from_public_bytes(raw)
    try:
        X25519PrivateKey.generate().exchange(public)
    except ValueError as e:
        raise FedsynthError("ring public key: a low-order point, not a usable X25519 public key") from e
    return public


def seal(
    payload: bytes,
    *,
    sender_id: int,
    sender_key: X25519PrivateKey,
    receiver_id: int,
    receiver_public: X25519PublicKey,
    context: bytes,
) -> bytes:
    """Encrypt and authenticate ``payload`` from ``sender_id`` for ``receiver_id`` (see the module docstring)."""
    _check_id("sender", sender_id)
    _check_id("receiver", receiver_id)
    context = bytes(context)
    if len(context) > MAX_ID:
        raise SealError("context too long")
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = ephemeral.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    try:
        to_receiver = ephemeral.exchange(receiver_public)
        static = sender_key.exchange(receiver_public)
    except ValueError as e:
        raise SealError("the receiver's public key is a low-order point") from e
    header = _FIXED.pack(VERSION, sender_id, receiver_id, ephemeral_public, len(context)) + context
    key = _derive(to_receiver, static, ephemeral_public, sender_id, receiver_id, context)
    nonce = os.urandom(NONCE_BYTES)
    return header + nonce + AESGCM(key).encrypt(nonce, bytes(payload), header)


def open_sealed(
    blob: bytes,
    *,
    receiver_id: int,
    receiver_key: X25519PrivateKey,
    sender_id: int,
    sender_public: X25519PublicKey,
    context: bytes,
) -> bytes:
    """Check and decrypt a blob from :func:`seal`; :class:`SealError` says which check failed.

    Checked in order: the blob's length and version, that its header names the expected sender,
    receiver and context, then the AES-GCM authentication (which fails when any byte changed, or
    when the blob was not sealed by the holder of ``sender_public``'s key for ``receiver_key``).
    """
    _check_id("sender", sender_id)
    _check_id("receiver", receiver_id)
    blob = bytes(blob)
    context = bytes(context)
    if len(blob) < _FIXED.size:
        raise SealError(f"blob too short ({len(blob)} bytes) to hold a seal header")
    version, claimed_sender, claimed_receiver, ephemeral_public, context_length = _FIXED.unpack_from(blob)
    if version != VERSION:
        raise SealError(f"unsupported seal version {version} (expected {VERSION})")
    if claimed_sender != sender_id:
        raise SealError(f"blob is from sender {claimed_sender}, expected sender {sender_id}")
    if claimed_receiver != receiver_id:
        raise SealError(f"blob is for receiver {claimed_receiver}, not receiver {receiver_id}")
    header_end = _FIXED.size + context_length
    if len(blob) < header_end + NONCE_BYTES + TAG_BYTES:
        raise SealError("blob truncated: shorter than its header, nonce and authentication tag")
    if blob[_FIXED.size : header_end] != context:
        raise SealError("blob was sealed for another context (another run, round or purpose)")
    header = blob[:header_end]
    nonce = blob[header_end : header_end + NONCE_BYTES]
    ciphertext = blob[header_end + NONCE_BYTES :]
    try:
        to_receiver = receiver_key.exchange(X25519PublicKey.from_public_bytes(ephemeral_public))
        static = receiver_key.exchange(sender_public)
    except ValueError as e:
        raise SealError("blob's ephemeral key or the pinned sender key is a low-order point") from e
    key = _derive(to_receiver, static, ephemeral_public, sender_id, receiver_id, context)
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, header)
    except InvalidTag as e:
        raise SealError(
            "authentication failed: the blob was altered, or not sealed by the pinned sender for this receiver"
        ) from e


def _derive(
    to_receiver: bytes, static: bytes, ephemeral_public: bytes, sender_id: int, receiver_id: int, context: bytes
) -> bytes:
    info = LABEL + struct.pack(">III", sender_id, receiver_id, len(context)) + context
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=ephemeral_public, info=info).derive(
        to_receiver + static
    )


def _check_id(role: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ID:
        raise SealError(f"{role} id {value!r}: expected an integer from 0 to {MAX_ID}")
