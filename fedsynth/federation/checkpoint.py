"""Server checkpoints: what the server needs to continue a run after a crash.

After every round the coordinator saves the round number, the strategy's state (global model,
ring models, ...) and the ledgers it has received. Files are written atomically, one per round,
so a process killed at any moment leaves the previous checkpoint readable.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from fedsynth.privacy.ledger import PrivacyLedger

_NAME = re.compile(r"^round-(\d{5})\.pt$")


class ServerCheckpoint:
    """Round checkpoints in ``directory`` (``round-NNNNN.pt``), keeping the newest ``keep``."""

    def __init__(self, directory: str | Path, keep: int = 3) -> None:
        self.directory = Path(directory)
        self.keep = keep

    def rounds(self) -> list[int]:
        if not self.directory.is_dir():
            return []
        return sorted(int(m.group(1)) for m in (_NAME.match(p.name) for p in self.directory.iterdir()) if m)

    def save(self, server_round: int, strategy_state: dict, ledgers: dict[int, PrivacyLedger]) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.directory / f"round-{server_round:05d}.pt"
        tmp = target.with_suffix(".tmp")
        payload = {
            "round": server_round,
            "strategy": strategy_state,
            "ledgers": {hid: ledger.to_dict() for hid, ledger in ledgers.items()},
        }
        torch.save(payload, tmp)
        os.replace(tmp, target)
        for old in self.rounds()[: -self.keep]:
            (self.directory / f"round-{old:05d}.pt").unlink(missing_ok=True)
        return target

    def latest(self) -> tuple[int, dict, dict[int, PrivacyLedger]] | None:
        """(round, strategy state, ledgers) of the newest checkpoint, or None."""
        rounds = self.rounds()
        if not rounds:
            return None
        payload = torch.load(self.directory / f"round-{rounds[-1]:05d}.pt", map_location="cpu", weights_only=False)
        ledgers = {int(h): PrivacyLedger.from_dict(d) for h, d in payload["ledgers"].items()}
        return int(payload["round"]), payload["strategy"], ledgers
