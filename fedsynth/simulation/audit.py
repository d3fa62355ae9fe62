"""The simulation's audit of a finished run: scores that need real records, and their privacy cost.

The server of a run never sees a record, so it cannot say how useful the synthetic data is. The
simulation owns the data and can: it scores TSTR (train on the run's synthetic data, test on the
held-out real split), TRTR (the same on the pooled real training records) and, when asked, trains a
centralized generator on the pooled records under the same budget (AMP). These are written into
summary.json and declared in privacy.json as what they are: values computed on real records
without DP, to be kept inside the data owners' walls.

The centralized baseline is a second DP release on the same patients. Its mechanism history is
composed into every hospital's history in privacy.json (``other_releases``), so the epsilon
reported for each patient covers both releases. It draws its own secret randomness.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from fedsynth.config.schema import RunConfig
from fedsynth.data import FederatedData, load_federation
from fedsynth.data.records import Dataset
from fedsynth.evaluation.amp import aggregated_model_performance
from fedsynth.evaluation.run import load_synthetic
from fedsynth.evaluation.run import pool as pool_datasets
from fedsynth.evaluation.utility import train_on_test_on
from fedsynth.federation.privacy_report import hospitals_from_document, privacy_document
from fedsynth.federation.server import fit_schedule, make_job, privacy_summary
from fedsynth.hospital.hospital import Hospital, resolve_device
from fedsynth.hospital.plan import PrivacyPlan, local_steps, resolve_plan
from fedsynth.models.generator import build_generator
from fedsynth.privacy.accounting import MechanismEvent
from fedsynth.privacy.ledger import PrivacyLedger
from fedsynth.privacy.randomness import ReproducibleRandomness, SecureRandomness
from fedsynth.progress import PhaseProgress, StepCallback
from fedsynth.protocol import RoundInstruction
from fedsynth.runfolder import RunFolder
from fedsynth.synthesis import synthesize

BASELINE_RUN = "centralized-baseline"
#: Stream id of the baseline in reproducible studies (never a hospital's id).
BASELINE_STREAM = 1_000_003

AUDIT_NOTE_BASELINE = "trained by the simulation on the pooled real records"
AUDIT_NOTE = (
    "computed by the simulation on real records (held-out test split, pooled training records) without "
    "differential privacy: audit values, keep them inside the data owners' walls"
)


def centralized_baseline(
    config: RunConfig, pool: Dataset, test: Dataset, on_round: StepCallback | None = None
) -> tuple[dict, list[MechanismEvent]]:
    """Train the generator on ``pool`` in one place under the same request; (TSTR on ``test``, events).

    The plan follows the same rules as a simulated hospital with the run's site policy, without a
    lifetime cap (the baseline's spend is reported composed with each hospital's instead).
    ``on_round(done, total)`` is called after every round: a whole generator trained on the pooled
    records takes as long as the federation's rounds, and the console shows its progress.
    """
    config = fit_schedule(config, pool.schema)
    policy = dataclasses.replace(config.site_policy, lifetime_epsilon_budget=0.0)
    plan = resolve_plan(
        config.privacy, config.train, policy, len(pool), PrivacyLedger(config.privacy.delta), BASELINE_RUN
    )
    if isinstance(plan, str):
        return {"skipped": f"the centralized baseline cannot run: {plan}"}, []
    job = make_job(config, pool.schema, BASELINE_RUN)
    hospital = Hospital(BASELINE_STREAM, pool, job, plan, resolve_device(config.simulation.device))
    hospital.model.load_weights(build_generator(pool.schema, config.model, config.seed).weights())
    events: list[MechanismEvent] = []
    randomness = ReproducibleRandomness(config.seed, BASELINE_STREAM) if plan.reproducible else SecureRandomness()
    for server_round in range(1, config.train.num_rounds + 1):
        phase = config.train.phase_of_round(server_round)
        events.append(plan.event(phase, server_round, local_steps(config.train, phase), config.train))
        hospital.train_round(RoundInstruction(server_round, phase, job=job), randomness.mechanism(len(events) - 1))
        if on_round is not None:
            on_round(server_round, config.train.num_rounds)
    synthetic = synthesize(hospital.model, config.evaluation.num_synthetic, seed=config.seed)
    tstr = train_on_test_on(synthetic, test, seed=config.seed)
    tstr["epsilon"] = PrivacyLedger(plan.delta, plan.accountant, events).epsilon()  # type: ignore[arg-type]
    tstr["plan"] = _plan_summary(plan)
    return tstr, events


def _plan_summary(plan: PrivacyPlan) -> dict:
    return {k: v for k, v in plan.to_dict().items() if k in ("noise_multiplier", "sample_rate", "delta")}


def audit_run(config: RunConfig, fed: FederatedData | None = None, progress: PhaseProgress | None = None) -> dict:
    """Add TSTR/TRTR (and the centralized baseline) to the run folder; returns the new summary.

    Its steps (and the baseline's rounds) are shown on ``progress``, by default a
    :class:`~fedsynth.progress.PhaseProgress` of its own (drawn on a terminal only)."""
    if progress is None:
        with PhaseProgress() as own:
            return audit_run(config, fed, own)
    progress.phase("audit", 3, "records")
    run = RunFolder(config.out_dir)
    fed = fed or load_federation(config.data, config.federation.num_hospitals, config.seed)
    synthetic = load_synthetic(Path(run.path) / "synthetic" / "samples.npz", fed.schema)
    pool, _ = pool_datasets(list(fed.hospitals))
    progress.advance("TSTR")
    tstr = train_on_test_on(synthetic, fed.test, seed=config.seed)
    progress.advance("TRTR")
    trtr = train_on_test_on(pool, fed.test, seed=config.seed)
    progress.advance()
    summary = run.read_json("summary.json")
    privacy = run.read_json("privacy.json")
    releases = [
        {
            "what": "TSTR and TRTR scores (MCC, AUROC, balanced accuracy) with the class counts of the real "
            "test split and of the pooled real training records",
            "where": "summary.json (tstr, trtr)",
            "basis": AUDIT_NOTE,
        },
        {"what": "size of the held-out real test split", "where": "summary.json (test_split)", "basis": AUDIT_NOTE},
    ]
    server_releases = [
        r
        for r in privacy["declared_releases"]
        if not str(r.get("basis", "")).startswith((AUDIT_NOTE, AUDIT_NOTE_BASELINE))
    ]
    amp, baseline_events = None, []
    if config.evaluation.centralized_baseline:
        progress.phase("centralized baseline rounds", config.train.num_rounds)
        central, baseline_events = centralized_baseline(config, pool, fed.test, progress.step_callback())
        amp = {
            "centralized_tstr": central,
            "federated_tstr_mcc": tstr.get("mcc"),
            **aggregated_model_performance(tstr.get("mcc"), central.get("mcc")),
            "note": "centralized generator: one site with all hospitals' records, same model, rounds, "
            "local steps, privacy request; its DP spend is composed into every hospital's epsilon",
        }
        releases.append(
            {
                "what": "centralized baseline's TSTR score (a second DP release on the same patients)",
                "where": "summary.json (aggregated_model_performance)",
                "basis": AUDIT_NOTE_BASELINE
                + "; the baseline model itself is DP and its mechanism history is composed "
                "into every hospital's epsilon (other_releases)",
            }
        )
    if baseline_events:
        hospitals = hospitals_from_document(privacy)
        for info in hospitals.values():
            info.other_releases = [*info.other_releases, *baseline_events]  # after earlier runs
        refusals = {int(h): r for h, r in privacy.get("refusals", {}).items()}
        privacy = privacy_document(hospitals, fed.schema, refusals, server_releases + releases)
    else:
        privacy["declared_releases"] = server_releases + releases
    run.write_privacy(privacy)
    summary.update(privacy_summary(privacy))
    summary.update(
        {
            "tstr": tstr,
            "trtr": trtr,
            "test_split": {"records": len(fed.test), "note": "held-out real records no hospital trained on"},
            "aggregated_model_performance": amp,
            "audit": AUDIT_NOTE + " (tstr, trtr, test_split)",
        }
    )
    run.write_summary(summary)
    return summary
