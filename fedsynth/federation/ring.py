"""Ring topology: each hospital merges its predecessor's model with its own, trains, passes on.

Flower has no peer-to-peer links, so the server relays every model to the next hospital; each
hospital keeps its own model in its state. Two schedules:

- ``sequential``: one pass around the ring per round, one hospital at a time (cyclic weight
  transfer); hospital i starts from the model hospital i-1 finished moments before.
- ``synchronous``: every hospital receives its predecessor's model of the previous round at once
  (gossip-style); a round takes one wave.

A hospital that fails is skipped: its successor receives the model of the last live hospital
before it, and the outcome records the skip. The ring's single final model is either the average of
all hospitals' last models (``average``) or the model of the hospital that trained last (``last``).
"""

from __future__ import annotations

from fedsynth.aggregation import weighted_mean
from fedsynth.federation.strategy import RoundOutcome, RoundPlan, Send, Strategy
from fedsynth.protocol import Arrays, HospitalReply, RoundInstruction


class Ring(Strategy):
    """Ring strategy plugin (see module docstring)."""

    name = "ring"

    def __init__(
        self,
        initial_weights: Arrays,
        min_hospitals: int = 1,
        rule: str = "mean",
        rule_params: dict | None = None,
        *,
        order: list[int] | None = None,
        schedule: str = "sequential",
        final: str = "average",
    ) -> None:
        super().__init__(initial_weights, min_hospitals, rule, rule_params)
        if schedule not in ("sequential", "synchronous"):
            raise ValueError(f"ring schedule {schedule!r}: expected 'sequential' or 'synchronous'")
        self.order = list(order or [])
        self.schedule = schedule
        self.final = final
        self.models: dict[int, Arrays] = {}
        self.examples: dict[int, int] = {}
        self.last_trained: int | None = None

    # -- instructions ----------------------------------------------------------------------------
    def _ring(self, hospitals: list[int]) -> list[int]:
        order = self.order or sorted(hospitals)
        return [h for h in order if h in hospitals]

    def _instruction(self, server_round: int, phase: str, hospital: int, source: int | None) -> Send:
        weights = None if hospital in self.models else dict(self.weights)  # first contact: common start
        merge = None
        own_weight = float(self.examples.get(hospital, 1))
        if source is not None and source != hospital and source in self.models:
            merge = [(self.models[source], float(self.examples.get(source, 1)))]
        instruction = RoundInstruction(
            server_round,
            phase,
            weights=weights,
            merge=merge,
            merge_rule=self.rule,
            merge_params=dict(self.rule_params),
            own_weight=own_weight,
        )
        return Send(hospital, instruction, source=source if merge else None)

    def _record(self, reply: HospitalReply, outcome: RoundOutcome) -> bool:
        hid = reply.hospital_id
        if reply.refused is not None:
            outcome.refused[hid] = reply.refused
            return False
        if reply.weights is None:
            return False
        self.models[hid] = {**self.models.get(hid, self.weights), **reply.weights}
        if reply.num_examples is not None:  # a private record count weighs 1
            self.examples[hid] = reply.num_examples
        outcome.accepted.append(hid)
        return True

    # -- rounds ----------------------------------------------------------------------------------
    def run_round(self, server_round: int, phase: str, hospitals: list[int]) -> RoundPlan:
        ring = self._ring(hospitals)
        outcome = RoundOutcome()
        if self.schedule == "sequential":
            for hospital in ring:
                replies = yield [self._instruction(server_round, phase, hospital, self.last_trained)]
                mine = [r for r in replies if r.hospital_id == hospital]
                if mine and self._record(mine[0], outcome):
                    self.last_trained = hospital
                elif not mine:
                    outcome.missing.append(hospital)
                    outcome.skipped.append(hospital)
        else:
            sends = []
            for i, hospital in enumerate(ring):
                # Nearest earlier hospital (cyclically) that holds a model: dead ones are skipped.
                source = next(
                    (
                        ring[(i - k) % len(ring)]
                        for k in range(1, len(ring))
                        if ring[(i - k) % len(ring)] in self.models
                    ),
                    None,
                )
                sends.append(self._instruction(server_round, phase, hospital, source))
            replies = yield sends
            answered = {r.hospital_id for r in replies}
            for reply in sorted(replies, key=lambda r: r.hospital_id):
                if self._record(reply, outcome):
                    self.last_trained = reply.hospital_id
            outcome.missing = [h for h in ring if h not in answered]
            outcome.skipped = list(outcome.missing)
        outcome.metrics["aggregated"] = 1.0 if len(outcome.accepted) >= self.min_hospitals else 0.0
        outcome.metrics["hospitals_accepted"] = float(len(outcome.accepted))
        return outcome

    # -- results ---------------------------------------------------------------------------------
    def final_weights(self) -> Arrays:
        if not self.models:
            return self.weights
        if self.final == "last" and self.last_trained is not None:
            return self.models[self.last_trained]
        ids = sorted(self.models)
        return weighted_mean([(self.models[h], float(self.examples.get(h, 1))) for h in ids])

    def describe_final(self) -> str:
        if self.final == "last":
            return f"ring: the model of the hospital that trained last (hospital {self.last_trained})"
        return "ring: average of every hospital's last model, weighted by examples"

    def hospital_models(self) -> dict[int, Arrays]:
        return dict(self.models)

    def state_dict(self) -> dict:
        return {
            "weights": self.weights,
            "models": self.models,
            "examples": self.examples,
            "last_trained": self.last_trained,
        }

    def load_state_dict(self, state: dict) -> None:
        self.weights = dict(state["weights"])
        self.models = {int(k): dict(v) for k, v in state["models"].items()}
        self.examples = {int(k): int(v) for k, v in state["examples"].items()}
        self.last_trained = state["last_trained"]
