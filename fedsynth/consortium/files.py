"""Writing key and certificate files safely: private files are born 0600, nothing is overwritten silently.

A private key must never exist on disk, even for an instant, with wider permissions than its owner's
(so the file is created with mode 0600 by ``os.open``, never chmod-ed afterwards), and a key that
already exists may be the only copy of a hospital's identity (so replacing it needs an explicit
``overwrite=True``). Replacement goes through a fresh 0600 temporary file in the same folder and an
atomic rename, so an interrupted write never leaves a half-written key under the final name.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from fedsynth.errors import FedsynthError

#: Mode of private key files: read/write for the owner only.
PRIVATE_MODE = 0o600
#: Mode of public files (certificates, public keys, the manifest).
PUBLIC_MODE = 0o644


class ExistingKeyFileError(FedsynthError):
    """A key, certificate or manifest file would be overwritten without ``overwrite=True``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(
            f"{path} already exists: refusing to overwrite it (remove it first, or ask to overwrite: "
            "overwrite=True in Python, --force on the command line)"
        )


def ensure_absent(paths: Iterable[Path], *, overwrite: bool) -> None:
    """Raise :class:`ExistingKeyFileError` for the first of ``paths`` that exists, unless ``overwrite``.

    Called before anything is generated, so a refusal never leaves half of a key set written.
    """
    if overwrite:
        return
    for path in paths:
        if path.exists() or path.is_symlink():
            raise ExistingKeyFileError(path)


def write_private(path: Path, data: bytes, *, overwrite: bool = False) -> Path:
    """Write a private key file, created with mode 0600 (never wider, whatever existed before)."""
    return _write(path, data, PRIVATE_MODE, overwrite=overwrite)


def write_public(path: Path, data: bytes, *, overwrite: bool = False) -> Path:
    """Write a public file (certificate, public key, manifest) with mode 0644, same overwrite rule."""
    return _write(path, data, PUBLIC_MODE, overwrite=overwrite)


def _write(path: Path, data: bytes, mode: int, *, overwrite: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    if not overwrite:
        try:
            fd = os.open(path, flags, mode)
        except FileExistsError as e:
            raise ExistingKeyFileError(path) from e
        _fill(fd, path, data)
        return path
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temporary, flags, mode)
    _fill(fd, temporary, data)
    try:
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def _fill(fd: int, path: Path, data: bytes) -> None:
    """Write ``data`` to the freshly created ``fd``; on failure remove the partial file."""
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
