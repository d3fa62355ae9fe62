"""What the server asks of a hospital and what the hospital answers, free of any Flower type.

The Flower apps translate these to and from Messages at one serialization point
(:mod:`fedsynth.federation.wire`); a Flower-free runner can pass them directly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

import numpy as np

from fedsynth.config.loading import build_dataclass, to_nested
from fedsynth.config.schema import ModelConfig, PrivacyConfig, TrainConfig
from fedsynth.site.policy import BUILTIN_ARCHITECTURE

Arrays = dict[str, np.ndarray]

#: The phase of the instruction after a sealed ring's last round: "send your final model". The
#: hospital trains nothing and charges nothing (the model is a DP output it already paid for).
RELEASE = "release"


@dataclass(frozen=True)
class Job:
    """The server's description of a run, sent with every instruction: public, and a *request*.

    ``run_id`` keys the hospital's per-run state (two runs never share state); ``seed`` seeds
    model initialization (and, in reproducible-noise studies only, the DP noise); ``schema_digest``
    is the fingerprint of the consortium's public schema, which each hospital checks its own data
    against; ``privacy`` is what the server asks for, which each hospital holds to its own policy.
    ``ring_sealed`` asks the hospitals to seal every ring model end to end for their pinned
    neighbours (each site decides with its own ``[ring]`` table whether it can, or insists on it).
    """

    run_id: str
    seed: int
    model: ModelConfig
    train: TrainConfig
    privacy: PrivacyConfig
    schema_digest: str
    architecture: str = BUILTIN_ARCHITECTURE
    #: Options of the architecture (e.g. ``{"bins": 10}`` for an imprint block).
    architecture_options: dict = field(default_factory=dict)
    #: Fingerprint of the application code the server runs the job with (see fedsynth.site.code).
    code_digest: str = ""
    #: Ring models travel sealed between neighbours; the server relays ciphertext only.
    ring_sealed: bool = False

    def to_json(self) -> str:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for key in ("model", "train", "privacy"):
            data[key] = to_nested(data[key])
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Job:
        data = json.loads(text)
        return cls(
            run_id=str(data["run_id"]),
            seed=int(data["seed"]),
            model=build_dataclass(ModelConfig, data["model"], "model."),
            train=build_dataclass(TrainConfig, data["train"], "train."),
            privacy=build_dataclass(PrivacyConfig, data["privacy"], "privacy."),
            schema_digest=str(data["schema_digest"]),
            architecture=str(data["architecture"]),
            architecture_options=dict(data.get("architecture_options", {})),
            code_digest=str(data.get("code_digest", "")),
            ring_sealed=bool(data.get("ring_sealed", False)),
        )


@dataclass(frozen=True)
class SealedModel:
    """A peer's full model, sealed by that peer for one receiver (sealed ring).

    ``blob`` is the output of :func:`fedsynth.consortium.sealing.seal` over the peer's weights
    (numpy ``savez`` bytes); only the receiver can open it, only the pinned sender can make it, and
    its context binds the run and ``sender_round``, the round in which the sender trained it.
    ``weight`` is the merge weight of the sender's side (as ``merge`` carries it in plaintext).
    """

    sender_id: int
    sender_round: int
    blob: bytes
    weight: float = 1.0


@dataclass(frozen=True)
class RoundInstruction:
    """One round's work for one hospital.

    ``job``: the run this round belongs to (see :class:`Job`); strategies leave it empty and the
    coordinator attaches the run's job to every instruction it sends.
    ``weights``: named arrays to load before training (None keeps the hospital's own).
    ``phase``: "autoencoder" (stage 1) or "gan" (stage 2), a Gaussian release, or
    :data:`RELEASE` (send the final model, after a sealed ring's last round).
    ``merge``: optional peer weights to merge with the hospital's own before training (ring),
    with the aggregation rule to use and the weight of each side.
    ``sealed``: in a sealed ring, the peer model to merge, sealed for this hospital (instead of
    ``merge``); the hospital opens it and merges it as it would merge ``merge``.
    ``ledger_known`` / ``ledger_digest``: how many of the site's ledger events the server already
    holds, and a digest of them (:func:`fedsynth.federation.ledger_delta.history_digest`); the
    reply then carries only the events after those (wire encoding only, never part of the work).
    ``transfer_precision``: how weights travel on the wire, both ways ("float32" exact, "float16",
    "int8"; see :mod:`fedsynth.federation.packing`).
    """

    server_round: int
    phase: str
    weights: Arrays | None = None
    merge: list[tuple[Arrays, float]] | None = None
    merge_rule: str = "mean"
    merge_params: dict = field(default_factory=dict)
    own_weight: float = 1.0
    job: Job | None = None
    sealed: SealedModel | None = None
    ledger_known: int = 0
    ledger_digest: str = ""
    transfer_precision: str = "float32"


@dataclass
class HospitalReply:
    """A hospital's answer to a :class:`RoundInstruction`: DP outputs and declared public facts only.

    ``weights``: the trained networks (DP-SGD outputs, or post-processing of them).
    ``num_examples``: the record count when the site declares it public, else None.
    ``metrics``: values computed without touching real records (epsilon from the ledger, step
    counts); losses and accuracies on real records stay in the site's own log.
    ``ledger``: the site's full mechanism history; ``plan``: the privacy plan the site ran (or
    would have run) for this run; ``refused``: the reason when the site refused.
    ``sealed``: in a sealed ring, the hospital's full model sealed for each pinned neighbour (by
    receiver id), sent instead of ``weights``.
    ``ledger_base``: 0 when ``ledger`` is the full history; after the wire, the number of leading
    events left out because the server already holds them (the coordinator puts them back before
    anything reads the ledger; see :mod:`fedsynth.federation.ledger_delta`).
    """

    hospital_id: int
    server_round: int
    num_examples: int | None
    weights: Arrays | None
    metrics: dict[str, float] = field(default_factory=dict)
    ledger: dict = field(default_factory=dict)
    plan: dict = field(default_factory=dict)
    refused: str | None = None
    sealed: dict[int, bytes] = field(default_factory=dict)
    ledger_base: int = 0

    @property
    def accepted(self) -> bool:
        return self.refused is None


def instruction_digest(instruction: RoundInstruction) -> str:
    """A fingerprint of everything an instruction asks for (fields and array bytes).

    A hospital that receives an instruction it has already answered (the server crashed after the
    hospital replied and resumed) recognises it by this digest and re-sends its stored reply: no
    new computation on patient data, so nothing new to account for. How the reply travels
    (``ledger_known``, ``ledger_digest``, ``transfer_precision``) is not part of the work asked.
    """
    h = hashlib.sha256()
    head = (
        instruction.job.to_json() if instruction.job is not None else None,
        instruction.server_round,
        instruction.phase,
        instruction.merge_rule,
        sorted(instruction.merge_params.items()),
        instruction.own_weight,
        [w for _, w in instruction.merge or []],
    )
    h.update(repr(head).encode())
    if instruction.sealed is not None:
        s = instruction.sealed
        h.update(f"|sealed|{s.sender_id}:{s.sender_round}:{s.weight!r}|".encode())
        h.update(s.blob)
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
        "plan": reply.plan,
        "refused": reply.refused,
        "sealed": dict(reply.sealed),
    }


def reply_from_dict(d: dict) -> HospitalReply:
    return HospitalReply(**d)
