"""Star FedAvg: every hospital trains from the global model; the server averages by examples."""

from __future__ import annotations

from fedsynth.federation.aggregation import weighted_mean
from fedsynth.federation.strategy import RoundOutcome, RoundPlan, Send, Strategy
from fedsynth.protocol import RoundInstruction


class FedAvg(Strategy):
    """FedAvg (McMahan et al. 2017) on the arrays each phase trains, weighted by ``num_examples``."""

    name = "fedavg"

    def run_round(self, server_round: int, phase: str, hospitals: list[int]) -> RoundPlan:
        sends = [Send(h, RoundInstruction(server_round, phase, weights=dict(self.weights))) for h in hospitals]
        replies = yield sends
        outcome = RoundOutcome()
        answered = {r.hospital_id for r in replies}
        outcome.missing = [h for h in hospitals if h not in answered]
        updates = []
        for reply in replies:
            if reply.refused is not None:
                outcome.refused[reply.hospital_id] = reply.refused
            elif reply.weights is not None:
                outcome.accepted.append(reply.hospital_id)
                updates.append((reply.weights, float(reply.num_examples)))
        if len(updates) >= self.min_hospitals:
            self.weights.update(weighted_mean(updates))
            outcome.metrics["aggregated"] = 1.0
        else:
            outcome.metrics["aggregated"] = 0.0
        outcome.metrics["hospitals_accepted"] = float(len(updates))
        return outcome
