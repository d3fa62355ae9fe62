"""Bytes on the wire per message against the raw bytes of the arrays it carries, per phase.

A real simulated hospital (a site written by :func:`~fedsynth.simulation.sites.prepare_sites`,
served by its :class:`~fedsynth.hospital.service.HospitalService`) trains every round of a run;
the server's side is played by loading each reply's arrays into the model it sends next (FedAvg
over one hospital) and, as the coordinator does, telling the site how many of its ledger events it
already holds. For the last round of each phase the table gives:

- ``reply`` (uplink, the update): :func:`fedsynth.federation.wire.content_nbytes` of the reply's
  content against the summed ``nbytes`` of the arrays it returns;
- ``instruction`` (downlink): the same for the instruction, whose arrays are the whole model.

The difference splits into what serializing the arrays adds (the packed buffers' framing and the
manifest of names, dtypes, shapes and offsets: :mod:`fedsynth.federation.packing`) and the
message's other records: the job (instruction), or the ledger events the server lacks, plan and
metrics (reply). Steps per round do not change the sizes, so the run trains one local step per
round. Weights travel exactly (``federation.transfer_precision`` as configured, float32 by default).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from flwr.app import RecordDict

from fedsynth.bench.measure import ratio
from fedsynth.config import RunConfig, load_config
from fedsynth.federation import wire
from fedsynth.federation.ledger_delta import mark_of, rebuild
from fedsynth.federation.server import make_job
from fedsynth.hospital.service import HospitalService
from fedsynth.models.architectures import build_architecture
from fedsynth.privacy.ledger import PrivacyLedger
from fedsynth.protocol import Arrays, RoundInstruction
from fedsynth.simulation.sites import prepare_sites

#: The two training schedules and what each sets (the model sizes are the defaults).
SCHEDULES: dict[str, list[str]] = {
    "gan": ['train.schedule="gan"', 'model.latent_model="gan"'],
    "gaussian": ['train.schedule="gaussian"', 'model.latent_model="gaussian"'],
}

#: One local step per round (sizes do not depend on it), a small phantom, one hospital.
FAST = [
    "train.local_steps_autoencoder=1",
    "train.local_steps_gan=1",
    "train.generator_steps_per_round=1",
    "data.phantom_records=500",
    "federation.num_hospitals=1",
    "evaluation.centralized_baseline=false",
    'simulation.device="cpu"',
]


@dataclass(frozen=True)
class CommunicationRow:
    """One message of one phase: raw array bytes, serialized bytes, and their ratio."""

    schedule: str
    phase: str
    direction: str
    server_round: int
    arrays: int
    raw_bytes: int
    #: The serialized size of the message's arrays alone (packed buffers and their manifest).
    array_record_bytes: int
    wire_bytes: int

    @property
    def framing_bytes(self) -> int:
        """What serializing the arrays adds: the manifest (names, dtypes, shapes, offsets), framing."""
        return self.array_record_bytes - self.raw_bytes

    @property
    def metadata_bytes(self) -> int:
        """Everything else: the job (instruction); new ledger events, plan and metrics (reply)."""
        return self.wire_bytes - self.array_record_bytes

    @property
    def wire_over_raw(self) -> float:
        return ratio(self.wire_bytes, self.raw_bytes)


def raw_nbytes(arrays: Arrays | None) -> int:
    """The bytes of the arrays themselves (no names, shapes or framing)."""
    return int(sum(np.asarray(a).nbytes for a in (arrays or {}).values()))


def bench_communication(overrides: list[str] | None = None) -> list[CommunicationRow]:
    """Rows for both schedules; ``overrides`` (``section.key=value``) change the run, e.g. model sizes."""
    rows = []
    for schedule, settings in SCHEDULES.items():
        with tempfile.TemporaryDirectory(prefix="fedsynth-bench-") as folder:
            config = load_config(None, [*FAST, *settings, *(overrides or []), f'out_dir="{Path(folder) / "run"}"'])
            rows += schedule_rows(schedule, config)
    return rows


def schedule_rows(schedule: str, config: RunConfig) -> list[CommunicationRow]:
    """Train every round of ``config`` at one simulated hospital; rows of each phase's last round."""
    schema, sites = prepare_sites(config, late_seconds=0.0)
    service = HospitalService(sites[0])
    job = make_job(config, schema, run_id="bench")
    weights = build_architecture(job.architecture, schema, job.model, job.seed, job.architecture_options).weights()
    last: dict[str, list[CommunicationRow]] = {}
    held = None
    precision = config.federation.transfer_precision
    for server_round in range(1, config.train.num_rounds + 1):
        phase = config.train.phase_of_round(server_round)
        known, digest = mark_of(held)
        instruction = RoundInstruction(
            server_round,
            phase,
            weights=dict(weights),
            job=job,
            ledger_known=known,
            ledger_digest=digest,
            transfer_precision=precision,
        )
        sent = wire.instruction_to_content(instruction)
        received = wire.content_to_instruction(sent)
        reply = service.handle(received)
        if reply.refused is not None:
            raise RuntimeError(f"the benchmark's hospital refused round {server_round}: {reply.refused}")
        answer = wire.reply_to_content(reply, received)
        decoded = wire.content_to_reply(answer)
        held = PrivacyLedger.from_dict(rebuild(decoded.ledger, decoded.ledger_base, held, decoded.hospital_id))
        last[phase] = [
            _row(schedule, phase, "reply", server_round, reply.weights, answer),
            _row(schedule, phase, "instruction", server_round, instruction.weights, sent),
        ]
        weights.update(decoded.weights or {})
    return [row for rows in last.values() for row in rows]


def _row(
    schedule: str, phase: str, direction: str, server_round: int, arrays: Arrays | None, content: RecordDict
) -> CommunicationRow:
    return CommunicationRow(
        schedule=schedule,
        phase=phase,
        direction=direction,
        server_round=server_round,
        arrays=len(arrays or {}),
        raw_bytes=raw_nbytes(arrays),
        array_record_bytes=wire.arrays_nbytes(content),
        wire_bytes=wire.content_nbytes(content),
    )
