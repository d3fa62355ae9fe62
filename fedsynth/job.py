"""The server side of a run, independent of Flower: rounds over a transport, then the run folder.

``run_federation`` is what the ServerApp calls with a Grid transport and what tests or a
Flower-free runner call with the in-process transport; both produce the same run folder.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from fedsynth.config.schema import RunConfig
from fedsynth.data import FederatedData, load_federation
from fedsynth.data.records import Dataset
from fedsynth.evaluation.amp import aggregated_model_performance, centralized_tstr
from fedsynth.evaluation.utility import train_on_test_on
from fedsynth.federation.coordinator import Coordinator, FederationResult
from fedsynth.federation.registry import make_strategy
from fedsynth.federation.transport import Transport
from fedsynth.hospital.store import HospitalStore
from fedsynth.models.generator import build_generator
from fedsynth.privacy.ledger import PrivacyLedger
from fedsynth.protocol import Arrays
from fedsynth.runfolder import RunFolder
from fedsynth.synthesis import save_class_grid, synthesize


def pooled(datasets: list[Dataset]) -> Dataset:
    """All records of ``datasets`` in one data set (same schema)."""
    return Dataset.concat(list(datasets), "pooled hospitals")


def run_federation(
    config: RunConfig, transport: Transport, on_round: Callable[[dict], None] | None = None, resume: bool = False
) -> dict:
    """Train through ``transport``, then write the complete run folder; returns the summary.

    With ``resume`` the run continues from the run folder's newest server checkpoint.
    """
    run = RunFolder(config.out_dir)
    data = load_federation(config.data, config.federation.num_hospitals, config.seed)
    if not resume:
        run.write_config(config)
        run.write_schema(data.schema)
    model = build_generator(data.schema, config.model, config.seed)
    strategy = make_strategy(config.federation, model.weights())
    result = Coordinator(config, strategy, transport, run, on_round).run_rounds(resume=resume)
    merge_site_ledgers(run, result)
    return finalize(config, run, data, strategy.final_weights(), strategy.describe_final(), result)


def merge_site_ledgers(run: RunFolder, result: FederationResult) -> None:
    """Where hospital state lives in the run folder (simulation), take a hospital's newest ledger
    on disk when it holds more events than its last reply did (e.g. it trained but answered too
    late): privacy.json must never report less than was spent."""
    root = run.path / "hospitals"
    if not root.is_dir():
        return
    for folder in sorted(root.iterdir()):
        match = re.fullmatch(r"hospital-(\d+)", folder.name)
        if match is None:
            continue
        hid = int(match.group(1))
        store = HospitalStore(folder)
        newest = store.latest_round()
        if newest is None:
            continue
        ledger = PrivacyLedger.from_dict(store.load(newest)["ledger"])
        known = result.ledgers.get(hid)
        if known is None or len(ledger.events) > len(known.events):
            result.ledgers[hid] = ledger


def finalize(
    config: RunConfig,
    run: RunFolder,
    data: FederatedData,
    weights: Arrays,
    description: str,
    result: FederationResult,
) -> dict:
    """Synthesize from the final model, score TSTR/TRTR, write privacy, summary and model."""
    model = build_generator(data.schema, config.model, config.seed)
    model.load_weights(weights)
    synthetic = synthesize(model, config.evaluation.num_synthetic, seed=config.seed)
    out = run.write_synthetic(synthetic)
    save_class_grid(synthetic, out / "samples.png")
    run.write_model(weights, config, data.schema, description)

    plans = {
        hid: {"noise_multiplier": ledger.events[-1].noise_multiplier, "sample_rate": ledger.events[-1].sample_rate}
        for hid, ledger in result.ledgers.items()
        if ledger.events
    }
    privacy = run.write_privacy(result.ledgers, config, data.schema, plans)
    tstr = train_on_test_on(synthetic, data.test, seed=config.seed)
    trtr = train_on_test_on(pooled(data.hospitals), data.test, seed=config.seed)
    epsilons = {hid: h["epsilon"] for hid, h in privacy["hospitals"].items()}
    amp = None
    if config.evaluation.centralized_baseline:
        central = centralized_tstr(config, pooled(list(data.hospitals)), data.test)
        amp = {
            "centralized_tstr": central,
            "federated_tstr_mcc": tstr.get("mcc"),
            **aggregated_model_performance(tstr.get("mcc"), central.get("mcc")),
            "note": "centralized generator: one site with all hospitals' records, same model, rounds, "
            "local steps, batch size and privacy budget",
        }
    summary = {
        "private": privacy["private"],
        "label": privacy["label"],
        "epsilon": epsilons,
        "max_epsilon": max((e for e in epsilons.values() if e is not None), default=None)
        if privacy["private"]
        else None,
        "delta": config.privacy.delta,
        "tstr": tstr,
        "trtr": trtr,
        "scored_model": description,
        "strategy": config.federation.strategy,
        "num_hospitals": config.federation.num_hospitals,
        "rounds": result.rounds_run,
        "num_synthetic": len(synthetic),
        "test_split": {"records": len(data.test), "note": "held-out real records no hospital trained on"},
        "aggregated_model_performance": amp,
        "communication": communication_totals(run),
    }
    run.write_summary(summary)
    return summary


def communication_totals(run: RunFolder) -> dict:
    """Bytes and simulated communication time over all rounds (from metrics.jsonl)."""
    rounds = [m for m in run.read_metrics() if m.get("kind") == "server"]
    return {
        "bytes_down": sum(m.get("bytes_down", 0) for m in rounds),
        "bytes_up": sum(m.get("bytes_up", 0) for m in rounds),
        "sim_comm_seconds": sum(m.get("sim_comm_seconds", 0.0) for m in rounds),
        "lost_hospital_rounds": sum(m.get("lost_work", {}).get("hospital_rounds", 0) for m in rounds),
    }
