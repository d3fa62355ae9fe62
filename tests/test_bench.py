"""``fedsynth bench`` on tiny sizes: the functions run and return finite, consistent figures.

Structural only: each ratio is the quotient of the two figures it names; no timing is asserted
(the numbers belong in experiments/bench/RESULTS.md, measured side by side in one run)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from fedsynth.bench.communication import CommunicationRow, bench_communication
from fedsynth.bench.dp_step import NETWORKS, DPStepRow, DPStepSize, bench_dp_steps
from fedsynth.bench.measure import StepCost, ratio
from fedsynth.bench.report import communication_table, dp_step_size, dp_step_tables
from fedsynth.cli.main import app

TINY_STEP = DPStepSize(batch_size=3, image_size=8, warmup=0, repeats=1)
TINY_MODEL = ["data.image_size=16", "model.image_channels=4", "train.rounds_autoencoder=1", "train.rounds_gan=1"]


@pytest.fixture(scope="module")
def dp_rows() -> list[DPStepRow]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny steps: threads only contend (seconds instead of tenths on a busy machine)
    try:
        return bench_dp_steps(TINY_STEP, "cpu")
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def communication_rows() -> list[CommunicationRow]:
    return bench_communication(TINY_MODEL)


def _same(value: float, expected: float) -> bool:
    return (math.isnan(value) and math.isnan(expected)) or value == pytest.approx(expected)


def test_dp_step_rows_are_finite_positive_and_ratios_are_quotients(dp_rows: list[DPStepRow]) -> None:
    assert [r.network for r in dp_rows] == list(NETWORKS)
    for row in dp_rows:
        assert row.parameters > 0 and row.batch_size == TINY_STEP.batch_size
        for cost in (row.fedsynth, row.plain, row.opacus, row.ghost):
            assert isinstance(cost, StepCost) and cost.steps == TINY_STEP.repeats
            assert math.isfinite(cost.seconds) and cost.seconds > 0
            assert cost.peak_bytes >= 0
        assert row.fedsynth.peak_bytes > 0  # per-sample gradients are allocated in every DP step
        assert row.ghost_over_plain_time == pytest.approx(row.ghost.seconds / row.plain.seconds)
        assert row.ghost_over_opacus_time == pytest.approx(row.ghost.seconds / row.opacus.seconds)
        assert _same(row.ghost_over_plain_memory, ratio(row.ghost.peak_bytes, row.plain.peak_bytes))
        assert _same(row.ghost_over_opacus_memory, ratio(row.ghost.peak_bytes, row.opacus.peak_bytes))
        assert row.dp_over_plain_time == pytest.approx(row.fedsynth.seconds / row.plain.seconds)
        assert row.fedsynth_over_opacus_time == pytest.approx(row.fedsynth.seconds / row.opacus.seconds)
        assert _same(row.dp_over_plain_memory, ratio(row.fedsynth.peak_bytes, row.plain.peak_bytes))
        assert _same(row.fedsynth_over_opacus_memory, ratio(row.fedsynth.peak_bytes, row.opacus.peak_bytes))
    table = dp_step_tables(dp_rows, TINY_STEP, torch.device("cpu"))
    assert all(name in table for name in NETWORKS)
    assert "ghost / Opacus" in table and "hooks / plain" in table and "fedsynth ghost MB" in table


def test_communication_rows_count_real_messages(communication_rows: list[CommunicationRow]) -> None:
    phases = {(r.schedule, r.phase) for r in communication_rows}
    assert phases == {
        ("gan", "autoencoder"),
        ("gan", "gan"),
        ("gaussian", "image-mean"),
        ("gaussian", "image-basis"),
        ("gaussian", "latent-moments"),
    }
    for row in communication_rows:
        assert 0 < row.raw_bytes < row.array_record_bytes < row.wire_bytes and row.arrays > 0
        assert row.wire_over_raw == pytest.approx(row.wire_bytes / row.raw_bytes)
        assert row.framing_bytes + row.metadata_bytes == row.wire_bytes - row.raw_bytes
    # An instruction carries the whole model; a reply only what its phase trained.
    gan = {(r.phase, r.direction): r for r in communication_rows if r.schedule == "gan"}
    assert gan["autoencoder", "instruction"].raw_bytes == gan["gan", "instruction"].raw_bytes
    whole = gan["gan", "instruction"].raw_bytes
    assert gan["autoencoder", "reply"].raw_bytes + gan["gan", "reply"].raw_bytes == whole
    assert "wire / raw" in communication_table(communication_rows)


def test_ratio_of_an_unmeasured_figure_is_nan() -> None:
    assert math.isnan(ratio(1.0, 0)) and ratio(3.0, 2.0) == 1.5
    assert np.isfinite(ratio(1, 3))


def test_sizes_and_tables_are_checked() -> None:
    assert dp_step_size(torch.device("cpu"), batch_size=5).batch_size == 5
    with pytest.raises(ValueError, match="repeats"):
        DPStepSize(repeats=0)
    done = CliRunner().invoke(app, ["bench", "--table", "nonsense"])
    assert done.exit_code == 2 and "unknown table" in done.output


def test_the_plain_loop_does_the_same_work_as_the_engine(tmp_path) -> None:
    """The engines table's baseline trains exactly what the engine trains: same seeds, same final
    weights (so the ratio compares equal work)."""
    from fedsynth.bench.engines import EngineSize, bench_config, plain_loop
    from fedsynth.simulation import simulate_in_process
    from fedsynth.simulation.sites import prepare_sites

    size = EngineSize(hospitals=(2,), records_per_hospital=40, rounds=2, local_steps=2, batch_size=8, image_size=16)
    reproducible = ["privacy.reproducible_noise=true", "site_policy.allow_reproducible_noise=true"]
    config = bench_config(2, size, tmp_path / "plain", *reproducible)
    schema, sites = prepare_sites(config, late_seconds=0.0)
    plain = plain_loop(config, schema, sites)
    engine = bench_config(2, size, tmp_path / "engine", "simulation.workers=1", *reproducible)
    simulate_in_process(engine)
    with np.load(tmp_path / "engine" / "model" / "weights.npz") as saved:
        assert set(saved.files) == set(plain)
        for name in saved.files:
            np.testing.assert_allclose(saved[name], plain[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_engines_table_rows_are_consistent(tmp_path) -> None:
    from fedsynth.bench.engines import EngineSize, bench_engines, engine_rows, engine_tables

    size = EngineSize(
        hospitals=(2,),
        records_per_hospital=40,
        rounds=1,
        local_steps=1,
        batch_size=8,
        image_size=16,
        variants=("plain loop", "in-process, 1 worker", "in-process, workers"),
    )
    runs = bench_engines(size)
    rows = engine_rows(runs)
    assert [r["variant"] for r in rows] == list(size.variants)
    plain = rows[0]["seconds"]
    for row in rows:
        assert row["seconds"] > 0 and _same(row["ratio"], row["seconds"] / plain)
    text = engine_tables(runs, size)
    assert "| 2 | in-process, workers |" in text and "Hospitals vs time and memory" in text
    with pytest.raises(ValueError, match="unknown engine variant"):
        EngineSize(variants=("spark",))
