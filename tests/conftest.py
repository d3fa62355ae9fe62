"""Shared fixtures: a tiny run configuration that trains in seconds, and the contract checks."""

from __future__ import annotations

import os
import shutil
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
    "privacy.sample_rate=0.2",
    'simulation.device="cpu"',
    "simulation.workers=1",
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


BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _find_chromium() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def _try_install() -> None:
    """CI only: install Debian's chromium (root, apt-get available); errors surface as a missing browser."""
    if not (hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get")):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        subprocess.run(cmd, env=env, capture_output=True, timeout=900, check=False)


@pytest.fixture(scope="session")
def chromium() -> str:
    """A headless browser for the report tests: skipped without one, unless CI is set (then it is
    installed with apt-get, and its absence fails)."""
    path = _find_chromium()
    if path is None and os.environ.get("CI"):
        _try_install()
        path = _find_chromium()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (apt-get install -y chromium); required when CI is set")
        pytest.skip("chromium is not installed (set CI=1 to make this a failure)")
    return path


#: Test modules that start Ray (Flower's simulation engine, a Ray head, ``flwr run``). They share
#: one pytest-xdist worker: ``flwr run``'s own ``ray.init()`` would join a Ray head another module
#: started, and two Ray instances side by side only fight over the cores.
RAY_MODULES = frozenset(
    {"test_console", "test_flower_simulation", "test_flwr_run", "test_ray_cluster", "test_redteam", "test_workers"}
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``--dist loadgroup``): one group per test module, so a module's
    fixtures (the deployment's consortium, for one) are built once, and one group for every
    module that starts Ray."""
    for item in items:
        module = item.path.stem
        item.add_marker(pytest.mark.xdist_group("ray" if module in RAY_MODULES else module))
