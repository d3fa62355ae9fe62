"""Shared fixtures: a tiny run configuration that trains in seconds, and the contract checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
    "privacy.sample_rate=0.2",
    'simulation.device="cpu"',
]

#: Opt-in reproducible noise (simulation studies only) for tests that compare runs bit for bit.
REPRODUCIBLE = ["privacy.reproducible_noise=true", "site_policy.allow_reproducible_noise=true"]


def tiny_config(out: Path, *overrides: str) -> RunConfig:
    return load_config(None, [*TINY, f'out_dir="{out}"', *overrides])


def check_contract(run_dir: Path, shared: bool = False) -> str:
    """Check a run folder with the tests' own independent re-derivation (tests/contract.py) and, with
    ``shared`` and where it is present, with the shared contract checker too (it is slow: a few
    tests use it); fail the test on any shortfall."""
    from contract import shortfalls

    short = shortfalls(run_dir)
    assert not short, "\n".join(short)
    if not shared or not RUN_CONTRACT.exists():
        return "run folder holds the tests' own contract (shared checker not present)"
    done = subprocess.run(
        [sys.executable, str(RUN_CONTRACT), str(run_dir)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout
