"""Flower's engine attached to an existing Ray cluster (``simulation.ray_address``): a real head
started with ``ray start --head`` from this environment, a tiny run through ``fedsynth simulate``,
and the cluster's own logs showing that the driver and the hospitals' actors ran there."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import TINY, check_contract
from processes import TAG_VARIABLE, kill_tagged, new_tag, wait_until_gone

from fedsynth.config import load_config
from fedsynth.errors import ConfigError
from fedsynth.simulation.engines import RAY_ATTACH_REFUSED, backend_config

RAY = Path(sys.executable).with_name("ray")
#: The tiny run of tests/test_flower_simulation.py with 2 hospitals and the Gaussian schedule.
TWO_GAUSSIAN = [*TINY, "federation.num_hospitals=2", 'model.latent_model="gaussian"', 'train.schedule="gaussian"']


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_head() -> Iterator[tuple[str, Path, str]]:
    """A Ray head on free ports with its own temp dir, as (address, session logs, process tag);
    stopped (SIGTERM to ``ray start --block``, which stops its processes) and checked gone after."""
    tag = new_tag()
    # Ray's socket paths must stay under 107 characters: a short folder, not pytest's tmp_path.
    temp = Path(tempfile.mkdtemp(prefix="fsray", dir="/tmp"))
    port = free_port()
    cmd = [str(RAY), "start", "--head", "--block", "--port", str(port), "--num-cpus", "2", "--disable-usage-stats"]
    cmd += ["--node-ip-address", "127.0.0.1", "--temp-dir", str(temp), "--include-dashboard", "false"]
    cmd += ["--ray-client-server-port", str(free_port()), "--dashboard-agent-listen-port", str(free_port())]
    log = temp / "head.log"
    env = {**os.environ, TAG_VARIABLE: tag}
    with log.open("w") as out:
        head = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in log.read_text():
            assert head.poll() is None, f"ray start exited with {head.returncode}:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"the Ray head did not start:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
        yield f"127.0.0.1:{port}", temp / "session_latest" / "logs", tag
    finally:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
        left = wait_until_gone(tag)
        kill_tagged(tag)
        shutil.rmtree(temp, ignore_errors=True)
    assert not left, f"processes of the Ray head still running after it stopped: {left}"


def test_a_run_attached_to_a_running_ray_cluster(tmp_path: Path, ray_head: tuple[str, Path, str]) -> None:
    address, logs, _ = ray_head
    run = tmp_path / "run"
    cli = [sys.executable, "-m", "fedsynth.cli.main", "simulate", "--out", str(run)]
    for item in [*TWO_GAUSSIAN, f'simulation.ray_address="{address}"']:
        cli += ["--set", item]
    proc = subprocess.Popen(cli, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output[-4000:]
    check_contract(run)
    assert (run / "summary.json").exists() and (run / "privacy.json").exists()

    # The cluster's own logs: this run's process was a driver of the cluster, and the hospitals'
    # ClientApp actors ran in the cluster's worker processes (one job, two actors: 1 CPU each).
    drivers = [p.name for p in logs.glob(f"python-core-driver-*_{proc.pid}.log")]
    assert drivers, f"no driver log of pid {proc.pid} in the cluster's logs: {sorted(p.name for p in logs.iterdir())}"
    actors = [p for p in logs.glob("worker-*.out") if ":actor_name:ClientAppActor" in p.read_text()]
    assert len(actors) == 2, [p.name for p in actors]


def test_ray_address_is_passed_as_the_address_without_sizing_arguments() -> None:
    config = load_config(None, ['simulation.ray_address="127.0.0.1:6379"'])
    init_args = backend_config(config)["init_args"]
    assert init_args["address"] == "127.0.0.1:6379"
    assert not RAY_ATTACH_REFUSED & set(init_args)
    # Without the key, a Ray instance of the run's own, not whatever cluster runs on the machine.
    assert backend_config(load_config(None, []))["init_args"]["address"] == "local"


@pytest.mark.parametrize("bad", ["localhost", "127.0.0.1:", ":6379", "127.0.0.1:99999", "my host:6379"])
def test_a_malformed_ray_address_is_refused_naming_the_key(bad: str) -> None:
    with pytest.raises(ConfigError, match="simulation.ray_address"):
        load_config(None, [f'simulation.ray_address="{bad}"'])


JOINED = """
import json, logging, sys, ray
from fedsynth.config import load_config
from fedsynth.simulation.engines import backend_config
args = backend_config(load_config(None, ['simulation.device="cpu"']))["init_args"] if sys.argv[1] == "fedsynth" else {}
ray.init(**{**args, "logging_level": logging.ERROR, "log_to_driver": False, "include_dashboard": False})
print(json.dumps(ray.get_runtime_context().gcs_address))
ray.shutdown()
"""


def test_without_ray_address_a_run_never_joins_a_cluster_running_on_the_machine(ray_head) -> None:
    """Ray's ``ray.init()`` without an address joins the cluster it finds (here through RAY_ADDRESS,
    as after a user's ``ray start``); fedsynth's engine arguments start an instance of the run's own."""
    address, _, tag = ray_head
    env = {**os.environ, "RAY_ADDRESS": address, TAG_VARIABLE: tag}

    def gcs_of(args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", JOINED, args], env=env, capture_output=True, text=True, timeout=180
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return done.stdout.strip().splitlines()[-1].strip('"').rsplit(":", 1)[1]  # the GCS port

    head_port = address.rsplit(":", 1)[1]
    assert gcs_of("plain") == head_port  # the hazard: Ray's default joins the running head
    assert gcs_of("fedsynth") != head_port
