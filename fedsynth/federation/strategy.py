"""The strategy plugin interface: topology and aggregation, on plain named arrays.

A strategy runs one round as a generator of *waves*: it yields the instructions to send at once,
receives the replies of that wave, and may yield further waves (a ring passes weights on hospital
by hospital; a star needs one wave). The coordinator drives any strategy the same way, so star and
ring need no special case anywhere else; a malicious server can wrap a strategy and rewrite what
it yields or read what it receives.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Generator
from dataclasses import dataclass, field

from fedsynth.protocol import Arrays, HospitalReply, RoundInstruction


@dataclass(frozen=True)
class Send:
    """One instruction for one hospital; ``source`` names the hospital whose model it relays (ring)."""

    hospital_id: int
    instruction: RoundInstruction
    source: int | None = None


@dataclass
class RoundOutcome:
    """What a strategy reports about a finished round."""

    accepted: list[int] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)
    missing: list[int] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    #: Hospitals the topology routed around (ring: a dead successor skipped).
    skipped: list[int] = field(default_factory=list)


RoundPlan = Generator[list[Send], list[HospitalReply], RoundOutcome]


class Strategy(ABC):
    """Base class of strategy plugins (registered by name in :mod:`fedsynth.federation.registry`)."""

    name: str = ""

    def __init__(
        self, initial_weights: Arrays, min_hospitals: int = 1, rule: str = "mean", rule_params: dict | None = None
    ) -> None:
        self.weights: Arrays = dict(initial_weights)
        self.min_hospitals = min_hospitals
        self.rule = rule
        self.rule_params = dict(rule_params or {})

    @abstractmethod
    def run_round(self, server_round: int, phase: str, hospitals: list[int]) -> RoundPlan:
        """Yield waves of instructions, receive their replies, return the round's outcome."""

    def release(self, server_round: int, hospitals: list[int]) -> RoundPlan | None:
        """A last wave after the final round (``server_round`` = rounds + 1) that collects what the
        strategy cannot compute itself, e.g. each hospital's final model in a sealed ring, where the
        server never read a model; None (the default) when there is nothing to collect."""
        return None

    def final_weights(self) -> Arrays:
        """The single model the run's summary scores."""
        return self.weights

    def describe_final(self) -> str:
        return "the global model after the last round"

    def state_dict(self) -> dict:
        """What the server must persist to resume this strategy after a crash."""
        return {"weights": self.weights}

    def load_state_dict(self, state: dict) -> None:
        self.weights = dict(state["weights"])
