"""One site's service: everything a hospital does on a server's request, in front of every engine.

Both the Flower ClientApp and the in-process engine call :meth:`HospitalService.handle`, so a
hospital behaves the same behind either. For each instruction the service

1. applies the faults its own site file declares (simulation only),
2. answers an instruction it already answered from its stored reply (a resumed server): no new
   computation on patient data, nothing new to charge,
3. runs the site guardrails and resolves the run's privacy plan against its policy; a refusal
   carries a reason the server logs,
4. checks the round against the run's and the site's lifetime budget,
5. charges the ledger on its own disk *before* the mechanism runs, then trains with randomness the
   server cannot know (OS entropy, or a seed only in a permitted reproducible study),
6. replies with DP outputs and declared public facts only; losses on real records go to the
   site's own log.

In a sealed ring (:mod:`fedsynth.hospital.sealed_ring`) the service also holds the job to the
site's ``[ring]`` table, opens the sealed peer model it is sent *before* charging anything (a blob
that fails to open, or one older than the newest it took from that sender, is refused with the
sender and the failed check), and replies with its model sealed for its pinned neighbours instead
of plaintext weights. After the last round it answers a release (:data:`~fedsynth.protocol.RELEASE`)
with its final model: no training, no new ledger event (post-processing of what it already paid
for).

The service reads its records, state and policy from its site file alone; the server's run
configuration never tells it where its data is or what it may spend.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from fedsynth.consortium.sealing import SealError
from fedsynth.data.records import Dataset
from fedsynth.data.records_file import load_records
from fedsynth.errors import FedsynthError
from fedsynth.hospital.guardrails import Guardrail, Proposal, first_refusal
from fedsynth.hospital.hospital import Hospital, resolve_device
from fedsynth.hospital.ledger_file import LedgerDamaged, LedgerFile
from fedsynth.hospital.plan import PrivacyPlan, local_steps, resolve_plan, within_budget
from fedsynth.hospital.sealed_ring import RingSealer, ring_refusal
from fedsynth.hospital.store import HospitalStore, SiteLog
from fedsynth.privacy.ledger import PrivacyLedger
from fedsynth.privacy.randomness import Randomness, ReproducibleRandomness, SecureRandomness
from fedsynth.protocol import (
    RELEASE,
    HospitalReply,
    Job,
    RoundInstruction,
    instruction_digest,
    reply_from_dict,
    reply_to_dict,
)
from fedsynth.site.config import Site
from fedsynth.site.faults import HospitalLate, HospitalUnavailable

log = logging.getLogger("fedsynth.site")


@dataclass
class _Resident:
    """The hospital of the run being trained, as it is after ``round`` (None: fresh)."""

    run_id: str
    hospital: Hospital
    round: int | None


class HospitalService:
    """The endpoint of one site (see the module docstring)."""

    def __init__(self, site: Site, guardrails: list[Guardrail] | None = None) -> None:
        self.site = site
        self.guardrails = guardrails
        self.ledger_file = LedgerFile(site.state_path, warn=self._warn)
        self._data: Dataset | None = None
        self._resident: _Resident | None = None
        self._plans: dict[str, PrivacyPlan | str] = {}
        self._last_plan: PrivacyPlan | None = None

    @property
    def hospital_id(self) -> int:
        return self.site.hospital_id

    @property
    def data(self) -> Dataset:
        """The site's own records (read once, from the file its site file names)."""
        if self._data is None:
            self._data = load_records(self.site.data_path, source=f"hospital {self.hospital_id}")
        return self._data

    # -- requests ------------------------------------------------------------------------------
    def handle(self, instruction: RoundInstruction, sleep: Callable[[float], None] = time.sleep) -> HospitalReply:
        """Answer one round instruction (see the module docstring for the order of checks)."""
        faults = self.site.config.faults
        fault = faults.fault(instruction.server_round)
        if fault in ("drop", "crash"):
            if fault == "crash":
                self.forget()  # a crash loses everything held in memory
            raise HospitalUnavailable(
                f"hospital {self.hospital_id} is unavailable in round {instruction.server_round} ({fault})"
            )
        reply = self._answer(instruction)
        if fault == "corrupt" and reply.weights is not None:
            reply.weights = {k: np.full_like(v, np.nan) for k, v in reply.weights.items()}
        if fault == "late":
            if faults.late_seconds <= 0:
                raise HospitalLate(f"hospital {self.hospital_id} answered round {instruction.server_round} too late")
            sleep(faults.late_seconds)
        return reply

    def ledger_report(self) -> dict:
        """The site's full ledger (every run), for the server's privacy.json at the end of a run.

        A simulated hospital that dropped out for good does not answer."""
        if self.site.config.faults.drop_from:
            raise HospitalUnavailable(f"hospital {self.hospital_id} has left the federation")
        return self._ledger(self._last_plan).to_dict()

    def forget(self) -> None:
        """Drop everything held in memory; the next request restores from the site's disk."""
        self._resident = None
        self._data = None

    # -- the steps of handle -------------------------------------------------------------------
    def _answer(self, instruction: RoundInstruction) -> HospitalReply:
        job = instruction.job
        if job is None:
            return self._refuse(instruction, "the instruction carries no job description", None)
        site_log = SiteLog(self.site.state_path, job.run_id)
        digest = instruction_digest(instruction)
        stored = self._stored_reply(job, instruction.server_round, digest)
        if stored is not None:
            site_log.write("replayed", round=instruction.server_round)
            return stored
        reason = first_refusal(
            Proposal(self.site.policy, instruction, self.data.schema, len(self.data)), self.guardrails
        )
        if reason is not None:
            return self._refuse(instruction, reason, None)
        reason = ring_refusal(self.site.config.ring, instruction, job)
        if reason is not None:
            return self._refuse(instruction, reason, None)
        try:
            if instruction.phase == RELEASE:
                return self._release(instruction, job, site_log)
            return self._train(instruction, job, digest, site_log)
        except LedgerDamaged as e:  # the site cannot know what it has spent: it must not train
            return self._refuse(instruction, str(e), None, with_ledger=False)

    def _train(self, instruction: RoundInstruction, job: Job, digest: str, site_log: SiteLog) -> HospitalReply:
        plan = self._plan(job)
        if isinstance(plan, str):
            return self._refuse(instruction, plan, None)
        self._last_plan = plan
        steps = local_steps(job.train, instruction.phase)
        event = plan.event(instruction.phase, instruction.server_round, steps, job.train)
        ledger = self._ledger(plan)
        reason = within_budget(plan, ledger, event)
        if reason is not None:
            return self._refuse(instruction, f"hospital {self.hospital_id} {reason}", plan)

        sealer = None
        if job.ring_sealed:
            try:
                sealer = RingSealer.from_site(self.site)
            except FedsynthError as e:
                return self._refuse(instruction, f"the site cannot seal: {e}", plan)
        hospital = self._hospital(job, plan, instruction.server_round)
        to_train = instruction
        if instruction.sealed is not None:
            assert sealer is not None  # ring_refusal: a sealed model comes only in a sealed job
            opened = self._open_peer(instruction, job, sealer, hospital)
            if isinstance(opened, str):  # refused before anything is charged or trained
                return self._refuse(instruction, opened, plan)
            to_train = opened
        index = len(ledger.events)
        self.ledger_file.append(event)  # charged before the mechanism runs
        ledger.record(event)
        weights, site_metrics = hospital.train_round(to_train, self._randomness(plan, job).mechanism(index))
        site_log.write("trained", round=instruction.server_round, phase=instruction.phase, **site_metrics)
        if instruction.sealed is not None:  # the newest model taken from that sender (replay check)
            hospital.ring_accepted[instruction.sealed.sender_id] = instruction.sealed.sender_round
        sealed: dict[int, bytes] = {}
        if sealer is not None:  # the model goes to the neighbours only, sealed; the server gets none
            sealed = sealer.seal_model(hospital.model.weights(), job.run_id, instruction.server_round)
            weights = None
        epsilon = ledger.epsilon()
        reply = HospitalReply(
            hospital_id=self.hospital_id,
            server_round=instruction.server_round,
            num_examples=plan.record_count,
            weights=weights,
            sealed=sealed,
            metrics={
                "epsilon": float("nan") if epsilon is None else epsilon,
                "epsilon_run": _or_nan(ledger.of_run(job.run_id).epsilon()),
                "steps": float(steps),
            },
            ledger=ledger.to_dict(),
            plan=plan.to_dict(),
        )
        HospitalStore(self.site.state_path, job.run_id).save(
            {**hospital.state_dict(), "reply": reply_to_dict(reply), "instruction_digest": digest},
            instruction.server_round,
        )
        assert self._resident is not None
        self._resident.round = instruction.server_round
        return reply

    def _open_peer(
        self, instruction: RoundInstruction, job: Job, sealer: RingSealer, hospital: Hospital
    ) -> RoundInstruction | str:
        """The instruction with its sealed peer model opened into ``merge``, or why the site
        refuses it: a sender round outside the run so far, a replay (older than the newest model
        already taken from that sender), a seal that does not open, or an opened model the site's
        guardrails refuse."""
        sealed = instruction.sealed
        assert sealed is not None
        who = f"sealed model from hospital {sealed.sender_id} (its round {sealed.sender_round})"
        if not 1 <= sealed.sender_round <= instruction.server_round:
            return f"{who}: round check failed: not a round of this run up to round {instruction.server_round}"
        newest = hospital.ring_accepted.get(sealed.sender_id)
        if newest is not None and sealed.sender_round < newest:
            return (
                f"{who}: replay check failed: older than the round {newest} model already accepted from "
                f"hospital {sealed.sender_id}"
            )
        try:
            arrays = sealer.open_model(sealed, job.run_id)
        except SealError as e:
            return f"{who}: seal check failed: {e}"
        except FedsynthError as e:
            return f"{who}: {e}"
        opened = replace(instruction, sealed=None, merge=[(arrays, sealed.weight)])
        reason = first_refusal(Proposal(self.site.policy, opened, self.data.schema, len(self.data)), self.guardrails)
        if reason is not None:
            return f"{who}: {reason}"
        return opened

    def _release(self, instruction: RoundInstruction, job: Job, site_log: SiteLog) -> HospitalReply:
        """The site's final model of the run, after the last round: a DP output already charged
        (post-processing), so nothing is trained and nothing new is charged."""
        last = job.train.num_rounds
        if instruction.server_round <= last:
            return self._refuse(
                instruction, f"a release of the final model comes after the run's last round ({last})", None
            )
        plan = self._plan(job)
        if isinstance(plan, str):
            return self._refuse(instruction, plan, None)
        self._last_plan = plan
        hospital = self._hospital(job, plan, instruction.server_round)
        if not hospital.rounds_done:
            return self._refuse(instruction, f"nothing to release: the site has not trained in run {job.run_id}", plan)
        ledger = self._ledger(plan)
        site_log.write("released", round=instruction.server_round, trained_rounds=list(hospital.rounds_done))
        return HospitalReply(
            hospital_id=self.hospital_id,
            server_round=instruction.server_round,
            num_examples=plan.record_count,
            weights=hospital.model.weights(),
            metrics={
                "epsilon": _or_nan(ledger.epsilon()),
                "epsilon_run": _or_nan(ledger.of_run(job.run_id).epsilon()),
            },
            ledger=ledger.to_dict(),
            plan=plan.to_dict(),
        )

    def _plan(self, job: Job) -> PrivacyPlan | str:
        """The run's plan, resolved once per run against the ledger of every *other* run."""
        if job.run_id not in self._plans:
            events = [e for e in self.ledger_file.events() if e.run != job.run_id]
            earlier = PrivacyLedger(job.privacy.delta, job.privacy.accountant, events)
            plan = resolve_plan(job.privacy, job.train, self.site.policy, len(self.data), earlier, job.run_id)
            self._plans[job.run_id] = plan
            SiteLog(self.site.state_path, job.run_id).write(
                "plan", plan=plan if isinstance(plan, str) else plan.to_dict()
            )
        return self._plans[job.run_id]

    def _ledger(self, plan: PrivacyPlan | None) -> PrivacyLedger:
        delta = plan.delta if plan is not None else self.site.policy.max_delta
        accountant = plan.accountant if plan is not None else "rdp"
        return PrivacyLedger(delta, accountant, self.ledger_file.events())  # type: ignore[arg-type]

    def _randomness(self, plan: PrivacyPlan, job: Job) -> Randomness:
        if plan.reproducible:
            return ReproducibleRandomness(job.seed, self.hospital_id)
        return SecureRandomness()

    def _hospital(self, job: Job, plan: PrivacyPlan, server_round: int) -> Hospital:
        """The hospital as it was after the newest saved round before ``server_round``."""
        store = HospitalStore(self.site.state_path, job.run_id)
        resident = self._resident
        start = store.latest_round(before=server_round)
        if resident is not None and resident.run_id == job.run_id and resident.round == start:
            return resident.hospital
        hospital = Hospital(self.hospital_id, self.data, job, plan, resolve_device(self.site.config.device))
        saved = store.latest_valid(before=server_round, warn=self._warner(job))
        if saved is not None:
            hospital.load_state_dict(saved[1])
        self._resident = _Resident(job.run_id, hospital, None if saved is None else saved[0])
        return hospital

    def _stored_reply(self, job: Job, server_round: int, digest: str) -> HospitalReply | None:
        """The stored reply when this exact instruction was already answered (server resumed)."""
        store = HospitalStore(self.site.state_path, job.run_id)
        if store.latest_round() != server_round:
            return None
        saved = store.latest_valid(warn=self._warner(job))
        if saved is None or saved[0] != server_round:
            return None
        payload = saved[1]
        if payload.get("instruction_digest") != digest or "reply" not in payload:
            return None
        self._resident = None  # memory may be ahead or behind; the store is the truth
        return reply_from_dict(payload["reply"])

    def _refuse(
        self, instruction: RoundInstruction, reason: str, plan: PrivacyPlan | None, with_ledger: bool = True
    ) -> HospitalReply:
        job = instruction.job
        if job is not None:
            SiteLog(self.site.state_path, job.run_id).write("refused", round=instruction.server_round, reason=reason)
        log.warning("hospital %d refuses round %d: %s", self.hospital_id, instruction.server_round, reason)
        return HospitalReply(
            hospital_id=self.hospital_id,
            server_round=instruction.server_round,
            num_examples=None,
            weights=None,
            metrics={},
            ledger=self._ledger(plan).to_dict() if with_ledger else {},
            plan=plan.to_dict() if plan is not None else {},
            refused=reason,
        )

    def _warn(self, message: str) -> None:
        log.warning("hospital %d: %s", self.hospital_id, message)

    def _warner(self, job: Job) -> Callable[[str], None]:
        """Warnings about damaged state go to the console and the run's site log."""

        def warn(message: str) -> None:
            self._warn(message)
            SiteLog(self.site.state_path, job.run_id).write("damaged", message=message)

        return warn


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else value
