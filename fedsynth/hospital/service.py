"""Serving round instructions for the hospitals of one process.

Both the Flower ClientApp and the in-process transport call :meth:`HospitalService.handle`, so a
simulated hospital behaves the same behind either: resident state, persistence after every round,
and (in simulation only) the configured faults.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fedsynth.config.schema import RunConfig
from fedsynth.federation.faults import FaultPlan, HospitalLate, HospitalUnavailable
from fedsynth.hospital.hospital import resolve_device
from fedsynth.hospital.resident import ResidentHospitals
from fedsynth.hospital.store import HospitalStore
from fedsynth.protocol import HospitalReply, RoundInstruction, instruction_digest, reply_from_dict, reply_to_dict
from fedsynth.runfolder import RunFolder


class HospitalService:
    """Trains hospitals of this process on request; ``late_seconds`` > 0 makes a late hospital
    really wait (Flower), 0 raises :class:`HospitalLate` at once (in-process)."""

    def __init__(self, late_seconds: float = 0.0) -> None:
        self.resident = ResidentHospitals()
        self.late_seconds = late_seconds

    def handle(
        self,
        hospital_id: int,
        config: RunConfig,
        instruction: RoundInstruction,
        state_dir: Path | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> HospitalReply:
        where = state_dir or RunFolder(config.out_dir).hospital_state_dir(hospital_id)
        fault = FaultPlan.from_config(config.faults, config.federation.num_hospitals).fault(
            hospital_id, instruction.server_round
        )
        if fault in ("drop", "crash"):
            if fault == "crash":
                self.resident.forget(where)  # a crash loses everything held in memory
            raise HospitalUnavailable(
                f"hospital {hospital_id} is unavailable in round {instruction.server_round} ({fault})"
            )
        digest = instruction_digest(instruction)
        reply = self._replay(where, instruction.server_round, digest)
        if reply is None:
            device = resolve_device(config.simulation.device)
            hospital = self.resident.get(hospital_id, config, where, device, instruction.server_round)
            reply = hospital.train_round(instruction)
            self.resident.finished(
                hospital, where, instruction.server_round, {"reply": reply_to_dict(reply), "instruction_digest": digest}
            )
        if fault == "corrupt" and reply.weights is not None:
            reply.weights = {k: np.full_like(v, np.nan) for k, v in reply.weights.items()}
        if fault == "late":
            if self.late_seconds <= 0:
                raise HospitalLate(f"hospital {hospital_id} answered round {instruction.server_round} too late")
            sleep(self.late_seconds)
        return reply

    def _replay(self, where: Path, server_round: int, digest: str) -> HospitalReply | None:
        """The stored reply when this exact instruction was already answered (server resumed)."""
        store = HospitalStore(where)
        if store.latest_round() != server_round:
            return None
        saved = store.load(server_round)
        if saved.get("instruction_digest") != digest or "reply" not in saved:
            return None
        self.resident.forget(where)  # memory may be ahead or behind; the store is the truth
        return reply_from_dict(saved["reply"])
