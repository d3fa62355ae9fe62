"""Numbered per-round files, written atomically and checksummed: the storage under hospital state
and server checkpoints.

Each file is one header line ``FEDSYNTH sha256=<hex>`` followed by the ``torch.save`` payload. A
save writes a temporary file, flushes it to disk and renames it, so a process killed mid-write
leaves the previous round readable. A load verifies the checksum: a damaged or truncated file is
detected before anything is unpickled, and :meth:`RoundFiles.latest_valid` falls back to the
newest older round that verifies, saying which file it skipped and why. Only the newest ``keep``
rounds are kept (the privacy ledger is not stored here and is never pruned).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from fedsynth.errors import FedsynthError

log = logging.getLogger("fedsynth.persistence")

_MAGIC = b"FEDSYNTH sha256="


class DamagedFile(FedsynthError):
    """A state or checkpoint file failed its checksum or could not be read."""


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, fsync'd, then renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # pragma: no cover - platforms without directory fsync
        pass


def dump_checked(payload: Any) -> bytes:
    """``payload`` serialized with a checksum header."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    body = buffer.getvalue()
    return _MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n" + body


def load_checked(path: Path) -> Any:
    """The payload of a file written with :func:`dump_checked`; :class:`DamagedFile` when it fails."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DamagedFile(f"{path}: cannot be read ({e})") from e
    head, sep, body = raw.partition(b"\n")
    if not head.startswith(_MAGIC) or not sep:
        raise DamagedFile(f"{path}: no checksum header (truncated or not a fedsynth state file)")
    if hashlib.sha256(body).hexdigest().encode() != head[len(_MAGIC) :]:
        raise DamagedFile(f"{path}: checksum mismatch (the file is damaged)")
    try:
        return torch.load(io.BytesIO(body), map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the same: unusable
        raise DamagedFile(f"{path}: verified but cannot be loaded ({type(e).__name__}: {e})") from e


class RoundFiles:
    """``<prefix>NNNNN.pt`` files in ``directory``, one per round."""

    def __init__(self, directory: str | Path, prefix: str, keep: int) -> None:
        self.directory = Path(directory)
        self.prefix = prefix
        self.keep = keep
        self._pattern = re.compile(rf"^{re.escape(prefix)}(\d{{5}})\.pt$")

    def rounds(self) -> list[int]:
        """Rounds with a saved file, ascending (whether or not the file verifies)."""
        if not self.directory.is_dir():
            return []
        found = (self._pattern.match(p.name) for p in self.directory.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def latest_round(self, before: int | None = None) -> int | None:
        """The newest saved round (strictly before ``before`` when given)."""
        rounds = [r for r in self.rounds() if before is None or r < before]
        return rounds[-1] if rounds else None

    def path(self, server_round: int) -> Path:
        return self.directory / f"{self.prefix}{server_round:05d}.pt"

    def save(self, payload: Any, server_round: int) -> Path:
        target = self.path(server_round)
        write_atomic(target, dump_checked(payload))
        for old in self.rounds()[: -self.keep]:
            self.path(old).unlink(missing_ok=True)
        return target

    def load(self, server_round: int) -> Any:
        """The payload of ``server_round``; :class:`DamagedFile` when it does not verify."""
        return load_checked(self.path(server_round))

    def latest_valid(
        self, before: int | None = None, warn: Callable[[str], None] | None = None
    ) -> tuple[int, Any] | None:
        """(round, payload) of the newest round (before ``before``) whose file verifies.

        A damaged newer file is skipped with a message (to ``warn`` and the log), never silently.
        """
        for server_round in reversed([r for r in self.rounds() if before is None or r < before]):
            try:
                return server_round, self.load(server_round)
            except DamagedFile as e:
                message = f"{e}; using the previous saved round instead"
                log.warning(message)
                if warn is not None:
                    warn(message)
        return None
