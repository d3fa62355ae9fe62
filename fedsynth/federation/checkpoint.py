"""Server checkpoints: what the server needs to continue a run after a crash.

After every round the coordinator saves the round number, the strategy's state (global model,
ring models, ...) and what hospitals reported (ledgers, plans, refusals) in
``server/round-NNNNN.pt`` (checksummed: a damaged newest checkpoint is skipped, with a message, in
favour of the previous one).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fedsynth.persistence import RoundFiles
from fedsynth.privacy.ledger import PrivacyLedger

if TYPE_CHECKING:
    from fedsynth.federation.coordinator import FederationResult


class ServerCheckpoint:
    """Round checkpoints in ``directory``, keeping the newest ``keep``."""

    def __init__(self, directory: str | Path, keep: int = 3) -> None:
        self.files = RoundFiles(directory, "round-", keep)

    def save(self, server_round: int, strategy_state: dict, result: FederationResult) -> Path:
        payload = {
            "round": server_round,
            "strategy": strategy_state,
            "ledgers": {hid: ledger.to_dict() for hid, ledger in result.ledgers.items()},
            "plans": dict(result.plans),
            "refusals": dict(result.refusals),
        }
        return self.files.save(payload, server_round)

    def latest(self) -> tuple[int, dict, FederationResult] | None:
        """(round, strategy state, reported ledgers/plans/refusals) of the newest checkpoint that
        verifies, or None."""
        from fedsynth.federation.coordinator import FederationResult

        saved = self.files.latest_valid()
        if saved is None:
            return None
        _, payload = saved
        result = FederationResult(
            ledgers={int(h): PrivacyLedger.from_dict(d) for h, d in payload["ledgers"].items()},
            plans={int(h): p for h, p in payload.get("plans", {}).items()},
            refusals={int(h): r for h, r in payload.get("refusals", {}).items()},
            rounds_run=int(payload["round"]),
        )
        return int(payload["round"]), payload["strategy"], result
