"""`flwr run .` the documented way (README, docs/scaling.md), as real processes: in this
environment (no per-run environment installed), one CPU per hospital as `fedsynth simulate`
gives, logs streamed, the run folder complete, and no process of Flower's or Ray's left behind
after the run, after `flwr stop` and after the local SuperLink is stopped.

Flower's managed local SuperLink listens on fixed ports and keeps its state under ``FLWR_HOME``;
the test gives it free ports and its own ``FLWR_HOME`` (both documented by Flower), so it never
meets another session's SuperLink.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, TINY, check_contract
from processes import TAG_VARIABLE, kill_tagged, new_tag, tagged, wait_until_gone

BIN = Path(sys.executable).parent
#: 2 hospitals, Gaussian schedule, few records; the sites may spend on two runs.
SETTINGS = [
    *TINY,
    "federation.num_hospitals=2",
    'model.latent_model="gaussian"',
    'train.schedule="gaussian"',
    "site_policy.lifetime_epsilon_budget=30.0",
]
#: Flower's long-lived processes: the SuperLink and the SuperExec it starts.
SUPERLINK = ("flower-superlink", "flower-superexec")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_config(out: Path, *overrides: str) -> str:
    """The --run-config string: the prepared settings, ``overrides`` replacing keys, the run folder."""
    items = dict(item.split("=", 1) for item in [*SETTINGS, *overrides])
    return " ".join([*(f"{k}={v}" for k, v in items.items()), f'out_dir="{out}"'])


def runtime(tag: str) -> dict[int, str]:
    """Processes of a run (Ray and the simulation), not the SuperLink's own two."""
    return {pid: cmd for pid, cmd in tagged(tag).items() if not any(name in cmd for name in SUPERLINK)}


def wait_for_runtime_gone(tag: str, patience: float = 30.0) -> dict[int, str]:
    deadline = time.monotonic() + patience
    while (left := runtime(tag)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


@pytest.fixture
def flower(tmp_path: Path) -> Iterator[tuple[dict[str, str], str]]:
    """(environment, tag) of the documented commands; the local SuperLink they start is stopped and
    every process they started checked gone afterwards."""
    tag = new_tag()
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "FLWR_HOME": str(tmp_path / "flwr-home"),
        "FLWR_LOCAL_SUPERLINK_HTTP_API_PORT": str(free_port()),
        "FLWR_LOCAL_CONTROL_API_PORT": str(free_port()),
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        "FEDSYNTH_SITES_DIR": str(tmp_path / "run" / "sites"),
        TAG_VARIABLE: tag,
    }
    try:
        yield env, tag
    finally:
        for pid, cmd in tagged(tag).items():
            if "flower-superlink" in cmd:
                os.kill(pid, signal.SIGTERM)  # it terminates its SuperExec
        left = wait_until_gone(tag)
        kill_tagged(tag)
        shutil.rmtree(tmp_path / "flwr-home" / "apps", ignore_errors=True)
    assert not left, f"processes left after the SuperLink stopped: {left}"


def sh(env: dict[str, str], *cmd: str, timeout: float = 300) -> str:
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd}: {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout + done.stderr


def test_flwr_run_in_this_environment_with_one_cpu_per_hospital(tmp_path: Path, flower) -> None:
    env, tag = flower
    run = tmp_path / "run"
    sets = [arg for item in SETTINGS for arg in ("--set", item)]
    sh(env, "fedsynth", "prepare", "--out", str(run), *sets)
    shown = sh(
        env, "flwr", "federation", "simulation-config", "@none/default", "local", "--num-supernodes", "2",
        "--client-resources-num-cpus", "1",
    )  # fmt: skip
    assert "Updated simulation configuration" in shown
    assert any("flower-superlink" in cmd for cmd in tagged(tag).values()), "no local SuperLink was started"

    log = sh(env, "flwr", "run", ".", "--stream", "--run-config", run_config(run), timeout=600)
    # Flower's own log: this environment (nothing installed), one CPU per ClientApp, two at once.
    assert "Installing application dependencies" not in log and "Created env for run" not in log
    assert "'client_resources': {'num_cpus': 1" in log, log[-4000:]
    assert "Constructed ActorPool with: 2 actors" in log, log[-4000:]
    assert (run / "summary.json").exists(), log[-4000:]
    sh(env, "fedsynth", "audit", str(run))
    check_contract(run)
    assert "tstr" in json.loads((run / "summary.json").read_text())
    left = wait_for_runtime_gone(tag)
    assert not left, f"Ray/simulation processes left after the run ended: {left}"

    # A second, long run stopped while its two ClientApp actors are up (each its own process).
    second = tmp_path / "stopped"
    second.mkdir()
    shutil.copy(run / "schema.json", second / "schema.json")
    long_run = run_config(second, 'train.schedule="gan"', 'model.latent_model="gan"', "train.local_steps_gan=5000")
    started = json.loads(sh(env, "flwr", "run", ".", "--format", "json", "--run-config", long_run))
    deadline = time.monotonic() + 300
    actors: dict[int, str] = {}
    while len(actors) < 2:
        assert time.monotonic() < deadline, f"two ClientApp actors never ran at once: {runtime(tag)}"
        time.sleep(0.5)
        actors = {pid: cmd for pid, cmd in runtime(tag).items() if "ClientAppActor" in cmd}
    assert "successfully stopped" in sh(env, "flwr", "stop", started["run-id"])
    left = wait_for_runtime_gone(tag)
    assert not left, f"Ray/simulation processes left after `flwr stop`: {left}"
    assert not (second / "summary.json").exists()
