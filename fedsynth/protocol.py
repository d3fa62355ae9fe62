"""What the server asks of a hospital and what the hospital answers, free of any Flower type.

The Flower apps translate these to and from Messages at one serialization point
(:mod:`fedsynth.federation.wire`); a Flower-free runner can pass them directly.
"""

from __future__ import annotations

import hashlib
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
    merge_params: dict = field(default_factory=dict)
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


def instruction_digest(instruction: RoundInstruction) -> str:
    """A fingerprint of everything an instruction asks for (fields and array bytes).

    A hospital that receives an instruction it has already answered (the server crashed after the
    hospital replied and resumed) recognises it by this digest and re-sends its stored reply: no
    new computation on patient data, so nothing new to account for.
    """
    h = hashlib.sha256()
    head = (
        instruction.server_round,
        instruction.phase,
        instruction.merge_rule,
        sorted(instruction.merge_params.items()),
        instruction.own_weight,
        [w for _, w in instruction.merge or []],
    )
    h.update(repr(head).encode())
    groups = [instruction.weights or {}] + [arrays for arrays, _ in instruction.merge or []]
    for arrays in groups:
        h.update(b"|group|")
        for name in sorted(arrays):
            value = np.ascontiguousarray(arrays[name])
            h.update(f"{name}:{value.dtype}:{value.shape}".encode())
            h.update(value.tobytes())
    return h.hexdigest()


def reply_to_dict(reply: HospitalReply) -> dict:
    return {
        "hospital_id": reply.hospital_id,
        "server_round": reply.server_round,
        "num_examples": reply.num_examples,
        "weights": reply.weights,
        "metrics": dict(reply.metrics),
        "ledger": reply.ledger,
        "refused": reply.refused,
    }


def reply_from_dict(d: dict) -> HospitalReply:
    return HospitalReply(**d)
