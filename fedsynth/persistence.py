"""Numbered per-round files written atomically: the storage under hospital stores and server
checkpoints.

Each save writes a temporary file and renames it, so a process killed mid-write leaves the
previous round readable; only the newest ``keep`` rounds are kept.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch


class RoundFiles:
    """``<prefix>NNNNN.pt`` files in ``directory``, one per round."""

    def __init__(self, directory: str | Path, prefix: str, keep: int) -> None:
        self.directory = Path(directory)
        self.prefix = prefix
        self.keep = keep
        self._pattern = re.compile(rf"^{re.escape(prefix)}(\d{{5}})\.pt$")

    def rounds(self) -> list[int]:
        """Rounds with a saved file, ascending."""
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
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.path(server_round)
        tmp = target.with_suffix(".tmp")
        torch.save(payload, tmp)
        os.replace(tmp, target)
        for old in self.rounds()[: -self.keep]:
            self.path(old).unlink(missing_ok=True)
        return target

    def load(self, server_round: int) -> Any:
        return torch.load(self.path(server_round), map_location="cpu", weights_only=False)
