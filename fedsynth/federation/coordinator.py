"""The coordinator: drives a strategy's rounds over a transport and logs every round.

It knows neither Flower nor the topology: the strategy yields waves of instructions, the transport
delivers them, and the coordinator

- rejects malformed updates (names, shapes, dtypes, NaN/Inf, size) before the strategy sees them,
- records per-hospital and per-round metrics: serialized bytes of every message per edge
  (uplink/downlink), the simulated communication time under the network model, the Federated
  Consistency (dispersion of the hospitals' models), lost work, and why a hospital failed (one plain
  line, :func:`~fedsynth.federation.failures.plain_reason`),
- tells each hospital how many of its ledger events it holds and puts them back in front of the
  events a reply carries (:mod:`~fedsynth.federation.ledger_delta`), so everything downstream sees
  each site's full ledger; a reply whose ledger cannot be rebuilt is a failure of that hospital,
- persists a server checkpoint after every round so a killed run can resume,
- runs the strategy's release after the last round, when it has one (a sealed ring collects each
  hospital's final model there), logged as one ``"kind": "release"`` line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from fedsynth.config.schema import RunConfig
from fedsynth.errors import FedsynthError
from fedsynth.federation.checkpoint import ServerCheckpoint
from fedsynth.federation.consistency import weight_dispersion
from fedsynth.federation.failures import plain_reason
from fedsynth.federation.ledger_delta import LedgerDeltaError, mark_of, rebuild
from fedsynth.federation.network import NetworkModel, Transfer, exchange_waves, parse_site_overrides, round_wall_time
from fedsynth.federation.strategy import RoundOutcome, RoundPlan, Send, Strategy
from fedsynth.federation.transport import Exchange, Transport
from fedsynth.federation.validation import Reference, reference_of, validate_sealed, validate_update
from fedsynth.models.generator import phase_arrays
from fedsynth.privacy.ledger import PrivacyLedger
from fedsynth.protocol import RELEASE, Arrays, HospitalReply, Job
from fedsynth.runfolder import RunFolder

log = logging.getLogger("fedsynth.server")


class EveryHospitalRefused(FedsynthError):
    """No hospital accepted the run's request: the sites' policies and the request disagree."""


@dataclass
class FederationResult:
    """What the rounds leave behind: the ledgers and plans hospitals reported, their refusals."""

    ledgers: dict[int, PrivacyLedger] = field(default_factory=dict)
    plans: dict[int, dict] = field(default_factory=dict)
    refusals: dict[int, list[dict]] = field(default_factory=dict)
    rounds_run: int = 0


@dataclass
class _Traffic:
    """What one round (or the release) moved and lost: bytes per wave and edge, failures,
    rejected updates, and the plaintext models the server received."""

    waves: list[list[Transfer]] = field(default_factory=list)
    edges: dict[str, int] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=lambda: {"bytes_down": 0, "bytes_up": 0})
    failures: dict[int, str] = field(default_factory=dict)
    rejected: dict[int, str] = field(default_factory=dict)
    models: list[Arrays] = field(default_factory=list)


def network_model(config: RunConfig) -> NetworkModel:
    n = config.network
    return NetworkModel(n.bandwidth_mbps, n.latency_ms, n.server_mbps, parse_site_overrides(n.sites))


class Coordinator:
    """Runs ``config.train.num_rounds`` rounds of ``strategy`` over ``transport``."""

    def __init__(
        self,
        config: RunConfig,
        job: Job,
        strategy: Strategy,
        transport: Transport,
        run: RunFolder,
        on_round: Callable[[dict], None] | None = None,
    ) -> None:
        self.config = config
        self.job = job
        self.strategy = strategy
        self.transport = transport
        self.run = run
        self.on_round = on_round
        self.network = network_model(config)
        self.checkpoint = ServerCheckpoint(run.path / "server")

    def run_rounds(self, resume: bool = False) -> FederationResult:
        result = FederationResult()
        start = 1
        if resume:
            start = self._restore(result)
        hospitals = self.transport.hospitals()
        for server_round in range(start, self.config.train.num_rounds + 1):
            self._run_round(server_round, hospitals, result)
            result.rounds_run = server_round
            self.checkpoint.save(server_round, self.strategy.state_dict(), result)
        self._run_release(self.config.train.num_rounds + 1, hospitals, result)
        self._collect_final_ledgers(hospitals, result)
        return result

    def _collect_final_ledgers(self, hospitals: list[int], result: FederationResult) -> None:
        """Ask every hospital for its full ledger once the rounds are over: a hospital that trained
        but answered too late (or whose reply was lost) reports that spend here."""
        for hid, ledger in self.transport.ledgers(hospitals, timeout=self.config.federation.round_timeout).items():
            reported = PrivacyLedger.from_dict(ledger)
            known = result.ledgers.get(hid)
            if known is None or len(reported.events) >= len(known.events):
                result.ledgers[hid] = reported

    def _restore(self, result: FederationResult) -> int:
        """Load the newest checkpoint; set aside log lines of rounds after it (kept, not deleted)."""
        saved = self.checkpoint.latest()
        if saved is None:
            self.run.set_aside_metrics(after_round=0)
            return 1
        server_round, strategy_state, restored = saved
        self.strategy.load_state_dict(strategy_state)
        result.ledgers.update(restored.ledgers)
        result.plans.update(restored.plans)
        result.refusals.update(restored.refusals)
        result.rounds_run = server_round
        self.run.set_aside_metrics(after_round=server_round)
        log.info("resuming after round %d", server_round)
        return server_round + 1

    def _run_round(self, server_round: int, hospitals: list[int], result: FederationResult) -> None:
        phase = self.config.train.phase_of_round(server_round)
        started = time.perf_counter()
        reference = reference_of(self.strategy.weights, phase_arrays(self.strategy.weights, phase))
        plan = self.strategy.run_round(server_round, phase, hospitals)
        outcome, traffic = self._drive(server_round, phase, plan, reference, hospitals, result)
        record = self._server_record(server_round, phase, outcome, traffic, result)
        record["seconds"] = time.perf_counter() - started
        self.run.append_metrics(record)
        if self.on_round is not None:
            self.on_round(record)
        if server_round == 1 and outcome.refused and not outcome.accepted and not traffic.failures:
            reasons = "; ".join(f"hospital {h}: {r}" for h, r in sorted(outcome.refused.items()))
            raise EveryHospitalRefused(f"every hospital refused round 1, nothing was trained ({reasons})")

    def _run_release(self, release_round: int, hospitals: list[int], result: FederationResult) -> None:
        """The strategy's release wave, if it has one: hospitals send final models they already
        paid for (whole models, checked against the whole architecture); nothing is charged."""
        plan = self.strategy.release(release_round, hospitals)
        if plan is None:
            return
        started = time.perf_counter()
        reference = reference_of(self.strategy.weights)  # a release returns the whole model
        outcome, traffic = self._drive(release_round, RELEASE, plan, reference, hospitals, result)
        if not outcome.accepted:
            log.warning("no hospital released its final model: %s", outcome.refused or traffic.failures)
        self.run.append_metrics(
            {
                "kind": "release",
                "round": release_round,
                "strategy": self.strategy.name,
                "released": outcome.accepted,
                "refused": outcome.refused,
                "failed": traffic.failures,
                "rejected": traffic.rejected,
                **traffic.totals,
                "bytes_per_edge": traffic.edges,
                "sim_comm_seconds": round_wall_time(traffic.waves, self.network),
                "max_epsilon": _max_epsilon(result.ledgers),
                "seconds": time.perf_counter() - started,
            }
        )

    def _drive(
        self,
        server_round: int,
        phase: str,
        plan: RoundPlan,
        reference: Reference,
        hospitals: list[int],
        result: FederationResult,
    ) -> tuple[RoundOutcome, _Traffic]:
        """Deliver the plan's waves, screen and log every reply, feed the accepted ones back."""
        max_bytes = int(self.config.federation.max_update_mb * 1e6)
        traffic = _Traffic()
        try:
            sends = self._with_job(next(plan), result)
            while True:
                exchange = self.transport.exchange(sends, timeout=self.config.federation.round_timeout)
                self._rebuild_ledgers(exchange, result)
                traffic.failures.update({h: plain_reason(r) for h, r in exchange.failures.items()})
                accepted = self._screen(exchange, reference, max_bytes, hospitals, traffic.rejected)
                self._count(sends, exchange, traffic)
                for reply in exchange.replies:
                    self._record_reply(server_round, reply, result)
                    self._log_hospital(server_round, phase, reply, exchange, traffic.rejected.get(reply.hospital_id))
                traffic.models += [r.weights for r in accepted if r.weights is not None and r.refused is None]
                sends = self._with_job(plan.send(accepted), result)
        except StopIteration as stop:
            outcome: RoundOutcome = stop.value
        return outcome, traffic

    def _with_job(self, sends: list[Send], result: FederationResult) -> list[Send]:
        """Every instruction carries the run's job (the strategies know nothing of it), the run's
        transfer precision, and how much of the receiving site's ledger the server holds."""
        out = []
        for s in sends:
            known, digest = mark_of(result.ledgers.get(s.hospital_id))
            instruction = replace(
                s.instruction,
                job=self.job,
                ledger_known=known,
                ledger_digest=digest,
                transfer_precision=self.config.federation.transfer_precision,
            )
            out.append(replace(s, instruction=instruction))
        return out

    @staticmethod
    def _rebuild_ledgers(exchange: Exchange, result: FederationResult) -> None:
        """Put the events the server holds back in front of each reply's ledger delta; a reply whose
        delta does not extend what the server holds becomes a failure of that hospital."""
        kept = []
        for reply in exchange.replies:
            try:
                reply.ledger = rebuild(
                    reply.ledger, reply.ledger_base, result.ledgers.get(reply.hospital_id), reply.hospital_id
                )
            except LedgerDeltaError as e:
                exchange.failures[reply.hospital_id] = str(e)
                continue
            reply.ledger_base = 0
            kept.append(reply)
        exchange.replies[:] = kept

    @staticmethod
    def _record_reply(server_round: int, reply: HospitalReply, result: FederationResult) -> None:
        hid = reply.hospital_id
        if reply.ledger:
            result.ledgers[hid] = PrivacyLedger.from_dict(reply.ledger)
        if reply.plan:
            result.plans[hid] = dict(reply.plan)
        if reply.refused is not None:
            result.refusals.setdefault(hid, []).append({"round": server_round, "reason": reply.refused})

    def _screen(
        self, exchange: Exchange, reference: Reference, max_bytes: int, hospitals: list[int], rejected: dict[int, str]
    ) -> list[HospitalReply]:
        """Replies the strategy may use; malformed updates are logged and dropped. Sealed blobs
        are checked for what the server can see (addressees, sizes); plaintext weights in full."""
        kept = []
        for reply in exchange.replies:
            if reply.refused is None:
                reason = None
                if reply.sealed:
                    reason = validate_sealed(reply.sealed, reply.hospital_id, hospitals, max_bytes)
                if reason is None and (reply.weights is not None or not reply.sealed):
                    reason = validate_update(reply.weights, reference, reply.hospital_id, max_bytes)
                if reason is not None:
                    log.warning("rejected update: %s", reason)
                    rejected[reply.hospital_id] = reason
                    continue
            kept.append(reply)
        return kept

    @staticmethod
    def _count(sends: list[Send], exchange: Exchange, traffic: _Traffic) -> None:
        edges, totals = traffic.edges, traffic.totals
        traffic.waves.extend(exchange_waves(exchange.bytes_down, exchange.bytes_up))
        for send in sends:
            down = exchange.bytes_down.get(send.hospital_id, 0)
            origin = "server" if send.source is None else f"hospital-{send.source}(relayed)"
            key = f"{origin}->hospital-{send.hospital_id}"
            edges[key] = edges.get(key, 0) + down
            totals["bytes_down"] += down
        for hid, up in exchange.bytes_up.items():
            key = f"hospital-{hid}->server"
            edges[key] = edges.get(key, 0) + up
            totals["bytes_up"] += up

    def _log_hospital(
        self, server_round: int, phase: str, reply: HospitalReply, exchange: Exchange, rejected: str | None
    ) -> None:
        self.run.append_metrics(
            {
                "kind": "hospital",
                "round": server_round,
                "hospital": reply.hospital_id,
                "phase": phase,
                "num_examples": reply.num_examples,
                "refused": reply.refused,
                "rejected": rejected,
                "bytes_down": exchange.bytes_down.get(reply.hospital_id, 0),
                "bytes_up": exchange.bytes_up.get(reply.hospital_id, 0),
                **reply.metrics,
            }
        )

    def _server_record(
        self,
        server_round: int,
        phase: str,
        outcome: RoundOutcome,
        traffic: _Traffic,
        result: FederationResult,
    ) -> dict:
        failures, rejected = traffic.failures, traffic.rejected
        lost = sorted(set(failures) | set(rejected) | set(outcome.refused))
        consistency = weight_dispersion(traffic.models) if len(traffic.models) >= 2 else None
        for hid, reason in failures.items():
            log.warning("round %d: hospital %d failed: %s", server_round, hid, reason)
        return {
            "kind": "server",
            "round": server_round,
            "phase": phase,
            "strategy": self.strategy.name,
            "accepted": outcome.accepted,
            "refused": outcome.refused,
            "failed": failures,
            "rejected": rejected,
            "skipped": outcome.skipped,
            "lost_work": {"hospitals": lost, "hospital_rounds": len(lost)},
            **traffic.totals,
            "bytes_per_edge": traffic.edges,
            "sim_comm_seconds": round_wall_time(traffic.waves, self.network),
            "federated_consistency": consistency,
            "max_epsilon": _max_epsilon(result.ledgers),
            **outcome.metrics,
        }


def _max_epsilon(ledgers: dict[int, PrivacyLedger]) -> float | None:
    values = [ledger.epsilon() for ledger in ledgers.values()]
    if any(v is None for v in values):
        return None
    return max((v for v in values if v is not None), default=0.0)
