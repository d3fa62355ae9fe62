"""The in-process engine's resident workers: how hospitals are spread, and that spreading them over
worker processes (or running them behind Flower) changes no result for the same seeds."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from conftest import REPRODUCIBLE, check_contract, tiny_config

from fedsynth.config.schema import SimulationConfig
from fedsynth.errors import FedsynthError
from fedsynth.federation.strategy import Send
from fedsynth.privacy.ledger import PrivacyLedger
from fedsynth.simulation import simulate, simulate_in_process
from fedsynth.simulation.sites import prepare_sites
from fedsynth.simulation.workers import WorkerPoolTransport, plan_workers


def test_plan_spreads_hospitals_round_robin_and_shares_the_cores() -> None:
    plan = plan_workers(SimulationConfig(device="cpu"), list(range(7)), cores=2, gpus=0)
    assert plan.workers == 2 and plan.threads == 1 and plan.gpus == (None, None)
    assert plan.hospitals_of(0) == [0, 2, 4, 6] and plan.hospitals_of(1) == [1, 3, 5]
    # Never more workers than hospitals; the cores go to the workers there are.
    few = plan_workers(SimulationConfig(device="cpu"), [0, 1], cores=8, gpus=0)
    assert few.workers == 2 and few.threads == 4
    assert plan_workers(SimulationConfig(device="cpu", workers=1), [0, 1, 2], cores=2, gpus=0).threads == 2
    explicit = plan_workers(SimulationConfig(device="cpu", workers=3, threads=1), list(range(5)), cores=2, gpus=0)
    assert (explicit.workers, explicit.threads) == (3, 1)


def test_plan_puts_one_worker_on_each_visible_gpu() -> None:
    plan = plan_workers(SimulationConfig(device="auto"), list(range(10)), cores=16, gpus=4)
    assert plan.gpus == (0, 1, 2, 3) and plan.threads == 4
    assert sorted(h for w in range(4) for h in plan.hospitals_of(w)) == list(range(10))
    # Hospitals told to train on the CPU ignore the GPUs.
    assert plan_workers(SimulationConfig(device="cpu"), list(range(10)), cores=16, gpus=0).gpus == (None,) * 10


def test_negative_worker_counts_are_refused_by_name() -> None:
    with pytest.raises(Exception, match="simulation.workers"):
        SimulationConfig(workers=-1)
    with pytest.raises(Exception, match="simulation.threads"):
        SimulationConfig(threads=-2)


def _weights(run: Path) -> dict[str, np.ndarray]:
    with np.load(run / "model" / "weights.npz") as z:
        return {k: z[k] for k in z.files}


def _histories(run: Path) -> dict[str, list]:
    privacy = json.loads((run / "privacy.json").read_text())
    return {
        h: [(e["phase"], e["round"], e["noise_multiplier"]) for e in p["history"]]
        for h, p in privacy["hospitals"].items()
    }


def _assert_same_run(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        # Same seeds, same mechanism; only float reduction order may differ (threads per process).
        np.testing.assert_allclose(wa[name], wb[name], rtol=1e-4, atol=1e-5, err_msg=name)
    assert _histories(a) == _histories(b)
    sa, sb = (json.loads((r / "summary.json").read_text()) for r in (a, b))
    assert sa["epsilon"] == sb["epsilon"]


def test_workers_flower_and_one_process_give_the_same_run_for_the_same_seeds(tmp_path: Path) -> None:
    one = tmp_path / "one-process"
    simulate_in_process(tiny_config(one, "simulation.workers=1", *REPRODUCIBLE))
    pooled = tmp_path / "two-workers"
    simulate_in_process(tiny_config(pooled, "simulation.workers=2", *REPRODUCIBLE))
    flower = tmp_path / "flower"
    simulate(tiny_config(flower, *REPRODUCIBLE))
    for run in (one, pooled, flower):
        check_contract(run)
    _assert_same_run(one, pooled)
    _assert_same_run(one, flower)


def test_a_simulated_fault_behind_a_worker_is_a_failure_of_that_hospital(tmp_path: Path) -> None:
    run = tmp_path / "run"
    summary = simulate_in_process(tiny_config(run, "simulation.workers=2", 'faults.drop="1@1"'))
    rounds = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    first = next(r for r in rounds if r.get("kind") == "server" and r["round"] == 1)
    assert "1" in {str(h) for h in first["failed"]} and 1 not in first["accepted"]
    assert summary["rounds"] == 3
    check_contract(run)


def test_a_dead_worker_is_named_not_waited_for(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path / "run", "simulation.workers=2")
    _, sites = prepare_sites(cfg, late_seconds=0.0)
    plan = plan_workers(cfg.simulation, sorted(sites))
    with WorkerPoolTransport(sites, plan) as pool:
        (pid,) = pool.pids  # worker 1's process; worker 0 is this one
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(FedsynthError, match=r"worker 1 \(hospitals \[1\]\) died \(exit code -9\)"):
            pool.exchange([Send(1, _instruction(cfg, sites))], timeout=10)
    assert not pool.pids


def test_a_late_worker_fails_its_hospitals_for_the_wave_and_its_spend_is_still_reported(tmp_path: Path) -> None:
    """A worker process that does not answer within the timeout (here: stopped with SIGSTOP) fails
    its hospitals for that wave while worker 0's answer is kept; its late answer is discarded, the
    next wave's answers are the next wave's, and the spend of the wave it answered late is in the
    ledger it reports at the end."""
    cfg = tiny_config(tmp_path / "run", "simulation.workers=2")
    _, sites = prepare_sites(cfg, late_seconds=0.0)
    plan = plan_workers(cfg.simulation, sorted(sites))
    first = _instruction(cfg, sites)
    second = dataclasses.replace(first, server_round=2)
    third = dataclasses.replace(first, server_round=3)
    with WorkerPoolTransport(sites, plan) as pool:
        (pid,) = pool.pids
        os.kill(pid, signal.SIGSTOP)
        try:
            late = pool.exchange([Send(0, first), Send(1, first)], timeout=2)
            assert late.failures == {1: "no reply within 2 s (worker 1 still busy)"}
            assert [(r.hospital_id, r.server_round) for r in late.replies] == [(0, 1)]
            # Still stopped: the next wave is not written to it (it would block on a full socket),
            # and its hospitals fail again; the ledger query leaves it out.
            again = pool.exchange([Send(0, second), Send(1, second)], timeout=1)
            assert set(again.failures) == {1} and [r.hospital_id for r in again.replies] == [0]
            assert sorted(pool.ledgers([0, 1], timeout=1)) == [0]
        finally:
            os.kill(pid, signal.SIGCONT)
        on_time = pool.exchange([Send(0, third), Send(1, third)], timeout=120)
        assert not on_time.failures
        assert [(r.hospital_id, r.server_round) for r in on_time.replies] == [(0, 3), (1, 3)]
        ledgers = pool.ledgers([0, 1], timeout=120)
    rounds = {h: [e.round for e in PrivacyLedger.from_dict(report).events] for h, report in ledgers.items()}
    # Hospital 1 never received round 2 (its worker was busy); its late round 1 was spent and is reported.
    assert rounds == {0: [1, 2, 3], 1: [1, 3]}


def _instruction(cfg, sites):  # noqa: ANN001, ANN202 - a round-1 instruction of the run's job
    from fedsynth.federation.server import make_job
    from fedsynth.protocol import RoundInstruction
    from fedsynth.simulation.sites import existing_sites

    schema, _ = existing_sites(cfg)
    job = make_job(cfg, schema, "run-test")
    return RoundInstruction(server_round=1, phase="autoencoder", weights=None, job=job)
