"""Whole federations in-process (no Flower): strategies, failures, rejection, resume, metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import REPRODUCIBLE, check_contract, tiny_config

from fedsynth.federation.server import run_federation
from fedsynth.simulation import simulate_in_process
from fedsynth.simulation.inprocess import InProcessTransport
from fedsynth.simulation.sites import prepare_sites


def server_rounds(run: Path) -> list[dict]:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [x for x in lines if x["kind"] == "server"]


def hospital_lines(run: Path) -> list[dict]:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [x for x in lines if x["kind"] == "hospital"]


@pytest.mark.parametrize(
    "overrides",
    [
        ['federation.aggregation="mean"'],
        ['federation.aggregation="median"'],
        ['federation.aggregation="trimmed_mean"', "federation.trim_fraction=0.34"],
        ['federation.aggregation="krum"', "federation.num_hospitals=4", "federation.krum_malicious=0"],
        ['federation.strategy="ring"', 'federation.ring_schedule="sequential"', 'federation.ring_order="2,0,1"'],
        ['federation.strategy="ring"', 'federation.ring_schedule="synchronous"', 'federation.ring_final="last"'],
    ],
    ids=["fedavg", "median", "trimmed", "krum", "ring-seq", "ring-sync"],
)
def test_each_strategy_completes_and_holds_the_contract(tmp_path: Path, overrides: list[str]) -> None:
    cfg = tiny_config(tmp_path / "run", *overrides)
    summary = simulate_in_process(cfg)
    rounds = server_rounds(tmp_path / "run")
    assert [r["round"] for r in rounds] == [1, 2, 3]
    assert all(r["aggregated"] == 1.0 and r["accepted"] for r in rounds)
    assert all(r["federated_consistency"]["rel_distance_to_mean"] >= 0 for r in rounds)
    assert summary["strategy"] == cfg.federation.strategy and summary["scored_model"]
    check_contract(tmp_path / "run")


def test_ring_with_a_dead_hospital_completes_and_records_the_skip(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path / "run", 'federation.strategy="ring"', 'faults.drop="1@1"')
    simulate_in_process(cfg)
    rounds = server_rounds(tmp_path / "run")
    assert len(rounds) == 3
    for r in rounds:
        assert r["skipped"] == [1] and "1" in r["failed"]
        assert sorted(r["accepted"]) == [0, 2]
        assert r["lost_work"]["hospital_rounds"] == 1
    # Hospital 2 received hospital 0's model (relayed), skipping dead hospital 1.
    edges = rounds[1]["bytes_per_edge"]
    assert edges.get("hospital-0(relayed)->hospital-2", 0) > 0
    assert not any(k.startswith("hospital-1(relayed)") for k in edges)
    privacy = json.loads((tmp_path / "run" / "privacy.json").read_text())
    assert "1" not in privacy["hospitals"]  # it never trained


def test_star_goes_on_without_a_late_and_a_crashed_hospital(tmp_path: Path) -> None:
    cfg = tiny_config(
        tmp_path / "run",
        "federation.num_hospitals=3",
        "federation.min_hospitals=2",
        'faults.late="0@2"',
        'faults.crash="2@2"',
    )
    simulate_in_process(cfg)
    rounds = server_rounds(tmp_path / "run")
    assert sorted(rounds[1]["failed"]) == ["0", "2"] and rounds[1]["accepted"] == [1]
    assert rounds[1]["aggregated"] == 0.0  # fewer than min_hospitals answered: global model kept
    assert sorted(rounds[2]["accepted"]) == [0, 1, 2]  # the crashed hospital rejoined from its store
    privacy = json.loads((tmp_path / "run" / "privacy.json").read_text())
    # The late hospital trained in round 2 (its answer missed the deadline): that spend is reported.
    late_rounds = [e["round"] for e in privacy["hospitals"]["0"]["history"]]
    assert late_rounds == [1, 2, 3]
    crashed_rounds = [e["round"] for e in privacy["hospitals"]["2"]["history"]]
    assert crashed_rounds == [1, 3]
    check_contract(tmp_path / "run", shared=True)


def test_malformed_update_is_rejected_with_a_reason_and_the_round_goes_on(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path / "run", 'faults.corrupt="1@2"')
    simulate_in_process(cfg)
    rounds = server_rounds(tmp_path / "run")
    reason = rounds[1]["rejected"]["1"]
    assert "hospital 1" in reason and "NaN" in reason
    assert sorted(rounds[1]["accepted"]) == [0, 2] and rounds[1]["aggregated"] == 1.0
    line = [h for h in hospital_lines(tmp_path / "run") if h["round"] == 2 and h["hospital"] == 1][0]
    assert line["rejected"] == reason
    weights = np.load(tmp_path / "run" / "model" / "weights.npz")
    assert all(np.isfinite(weights[k]).all() for k in weights.files)


class Killed(Exception):
    pass


def crash_after_round_2(cfg) -> None:
    """Run ``cfg`` until the server dies after round 2, before its checkpoint."""

    def crash(record: dict) -> None:
        if record["round"] == 2:
            raise Killed

    schema, sites = prepare_sites(cfg, late_seconds=0.0)
    with pytest.raises(Killed):
        run_federation(cfg, schema, InProcessTransport.from_sites(sites), on_round=crash)


@pytest.mark.parametrize("strategy", ["fedavg", "ring"])
def test_resume_after_a_crash_gives_the_uninterrupted_result(tmp_path: Path, strategy: str) -> None:
    """Bit-identical only in the opt-in reproducible-noise mode (secret noise never repeats)."""
    straight = simulate_in_process(tiny_config(tmp_path / "a", f'federation.strategy="{strategy}"', *REPRODUCIBLE))
    cfg = tiny_config(tmp_path / "b", f'federation.strategy="{strategy}"', *REPRODUCIBLE)
    crash_after_round_2(cfg)
    resumed = simulate_in_process(cfg, resume=True)
    wa, wb = np.load(tmp_path / "a/model/weights.npz"), np.load(tmp_path / "b/model/weights.npz")
    for k in wa.files:
        np.testing.assert_allclose(wa[k], wb[k], rtol=0, atol=1e-6, err_msg=k)
    assert resumed["tstr"]["mcc"] == pytest.approx(straight["tstr"]["mcc"], abs=1e-9)
    assert resumed["epsilon"] == straight["epsilon"]
    # A reproducible study says, everywhere, that its noise is no secret.
    privacy = json.loads((tmp_path / "b" / "privacy.json").read_text())
    assert privacy["reproducible_noise"] and privacy["guarantee"]["level"] == "none"
    assert "holds the seed" in resumed["label"] == privacy["label"]
    assert [r["round"] for r in server_rounds(tmp_path / "b")] == [1, 2, 3]
    assert (tmp_path / "b" / "metrics.interrupted.jsonl").exists()  # the lost round's lines are kept
    check_contract(tmp_path / "b")


def test_resume_with_secret_noise_completes_and_charges_every_round(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path / "run")
    crash_after_round_2(cfg)
    simulate_in_process(cfg, resume=True)
    check_contract(tmp_path / "run")  # includes: every accepted round has its ledger entry
    privacy = json.loads((tmp_path / "run" / "privacy.json").read_text())
    for h in privacy["hospitals"].values():  # round 2 was answered from the store, not trained twice
        assert [e["round"] for e in h["history"]] == [1, 2, 3]


def test_a_different_instruction_after_resume_is_charged_again(tmp_path: Path) -> None:
    """If the resumed server sends something else for a round already trained, the hospital
    trains again and its ledger keeps both runs: epsilon is never under-reported."""
    from fedsynth.hospital.service import HospitalService
    from fedsynth.protocol import RoundInstruction
    from fedsynth.simulation.sites import prepare_sites

    cfg = tiny_config(tmp_path / "run")
    _, sites = prepare_sites(cfg, late_seconds=0.0)
    job = make_job(cfg, sites[0])
    service = HospitalService(sites[0])
    service.handle(RoundInstruction(1, "autoencoder", job=job))
    first = service.handle(RoundInstruction(2, "gan", job=job))
    again = HospitalService(sites[0]).handle(RoundInstruction(2, "gan", merge_rule="median", job=job))
    assert [e["round"] for e in first.ledger["history"]] == [1, 2]
    assert [e["round"] for e in again.ledger["history"]] == [1, 2, 2]
    replay = HospitalService(sites[0]).handle(RoundInstruction(2, "gan", merge_rule="median", job=job))
    assert replay.ledger == again.ledger  # an identical instruction is answered from the store


def make_job(cfg, site):
    from sites import job_for

    from fedsynth.data.records_file import load_records

    return job_for(cfg, load_records(site.data_path), "run-x")


def test_byte_counts_and_simulated_time_are_consistent(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path / "star")
    simulate_in_process(cfg)
    for r in server_rounds(tmp_path / "star"):
        per_hospital = [h for h in hospital_lines(tmp_path / "star") if h["round"] == r["round"]]
        assert r["bytes_down"] == sum(h["bytes_down"] for h in per_hospital)
        assert r["bytes_up"] == sum(h["bytes_up"] for h in per_hospital)
        assert sum(r["bytes_per_edge"].values()) == r["bytes_down"] + r["bytes_up"]
        assert r["sim_comm_seconds"] > 0
    slow = tiny_config(tmp_path / "slow", "network.bandwidth_mbps=1.0")
    simulate_in_process(slow)
    assert (
        server_rounds(tmp_path / "slow")[0]["sim_comm_seconds"]
        > 10 * server_rounds(tmp_path / "star")[0]["sim_comm_seconds"]
    )
