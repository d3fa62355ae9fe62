"""Shared fixtures: a tiny run configuration that trains in seconds, and the contract checker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fedsynth.config import RunConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
RUN_CONTRACT = ROOT.parent / "shared" / "checks" / "run-contract"

#: Small enough for CI (seconds per run), large enough that every phase and network runs.
TINY = [
    "data.phantom_records=300",
    "train.rounds_autoencoder=1",
    "train.rounds_gan=2",
    "train.local_steps_autoencoder=3",
    "train.local_steps_gan=3",
    "train.generator_steps_per_round=2",
    "train.batch_size=16",
    "model.image_channels=8",
    "evaluation.num_synthetic=60",
    "evaluation.centralized_baseline=false",
    'simulation.device="cpu"',
]


def tiny_config(out: Path, *overrides: str) -> RunConfig:
    return load_config(None, [*TINY, f'out_dir="{out}"', *overrides])


def check_contract(run_dir: Path) -> str:
    """Run the independent contract checker; return its output, fail the test if it fails."""
    if not RUN_CONTRACT.exists():
        pytest.fail(f"contract checker not found at {RUN_CONTRACT}")
    done = subprocess.run(
        [sys.executable, str(RUN_CONTRACT), str(run_dir)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout
