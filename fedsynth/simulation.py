"""Run N simulated hospitals through Flower's simulation engine (Ray backend)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from fedsynth.config.schema import RunConfig


def backend_config(config: RunConfig) -> dict:
    """Ray backend settings: per-hospital CPU/GPU resources (fractional GPUs allowed)."""
    resources: dict[str, float] = {"num_cpus": config.simulation.num_cpus}
    if config.simulation.num_gpus > 0:
        resources["num_gpus"] = config.simulation.num_gpus
    return {"client_resources": resources, "init_args": {"logging_level": logging.WARNING, "log_to_driver": True}}


def simulate(config: RunConfig, verbose: bool = False, resume: bool = False) -> dict:
    """Train with ``config.federation.num_hospitals`` simulated SuperNodes; returns summary.json."""
    from flwr.simulation import run_simulation

    from clients.app import build_client_app
    from server.app import build_server_app

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    Path(config.out_dir).mkdir(parents=True, exist_ok=True)
    run_simulation(
        server_app=build_server_app(config, resume=resume),
        client_app=build_client_app(config),
        num_supernodes=config.federation.num_hospitals,
        backend_config=backend_config(config),
        verbose_logging=verbose,
    )
    summary = Path(config.out_dir) / "summary.json"
    if not summary.exists():
        raise RuntimeError(f"the simulation ended without writing {summary}; see the log above")
    return json.loads(summary.read_text())


def simulate_in_process(config: RunConfig, resume: bool = False) -> dict:
    """The same hospitals, strategy and run folder without Flower: every hospital is served in
    this process and messages still pass through the wire module (and are counted).

    Used for quick sweeps, the centralized baseline and tests; the Flower simulation engine stays
    the default path.
    """
    from fedsynth.federation.transport import InProcessTransport
    from fedsynth.job import run_federation

    return run_federation(config, InProcessTransport(config), resume=resume)
