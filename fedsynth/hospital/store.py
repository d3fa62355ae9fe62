"""A hospital's state on its own disk, one file per finished round.

Files are written atomically (temporary file + rename), so a process killed mid-write leaves the
previous round intact. A few recent rounds are kept so that a server that resumes from an earlier
round finds the matching hospital state.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

_NAME = re.compile(r"^state-r(\d{5})\.pt$")


class HospitalStore:
    """Reads and writes ``state-rNNNNN.pt`` files in one hospital's state directory."""

    def __init__(self, directory: str | Path, keep: int = 4) -> None:
        self.directory = Path(directory)
        self.keep = keep

    def rounds(self) -> list[int]:
        """Rounds with a saved state, ascending."""
        if not self.directory.is_dir():
            return []
        found = (_NAME.match(p.name) for p in self.directory.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def latest_round(self, before: int | None = None) -> int | None:
        """The newest saved round (strictly before ``before`` when given)."""
        rounds = [r for r in self.rounds() if before is None or r < before]
        return rounds[-1] if rounds else None

    def path(self, server_round: int) -> Path:
        return self.directory / f"state-r{server_round:05d}.pt"

    def save(self, state: dict, server_round: int) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.path(server_round)
        tmp = target.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, target)
        for old in self.rounds()[: -self.keep]:
            self.path(old).unlink(missing_ok=True)
        return target

    def load(self, server_round: int) -> dict:
        return torch.load(self.path(server_round), map_location="cpu", weights_only=False)
