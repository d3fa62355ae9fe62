"""The server side of a run, independent of Flower: rounds over a transport, then the run folder.

The server works from the consortium's *public* schema and the hospitals' replies alone: it never
opens a hospital's records. ``run_federation`` is what the ServerApp calls with a Grid transport and
what the simulation calls with the in-process transport; both produce the same run folder:
config.toml, schema.json, metrics.jsonl, privacy.json (built from the ledgers hospitals reported),
model/, synthetic/ and summary.json. Scores that need real records (TSTR, TRTR, the centralized
baseline) belong to whoever owns the data: the simulation's audit adds them
(:mod:`fedsynth.simulation.audit`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from collections.abc import Callable
from typing import Protocol

from fedsynth.config.schema import RunConfig
from fedsynth.data.records import Schema
from fedsynth.federation.coordinator import Coordinator, FederationResult
from fedsynth.federation.packing import MIN_ROUNDED_SIZE
from fedsynth.federation.privacy_report import HospitalPrivacy, privacy_document
from fedsynth.federation.registry import make_strategy
from fedsynth.federation.strategy import Strategy
from fedsynth.federation.transport import Transport
from fedsynth.models.architectures import build_architecture
from fedsynth.models.generator import build_generator
from fedsynth.privacy.ledger import PrivacyLedger
from fedsynth.protocol import Arrays, Job
from fedsynth.runfolder import RunFolder, write_json
from fedsynth.site.code import app_code_digest
from fedsynth.synthesis import save_class_grid, synthesize

log = logging.getLogger(__name__)


def run_identity(run: RunFolder, resume: bool) -> str:
    """The run's id: new for a new run, the saved one when resuming (hospitals key state by it)."""
    path = run.path / "server" / "run.json"
    if resume and path.exists():
        return str(json.loads(path.read_text())["run_id"])
    run_id = uuid.uuid4().hex
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {"run_id": run_id})
    return run_id


def fit_schedule(config: RunConfig, schema: Schema) -> RunConfig:
    """The run's configuration with the Gaussian schedule's image releases dropped for data without
    images (their budget shares go to the latent-moments release); otherwise ``config`` itself."""
    train = config.train
    if train.schedule != "gaussian" or schema.has_image:
        return config
    if train.gaussian_mean_share == 0 and train.gaussian_basis_share == 0:
        return config
    log.info("the data have no images: the Gaussian schedule skips its image releases")
    return dataclasses.replace(
        config, train=dataclasses.replace(train, gaussian_mean_share=0.0, gaussian_basis_share=0.0)
    )


def make_job(config: RunConfig, schema: Schema, run_id: str) -> Job:
    """The public job description every instruction of the run carries."""
    return Job(
        run_id=run_id,
        seed=config.seed,
        model=config.model,
        train=config.train,
        privacy=config.privacy,
        schema_digest=schema.digest(),
        code_digest=app_code_digest(),
        ring_sealed=config.federation.ring_sealed,
    )


class ServerHook(Protocol):
    """A plug-in that changes what the server does, e.g. the red team's malicious server
    (:class:`fedsynth.attacks.server.AttackHook`): ``job`` may rewrite the public job description
    (a code-shipping server ships its own architecture) and ``strategy`` wraps the run's strategy
    (rewriting what it sends, reading what comes back)."""

    def job(self, job: Job) -> Job: ...

    def strategy(self, inner: Strategy, job: Job, schema: Schema, run: RunFolder) -> Strategy: ...


def run_federation(
    config: RunConfig,
    schema: Schema,
    transport: Transport,
    on_round: Callable[[dict], None] | None = None,
    resume: bool = False,
    hook: ServerHook | None = None,
) -> dict:
    """Train through ``transport``, then write the server's part of the run folder; returns the
    server's summary. With ``resume`` the run continues from the folder's newest checkpoint;
    ``hook`` plugs in a server wrapper (see :class:`ServerHook`)."""
    config = fit_schedule(config, schema)
    run = RunFolder(config.out_dir)
    if not resume:
        run.write_config(config)
        run.write_schema(schema)
    job = make_job(config, schema, run_identity(run, resume))
    if hook is not None:
        job = hook.job(job)
    model = build_architecture(job.architecture, schema, job.model, job.seed, job.architecture_options)
    strategy = make_strategy(config.federation, model.weights())
    if hook is not None:
        strategy = hook.strategy(strategy, job, schema, run)
    result = Coordinator(config, job, strategy, transport, run, on_round).run_rounds(resume=resume)
    return finalize(config, schema, run, strategy.final_weights(), strategy.describe_final(), result)


def this_run_privacy(ledger: PrivacyLedger, plan: dict, run_id: str) -> HospitalPrivacy:
    """A site's reported ledger split into this run's mechanisms and the site's earlier runs on the
    same records (``other_releases``): the epsilon composes both, the history says which is which."""
    own = [e for e in ledger.events if e.run == run_id]
    earlier = [e for e in ledger.events if e.run != run_id]
    return HospitalPrivacy(PrivacyLedger(ledger.delta, ledger.accountant, own), plan, earlier)


def finalize(
    config: RunConfig, schema: Schema, run: RunFolder, weights: Arrays, description: str, result: FederationResult
) -> dict:
    """Synthesize from the final model; write model, synthetic data, privacy.json and summary.json."""
    model = build_generator(schema, config.model, config.seed)
    model.load_weights(weights)
    synthetic = synthesize(model, config.evaluation.num_synthetic, seed=config.seed)
    out = run.write_synthetic(synthetic)
    save_class_grid(synthetic, out / "samples.png")
    run.write_model(weights, config, schema, description)

    hospitals = {
        hid: this_run_privacy(ledger, result.plans.get(hid, {}), run_identity(run, resume=True))
        for hid, ledger in result.ledgers.items()
        if ledger.events or hid in result.refusals
    }
    privacy = privacy_document(hospitals, schema, result.refusals)
    run.write_privacy(privacy)
    summary = {
        **privacy_summary(privacy),
        "scored_model": description,
        "strategy": config.federation.strategy,
        "num_hospitals": config.federation.num_hospitals,
        "rounds": result.rounds_run,
        "num_synthetic": len(synthetic),
        "communication": {**communication_totals(run), **transfer_declaration(config)},
    }
    run.write_summary(summary)
    return summary


def privacy_summary(privacy: dict) -> dict:
    """The privacy block of summary.json, from privacy.json."""
    epsilons = {hid: h["epsilon"] for hid, h in privacy["hospitals"].items()}
    deltas = [h["delta"] for h in privacy["hospitals"].values()]
    return {
        "private": privacy["private"],
        "label": privacy["label"],
        "guarantee": privacy["guarantee"],
        "neighbouring_relation": privacy["neighbouring_relation"],
        "reproducible_noise": privacy["reproducible_noise"],
        "epsilon": epsilons,
        "max_epsilon": max((e for e in epsilons.values() if e is not None), default=None)
        if privacy["private"]
        else None,
        "delta": max(deltas) if deltas else None,
        "refusals": privacy["refusals"],
    }


def transfer_declaration(config: RunConfig) -> dict:
    """How weights travelled: exactly, or rounded in transit (post-processing of DP outputs, after
    the sites added their noise: the ledger and privacy.json are the same either way)."""
    precision = config.federation.transfer_precision
    declared: dict = {"transfer_precision": precision}
    if precision != "float32":
        declared["transfer_note"] = (
            f"model weights were rounded to {precision} on the wire, both ways (arrays under "
            f"{MIN_ROUNDED_SIZE} values and "
            "non-finite ones exactly): post-processing of the sites' DP outputs, charged nothing"
        )
    return declared


def communication_totals(run: RunFolder) -> dict:
    """Bytes and simulated communication time over all rounds and the release (from metrics.jsonl)."""
    rounds = [m for m in run.read_metrics() if m.get("kind") in ("server", "release")]
    return {
        "bytes_down": sum(m.get("bytes_down", 0) for m in rounds),
        "bytes_up": sum(m.get("bytes_up", 0) for m in rounds),
        "sim_comm_seconds": sum(m.get("sim_comm_seconds", 0.0) for m in rounds),
        "lost_hospital_rounds": sum(m.get("lost_work", {}).get("hospital_rounds", 0) for m in rounds),
    }
