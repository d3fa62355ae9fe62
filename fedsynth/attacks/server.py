"""The malicious server: a strategy wrapper that plants imprints in what it sends and inverts what
comes back.

:class:`MaliciousServer` wraps any strategy (star or ring) the way a DP or logging wrapper would:
the inner strategy still decides topology and aggregation; the wrapper rewrites the weights of
every instruction of an attacked round (``weights-only``: imprint rows written into layers the
honest architecture has; ``code-shipping``: the imprint block of the shipped architecture) and,
when the replies arrive, inverts the difference between the weights a hospital returned and the
weights it was sent. Hospitals return *weights* after their own training (their optimizer, local
steps and DP noise), so the wrapper inverts exactly what a real server would see.

Reconstructions go to ``DIR/attack/`` of the run folder (one ``.npz`` per round, hospital and
target, and ``journal.jsonl``); scoring them needs the true records and belongs to whoever owns
those (the red-team audit of a simulation, :mod:`fedsynth.redteam.audit`).

The run plugs the wrapper in through :class:`AttackHook` (``run_federation(..., hook=...)``), so an
attack runs through Flower's simulation engine or the in-process engine exactly like a normal run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from fedsynth.attacks.imprint import (
    ImprintDesign,
    calibrate,
    equalize_columns,
    invert,
    mean_brightness_measurement,
    plant,
    random_measurement,
)
from fedsynth.config.schema import AttackConfig, RunConfig
from fedsynth.data.records import Dataset, Schema
from fedsynth.data.records_file import load_records
from fedsynth.errors import ConfigError
from fedsynth.federation.strategy import RoundPlan, Send, Strategy
from fedsynth.models.architectures import build_architecture
from fedsynth.models.generator import MultimodalGenerator, phase_networks
from fedsynth.models.imprint import IMPRINT_ARCHITECTURE
from fedsynth.models.table_autoencoder import TableCodec
from fedsynth.protocol import Arrays, HospitalReply, Job
from fedsynth.runfolder import RunFolder, write_json
from fedsynth.site.policy import BUILTIN_ARCHITECTURE

#: Column value of the imprint block's second layer, equal for every bin (the inversion needs
#: dL/dy_i equal across bins). It scales the gradient every row receives: at 1e-3 the per-record
#: update sat near the float32 resolution of the returned weights and about a third of lone
#: records came back with 1 - SSIM above 1e-3; at 0.1 they come back exact (measured on the phantom).
SECOND_LAYER_VALUE = 0.1


@dataclass(frozen=True)
class ImprintTarget:
    """One layer the server inverts: ``layer`` (a Linear, by parameter prefix) whose ``rows`` it
    plants (in ascending-threshold order), ``next_layer`` whose columns it equalizes, the phase that
    trains it, and the slope of the gate after it (0 for ReLU/SiLU, 0.2 for LeakyReLU(0.2))."""

    name: str
    layer: str
    next_layer: str
    rows: tuple[int, ...]
    phase: str
    negative_slope: float
    scale: float


def targets_for(attack: AttackConfig, schema: Schema, model: MultimodalGenerator) -> list[ImprintTarget]:
    """The layers a threat model plants and inverts (the honest control inverts the same layers as
    the weights-only server, unplanted)."""
    if attack.threat_model == "tamper":
        return []  # it alters relayed models; it inverts nothing
    if attack.threat_model == "code-shipping":
        return [
            ImprintTarget(
                "image",
                "autoencoder.image_encoder.imprint.first",
                "autoencoder.image_encoder.imprint.second",
                tuple(range(attack.bins)),
                "autoencoder",
                0.0,
                1.0,
            )
        ]
    targets = []
    if schema.has_table:
        hidden = model.autoencoder.table_encoder.net[0].out_features
        targets.append(
            ImprintTarget(
                "table",
                "autoencoder.table_encoder.net.0",
                "autoencoder.table_encoder.net.2",
                tuple(range(min(attack.bins, hidden))),
                "autoencoder",
                0.0,
                attack.scale,
            )
        )
    hidden = model.discriminator.body[0].out_features
    targets.append(
        ImprintTarget(
            "latent",
            "discriminator.body.0",
            "discriminator.body.2",
            tuple(range(min(attack.bins, hidden))),
            "gan",
            0.2,
            1.0,  # LeakyReLU is piecewise linear: no scaling needed, and none wasted on float32 range
        )
    )
    return targets


class AttackJournal:
    """What the malicious server recovered, under ``DIR/attack/`` (written as it goes)."""

    def __init__(self, run: RunFolder) -> None:
        self.path = run.path / "attack"
        (self.path / "reconstructions").mkdir(parents=True, exist_ok=True)

    def record(self, server_round: int, hospital: int, target: str, arrays: dict[str, np.ndarray]) -> Path:
        path = self.path / "reconstructions" / f"round-{server_round:04d}-hospital-{hospital}-{target}.npz"
        np.savez(path, **arrays)
        with (self.path / "journal.jsonl").open("a") as f:
            entry = {"round": server_round, "hospital": hospital, "target": target, "found": int(len(arrays["values"]))}
            f.write(json.dumps(entry) + "\n")
        return path

    def note(self, server_round: int, hospital: int, target: str, message: str) -> None:
        with (self.path / "journal.jsonl").open("a") as f:
            f.write(json.dumps({"round": server_round, "hospital": hospital, "target": target, "note": message}) + "\n")

    def describe(self, description: dict) -> None:
        write_json(self.path / "attack.json", description)


class MaliciousServer(Strategy):
    """Wraps ``inner``: plants the targets' imprints into what it sends in attacked rounds and
    inverts what the hospitals return (see the module docstring)."""

    def __init__(
        self,
        inner: Strategy,
        attack: AttackConfig,
        job: Job,
        schema: Schema,
        run: RunFolder,
        auxiliary: Dataset | None,
        seed: int,
    ) -> None:  # no super().__init__: the weights are the inner strategy's
        self.inner = inner
        self.name = inner.name
        self.attack = attack
        self.job = job
        self.schema = schema
        self.auxiliary = auxiliary
        self.rng = np.random.default_rng(seed)
        self.model = build_architecture(job.architecture, schema, job.model, job.seed, job.architecture_options)
        wanted = attack.target_names()
        self.targets = [t for t in targets_for(attack, schema, self.model) if wanted is None or t.name in wanted]
        self.journal = AttackJournal(run)
        self.codec = TableCodec(schema) if schema.has_table else None
        self.journal.describe(
            {
                "threat_model": attack.threat_model,
                "bins": attack.bins,
                "targets": [t.__dict__ for t in self.targets],
                "architecture": job.architecture,
                "rounds": attack.rounds or "every round",
                "optimizer": job.train.optimizer,
                "sampling": job.train.sampling,
                "auxiliary": attack.auxiliary,
            }
        )

    # -- delegation -----------------------------------------------------------------------------
    @property
    def weights(self) -> Arrays:  # type: ignore[override]
        return self.inner.weights

    @weights.setter
    def weights(self, value: Arrays) -> None:
        self.inner.weights = value

    @property
    def min_hospitals(self) -> int:  # type: ignore[override]
        return self.inner.min_hospitals

    def final_weights(self) -> Arrays:
        """The inner strategy's final model without the shipped imprint block (the honest
        architecture's arrays: what the run's synthesis and report load)."""
        return {k: v for k, v in self.inner.final_weights().items() if ".imprint." not in k}

    def describe_final(self) -> str:
        return self.inner.describe_final()

    def release(self, server_round: int, hospitals: list[int]) -> RoundPlan | None:
        """The inner strategy's release, passed through (it carries no weights to plant)."""
        return self.inner.release(server_round, hospitals)

    def state_dict(self) -> dict:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state)

    # -- the attack -----------------------------------------------------------------------------
    def _attacked(self, server_round: int) -> bool:
        rounds = self.attack.attacked_rounds()
        return rounds is None or server_round in rounds

    def _attacking(self, server_round: int, phase: str) -> list[ImprintTarget]:
        if not self._attacked(server_round):
            return []
        return [t for t in self.targets if t.phase == phase]

    def _tamper(self, send: Send) -> Send:
        """The instruction with its relayed peer model altered: one byte of a sealed model flipped
        (the receiver's authentication must catch it), or a plaintext one negated (it looks like
        any trained model: no weight check can tell). The server's own weights are left alone."""
        instruction = send.instruction
        if instruction.sealed is not None:
            blob = bytearray(instruction.sealed.blob)
            blob[len(blob) // 2] ^= 0x01
            altered = replace(instruction, sealed=replace(instruction.sealed, blob=bytes(blob)))
        elif instruction.merge:
            negated = [({k: -v for k, v in arrays.items()}, w) for arrays, w in instruction.merge]
            altered = replace(instruction, merge=negated)
        else:
            return send
        self.journal.note(instruction.server_round, send.hospital_id, "relay", "relayed model altered")
        return replace(send, instruction=altered)

    def run_round(self, server_round: int, phase: str, hospitals: list[int]) -> RoundPlan:
        targets = self._attacking(server_round, phase)
        # What the attacked networks were before the round: the server puts them back afterwards,
        # so the federation's model stays usable (hospitals trained on planted rows, and their
        # updates can be wild); the attack needs nothing from that training.
        networks = phase_networks(phase) if targets and self.attack.threat_model != "honest" else ()
        clean = {k: np.array(v, copy=True) for k, v in self.inner.weights.items() if k.split(".")[0] in networks}
        tampering = self.attack.threat_model == "tamper" and self._attacked(server_round)
        plan = self.inner.run_round(server_round, phase, hospitals)
        sends = next(plan)
        try:
            while True:
                sent: dict[int, Arrays] = {}
                if targets:
                    sends = [self._rewrite(send, targets, sent) for send in sends]
                if tampering:
                    sends = [self._tamper(send) for send in sends]
                replies: list[HospitalReply] = yield sends
                for reply in replies:
                    if reply.hospital_id in sent and reply.weights is not None and reply.refused is None:
                        self._invert(server_round, reply, sent[reply.hospital_id], targets)
                sends = plan.send(replies)
        except StopIteration as stop:
            self.inner.weights.update(clean)
            return stop.value

    def _rewrite(self, send: Send, targets: list[ImprintTarget], sent: dict[int, Arrays]) -> Send:
        """The instruction with planted weights; a relayed ring model is replaced by the planted
        one (the server builds every instruction, so it can)."""
        instruction = send.instruction
        if instruction.weights is not None:
            base = instruction.weights
        elif instruction.merge:
            base = instruction.merge[0][0]
        else:
            base = self.inner.weights
        # A relayed phase model lacks the other networks. Planting writes new arrays, so the
        # unplanted ones are shared with the strategy's, not copied.
        weights = {**self.weights, **base}
        if self.attack.threat_model != "honest":
            for target in targets:
                try:
                    self._plant(weights, target)
                except ValueError as e:  # e.g. a diverged encoder maps every auxiliary record alike
                    self.journal.note(instruction.server_round, send.hospital_id, target.name, f"not planted: {e}")
        sent[send.hospital_id] = weights
        return replace(send, instruction=replace(instruction, weights=weights, merge=None))

    def _plant(self, weights: Arrays, target: ImprintTarget) -> None:
        design = self._design(target, weights)
        w, b = f"{target.layer}.weight", f"{target.layer}.bias"
        weights[w], weights[b] = plant(weights[w], weights[b], target.rows, design)
        nxt = weights[f"{target.next_layer}.weight"]
        column = None
        if target.name == "image":
            column = np.full(nxt.shape[0], SECOND_LAYER_VALUE, dtype=nxt.dtype)
            weights[f"{target.next_layer}.bias"] = np.zeros_like(weights[f"{target.next_layer}.bias"])
        weights[f"{target.next_layer}.weight"] = equalize_columns(nxt, target.rows, column)

    def _design(self, target: ImprintTarget, weights: Arrays) -> ImprintDesign:
        """Measurement and thresholds, calibrated on the server's auxiliary records."""
        aux = self._auxiliary_inputs(target, weights)
        dim = aux.shape[1]
        if target.name == "image" and self.attack.measurement == "brightness":
            measurement = mean_brightness_measurement(dim)
        else:
            measurement = random_measurement(dim, self.rng)
        design = calibrate(aux, measurement, len(target.rows))
        return ImprintDesign(design.measurement, design.thresholds, target.scale)

    def _auxiliary_inputs(self, target: ImprintTarget, weights: Arrays) -> np.ndarray:
        aux = self.auxiliary
        if aux is None:
            raise ValueError(
                "attack.auxiliary: the server needs auxiliary records (public or synthetic) to calibrate its bins"
            )
        if target.name == "image":
            assert aux.images is not None
            return aux.images.reshape(len(aux.images), -1).astype(np.float64)
        if target.name == "table":
            assert self.codec is not None and aux.clinical is not None
            return self.codec.encode(torch.as_tensor(aux.clinical)).numpy().astype(np.float64)
        self._load(weights)
        with torch.no_grad():
            images = None if aux.images is None else torch.as_tensor(aux.images)
            clinical = None if aux.clinical is None else torch.as_tensor(aux.clinical)
            return self.model.autoencoder.encode(images, clinical).numpy().astype(np.float64)

    def _load(self, weights: Arrays) -> None:
        own = self.model.state_dict()
        self.model.load_weights({k: weights.get(k, own[k].numpy()) for k in own})

    def _invert(self, server_round: int, reply: HospitalReply, sent: Arrays, targets: list[ImprintTarget]) -> None:
        assert reply.weights is not None
        for target in targets:
            w, b = f"{target.layer}.weight", f"{target.layer}.bias"
            if w not in reply.weights:
                continue
            delta_w = reply.weights[w].astype(np.float64) - sent[w].astype(np.float64)
            delta_b = reply.weights[b].astype(np.float64) - sent[b].astype(np.float64)
            found = invert(delta_w, delta_b, target.rows, negative_slope=target.negative_slope)
            values = np.stack([r.values for r in found]) if found else np.zeros((0, delta_w.shape[1]))
            arrays = {
                "values": values,
                "bins": np.array([r.bin for r in found], dtype=np.int64),
                "mass": np.array([r.mass for r in found]),
            }
            arrays.update(self._decode(target, values, sent))
            self.journal.record(server_round, reply.hospital_id, target.name, arrays)

    def _decode(self, target: ImprintTarget, values: np.ndarray, sent: Arrays) -> dict[str, np.ndarray]:
        """Records in data units: images, clinical rows (and, for latents, the label the server's
        own label head predicts), decoded with the model the server holds."""
        if len(values) == 0:
            return {}
        if target.name == "image":
            assert self.schema.image_shape is not None
            return {"images": values.reshape(len(values), *self.schema.image_shape).astype(np.float32)}
        if target.name == "table":
            assert self.codec is not None
            return {"clinical": decode_table_rows(self.codec, values)}
        self._load(sent)
        with torch.no_grad():
            latent = torch.as_tensor(values, dtype=torch.float32)
            ae = self.model.autoencoder
            if hasattr(ae, "label_head"):
                labels = ae.label_head(latent).argmax(dim=1)
            else:
                labels = torch.zeros(len(latent), dtype=torch.long)
            images, clinical = ae.decode(latent, labels, torch.Generator().manual_seed(0))
        out = {"labels": labels.numpy()}
        if images is not None:
            out["images"] = images.numpy()
        if clinical is not None:
            out["clinical"] = clinical.numpy()
        return out


def decode_table_rows(codec: TableCodec, encoded: np.ndarray) -> np.ndarray:
    """Encoded clinical rows (scaled numerics, one-hots) -> rows in data units (values, codes)."""
    rows = np.zeros((len(encoded), len(codec.schema.columns)), dtype=np.float32)
    n = len(codec.numeric)
    low, high = codec.low.numpy(), codec.high.numpy()
    rows[:, codec.numeric] = low + np.clip(encoded[:, :n], 0, 1) * (high - low)
    start = n
    for j, card in zip(codec.categorical, codec.cardinalities):
        rows[:, j] = encoded[:, start : start + card].argmax(axis=1)
        start += card
    return rows


def shipped_code_digest(honest_digest: str) -> str:
    """The fingerprint of the application a code-shipping server ships (the honest code changed)."""
    return hashlib.sha256(f"{honest_digest}+{IMPRINT_ARCHITECTURE}".encode()).hexdigest()


class AttackHook:
    """How a run takes the malicious server: ``job`` rewrites the job description (a code-shipping
    server ships its own architecture), ``strategy`` wraps the run's strategy."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.attack = config.attack

    def job(self, job: Job) -> Job:
        if self.attack.threat_model == "code-shipping":
            return replace(
                job,
                architecture=IMPRINT_ARCHITECTURE,
                architecture_options={"bins": self.attack.bins},
                code_digest=shipped_code_digest(job.code_digest),
            )
        return replace(job, architecture=BUILTIN_ARCHITECTURE)

    def strategy(self, inner: Strategy, job: Job, schema: Schema, run: RunFolder) -> Strategy:
        if not self.attack.auxiliary and self.attack.threat_model not in ("honest", "tamper"):
            raise ConfigError(
                f"attack.auxiliary: empty (the {self.attack.threat_model} server calibrates its bins on "
                "records it holds: a fedsynth records file of public or synthetic records)"
            )
        auxiliary = load_records(self.attack.auxiliary, source="attack.auxiliary") if self.attack.auxiliary else None
        return MaliciousServer(inner, self.attack, job, schema, run, auxiliary, self.config.seed)


def attack_hook(config: RunConfig) -> AttackHook | None:
    """The hook of ``config.attack``, or None for an ordinary run."""
    return None if config.attack.threat_model == "none" else AttackHook(config)
