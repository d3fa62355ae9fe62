"""Server checkpoints: what the server needs to continue a run after a crash.

After every round the coordinator saves the round number, the strategy's state (global model,
ring models, ...) and the ledgers it has received (``server/round-NNNNN.pt``).
"""

from __future__ import annotations

from pathlib import Path

from fedsynth.persistence import RoundFiles
from fedsynth.privacy.ledger import PrivacyLedger


class ServerCheckpoint:
    """Round checkpoints in ``directory``, keeping the newest ``keep``."""

    def __init__(self, directory: str | Path, keep: int = 3) -> None:
        self.files = RoundFiles(directory, "round-", keep)

    def save(self, server_round: int, strategy_state: dict, ledgers: dict[int, PrivacyLedger]) -> Path:
        payload = {
            "round": server_round,
            "strategy": strategy_state,
            "ledgers": {hid: ledger.to_dict() for hid, ledger in ledgers.items()},
        }
        return self.files.save(payload, server_round)

    def latest(self) -> tuple[int, dict, dict[int, PrivacyLedger]] | None:
        """(round, strategy state, ledgers) of the newest checkpoint, or None."""
        newest = self.files.latest_round()
        if newest is None:
            return None
        payload = self.files.load(newest)
        ledgers = {int(h): PrivacyLedger.from_dict(d) for h, d in payload["ledgers"].items()}
        return int(payload["round"]), payload["strategy"], ledgers
