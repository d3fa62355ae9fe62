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

Sealed (``federation.ring_sealed``): a hospital replies with its full model sealed for each of its
pinned neighbours (:mod:`fedsynth.hospital.sealed_ring`) instead of weights. The ring keeps the
newest blob per (sender, receiver) and relays the one addressed to the next hospital, with the
sender and the round it was trained in; it never sends weights of its own (every hospital starts
from the job's seeded initialization). A skip reaches only a hospital the sender pinned: with no
blob for the receiver, the receiver trains on its own model. Since the server cannot read the
blobs, its final model comes from a release after the last round (:meth:`Ring.release`): each
hospital that trained sends its final model in plaintext (a DP output it already paid for), and
``average`` / ``last`` apply to those.
"""

from __future__ import annotations

from fedsynth.aggregation import weighted_mean
from fedsynth.federation.strategy import RoundOutcome, RoundPlan, Send, Strategy
from fedsynth.protocol import RELEASE, Arrays, HospitalReply, RoundInstruction, SealedModel


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
        sealed: bool = False,
    ) -> None:
        super().__init__(initial_weights, min_hospitals, rule, rule_params)
        if schedule not in ("sequential", "synchronous"):
            raise ValueError(f"ring schedule {schedule!r}: expected 'sequential' or 'synchronous'")
        self.order = list(order or [])
        self.schedule = schedule
        self.final = final
        self.sealed = sealed
        #: Plaintext: each hospital's last model. Sealed: each hospital's released final model.
        self.models: dict[int, Arrays] = {}
        self.examples: dict[int, int] = {}
        self.last_trained: int | None = None
        #: Sealed: the newest blob of each sender, by receiver: {sender: {receiver: (round, blob)}}.
        self.blobs: dict[int, dict[int, tuple[int, bytes]]] = {}

    # -- instructions ----------------------------------------------------------------------------
    def _ring(self, hospitals: list[int]) -> list[int]:
        order = self.order or sorted(hospitals)
        return [h for h in order if h in hospitals]

    def _holds(self, source: int, hospital: int) -> bool:
        """Whether the ring can relay a model of ``source`` to ``hospital``."""
        if self.sealed:
            return hospital in self.blobs.get(source, {})
        return source in self.models

    def _instruction(self, server_round: int, phase: str, hospital: int, source: int | None) -> Send:
        if self.sealed:
            return self._sealed_instruction(server_round, phase, hospital, source)
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

    def _sealed_instruction(self, server_round: int, phase: str, hospital: int, source: int | None) -> Send:
        """No weights from the server; the source's blob addressed to ``hospital``, if it has one."""
        sealed = None
        if source is not None and source != hospital and self._holds(source, hospital):
            sender_round, blob = self.blobs[source][hospital]
            sealed = SealedModel(source, sender_round, blob, float(self.examples.get(source, 1)))
        instruction = RoundInstruction(
            server_round,
            phase,
            merge_rule=self.rule,
            merge_params=dict(self.rule_params),
            own_weight=float(self.examples.get(hospital, 1)),
            sealed=sealed,
        )
        return Send(hospital, instruction, source=source if sealed else None)

    def _record(self, reply: HospitalReply, outcome: RoundOutcome) -> bool:
        hid = reply.hospital_id
        if reply.refused is not None:
            outcome.refused[hid] = reply.refused
            return False
        if self.sealed:
            if not reply.sealed:
                return False
            self.blobs[hid] = {receiver: (reply.server_round, blob) for receiver, blob in reply.sealed.items()}
        elif reply.weights is None:
            return False
        else:
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
                        if self._holds(ring[(i - k) % len(ring)], hospital)
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

    def release(self, server_round: int, hospitals: list[int]) -> RoundPlan | None:
        """Sealed only: ask every hospital that trained for its final model (see the module docstring)."""
        holders = [h for h in self._ring(hospitals) if h in self.blobs]
        if not self.sealed or not holders:
            return None
        return self._release(server_round, holders)

    def _release(self, server_round: int, holders: list[int]) -> RoundPlan:
        replies = yield [Send(h, RoundInstruction(server_round, RELEASE)) for h in holders]
        outcome = RoundOutcome()
        for reply in replies:
            hid = reply.hospital_id
            if reply.refused is not None:
                outcome.refused[hid] = reply.refused
            elif reply.weights is not None:
                self.models[hid] = dict(reply.weights)
                if reply.num_examples is not None:
                    self.examples[hid] = reply.num_examples
                outcome.accepted.append(hid)
        answered = {r.hospital_id for r in replies}
        outcome.missing = [h for h in holders if h not in answered]
        return outcome

    # -- results ---------------------------------------------------------------------------------
    def _last_model(self) -> bool:
        return self.final == "last" and self.last_trained is not None and self.last_trained in self.models

    def final_weights(self) -> Arrays:
        if not self.models:
            return self.weights
        if self._last_model():
            assert self.last_trained is not None
            return self.models[self.last_trained]
        ids = sorted(self.models)
        return weighted_mean([(self.models[h], float(self.examples.get(h, 1))) for h in ids])

    def describe_final(self) -> str:
        if self.sealed and not self.models:
            return "ring (sealed): no hospital released its final model; the initial model"
        if self.sealed:
            which = (
                f"the released model of the hospital that trained last (hospital {self.last_trained})"
                if self._last_model()
                else f"average of the final models released by hospitals {sorted(self.models)}, weighted by examples"
            )
            return f"ring (sealed): {which}"
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
            "blobs": {s: {r: (rnd, bytes(b)) for r, (rnd, b) in to.items()} for s, to in self.blobs.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        self.weights = dict(state["weights"])
        self.models = {int(k): dict(v) for k, v in state["models"].items()}
        self.examples = {int(k): int(v) for k, v in state["examples"].items()}
        self.last_trained = state["last_trained"]
        self.blobs = {
            int(s): {int(r): (int(rnd), bytes(b)) for r, (rnd, b) in to.items()}
            for s, to in state.get("blobs", {}).items()
        }
