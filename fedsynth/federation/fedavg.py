"""Star topology: every hospital trains from the global model; the server aggregates.

With ``rule = "mean"`` this is FedAvg (McMahan et al. 2017), weighted by examples where every
hospital declares its record count public and uniform otherwise; ``median``,
``trimmed_mean`` and ``krum`` give the robust variants (see :mod:`fedsynth.aggregation`).
"""

from __future__ import annotations

from fedsynth.aggregation import aggregate, sum_updates
from fedsynth.errors import ConfigError
from fedsynth.federation.strategy import RoundOutcome, RoundPlan, Send, Strategy
from fedsynth.models.gaussian import GAUSSIAN_PHASES
from fedsynth.protocol import RoundInstruction


class FedAvg(Strategy):
    """Star aggregation of the arrays each phase trains."""

    name = "fedavg"

    def run_round(self, server_round: int, phase: str, hospitals: list[int]) -> RoundPlan:
        sends = [Send(h, RoundInstruction(server_round, phase, weights=dict(self.weights))) for h in hospitals]
        replies = yield sends
        outcome = RoundOutcome()
        answered = {r.hospital_id for r in replies}
        outcome.missing = [h for h in hospitals if h not in answered]
        usable = [
            r for r in sorted(replies, key=lambda r: r.hospital_id) if r.refused is None and r.weights is not None
        ]
        for reply in replies:
            if reply.refused is not None:
                outcome.refused[reply.hospital_id] = reply.refused
        # Weight by record counts only when every hospital declared its count public; otherwise
        # every update counts the same (a private count never leaves its site).
        counted = all(r.num_examples is not None for r in usable)
        updates = []
        for reply in usable:  # order-independent result
            outcome.accepted.append(reply.hospital_id)
            updates.append((reply.weights, float(reply.num_examples) if counted else 1.0))
        enough = len(updates) >= self.min_hospitals
        if enough and phase in GAUSSIAN_PHASES:
            # The Gaussian model's releases are noisy sums over each site's records: the model
            # needs their total, whatever the aggregation rule of the DP-SGD phases.
            self.weights.update(sum_updates(updates))
        elif enough:
            try:
                self.weights.update(aggregate(self.rule, updates, **self.rule_params))
            except ConfigError as e:  # e.g. too few updates left for Krum after failures
                outcome.metrics["aggregation_error"] = str(e)  # type: ignore[assignment]
                enough = False
        outcome.metrics["aggregated"] = 1.0 if enough else 0.0
        outcome.metrics["hospitals_accepted"] = float(len(updates))
        return outcome
