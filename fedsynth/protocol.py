"""What the server asks of a hospital and what the hospital answers, free of any Flower type.

The Flower apps translate these to and from Messages at one serialization point
(:mod:`fedsynth.federation.wire`); a Flower-free runner can pass them directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class RoundInstruction:
    """One round's work for one hospital.

    ``weights``: named arrays to load before training (None keeps the hospital's own).
    ``phase``: "autoencoder" (stage 1) or "gan" (stage 2).
    ``merge``: optional peer weights to merge with the hospital's own before training (ring),
    with the aggregation rule to use and the weight of each side.
    """

    server_round: int
    phase: str
    weights: Arrays | None = None
    merge: list[tuple[Arrays, float]] | None = None
    merge_rule: str = "mean"
    own_weight: float = 1.0


@dataclass
class HospitalReply:
    """A hospital's answer to a :class:`RoundInstruction`."""

    hospital_id: int
    server_round: int
    num_examples: int
    weights: Arrays | None
    metrics: dict[str, float] = field(default_factory=dict)
    ledger: dict = field(default_factory=dict)
    refused: str | None = None

    @property
    def accepted(self) -> bool:
        return self.refused is None
