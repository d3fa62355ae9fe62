"""Running a simulated federation: prepare the sites, run the server over an engine, audit.

Two engines run the same sites, server and strategies:

- ``flower``: Flower's simulation engine (Ray backend), the ClientApp and ServerApp of
  :mod:`fedsynth.flower`;
- ``inprocess``: every hospital resident in worker processes of this run
  (:mod:`fedsynth.simulation.workers`) or in this process (:mod:`fedsynth.simulation.inprocess`).

Either way the simulation plays the data owner: it writes each hospital's site (records and site
file) and the public schema, the server runs from the schema and the replies only, and afterwards
the simulation audits the run (:mod:`fedsynth.simulation.audit`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from fedsynth.config.schema import RunConfig
from fedsynth.data.records import Schema
from fedsynth.errors import FedsynthError
from fedsynth.simulation.console import engine_console, ray_init_args
from fedsynth.site.config import Site

if TYPE_CHECKING:
    from fedsynth.federation.transport import Transport
    from fedsynth.simulation.workers import WorkerPlan


#: ``ray.init`` arguments Ray refuses when it attaches to a running cluster (the cluster's own
#: ``ray start`` options set them); never passed with ``simulation.ray_address``.
RAY_ATTACH_REFUSED = frozenset(
    {"num_cpus", "num_gpus", "resources", "labels", "object_store_memory", "_system_config", "_node_name"}
)


def backend_config(config: RunConfig, verbose: bool = False) -> dict:
    """Ray backend settings: per-hospital CPU/GPU resources (fractional GPUs allowed), how much Ray
    prints (:func:`fedsynth.simulation.console.ray_init_args`) and, with ``simulation.ray_address``,
    the running Ray cluster to attach to (Flower passes ``init_args`` to ``ray.init``; Ray then
    refuses the arguments that size a new instance, so none of :data:`RAY_ATTACH_REFUSED` is set).
    Without ``simulation.ray_address`` the run starts a Ray instance of its own (``address =
    "local"``), never joining another run's cluster on the same machine."""
    resources: dict[str, float] = {"num_cpus": config.simulation.num_cpus}
    if config.simulation.num_gpus > 0:
        resources["num_gpus"] = config.simulation.num_gpus
    init_args: dict[str, object] = dict(ray_init_args(verbose))
    if config.simulation.ray_address:
        init_args = {k: v for k, v in init_args.items() if k not in RAY_ATTACH_REFUSED}
        init_args["address"] = config.simulation.ray_address
    else:
        # A Ray instance of this run's own: without an address, ``ray.init`` joins the newest Ray
        # cluster started on the machine (someone else's run, sized and owned by them).
        init_args["address"] = "local"
    return {"client_resources": resources, "init_args": init_args}


def sites_for(config: RunConfig, resume: bool, late_seconds: float) -> tuple[Schema, dict[int, Site]]:
    """New sites for a new run; the run folder's own sites (with their state) when resuming."""
    from fedsynth.simulation.sites import existing_sites, prepare_sites

    return existing_sites(config) if resume else prepare_sites(config, late_seconds)


def check_run_data(config: RunConfig, resume: bool) -> None:
    """Validate the run's data before any engine starts, so a bad input fails in a second.

    Runs every loader check and size guard (``fedsynth.data.check``; the federation is cached, so
    the sites are then written from the same load) and prints the loader's notes and the
    warnings. A resumed run is not checked again: its sites already hold their records.
    """
    if resume:
        return
    from rich.console import Console
    from rich.markup import escape

    from fedsynth.data.check import check_data

    check = check_data(config.data, config.federation.num_hospitals, config.seed)
    console = Console(stderr=True)
    for note in check.notes:
        console.print(f"[cyan]data:[/cyan] {escape(note)}", soft_wrap=True)
    for warning in check.warnings:
        console.print(f"[yellow]data warning:[/yellow] {escape(warning)}", soft_wrap=True)


def simulate(config: RunConfig, verbose: bool = False, resume: bool = False) -> dict:
    """Train with ``config.federation.num_hospitals`` simulated SuperNodes; returns summary.json.

    The data are validated before Flower and Ray are even imported (:func:`check_run_data`).
    Flower's and Ray's own output is shown only when ``verbose``
    (:func:`fedsynth.simulation.console.engine_console`)."""
    check_run_data(config, resume)
    from flwr.simulation import run_simulation

    from fedsynth.flower.client import build_client_app
    from fedsynth.flower.server import build_server_app
    from fedsynth.simulation.audit import audit_run
    from fedsynth.simulation.sites import LATE_MARGIN_SECONDS

    Path(config.out_dir).mkdir(parents=True, exist_ok=True)
    sites_for(config, resume, config.federation.round_timeout + LATE_MARGIN_SECONDS)
    with engine_console(verbose):
        run_simulation(
            server_app=build_server_app(config, resume=resume),
            client_app=build_client_app(Path(config.out_dir).resolve() / "sites"),
            num_supernodes=config.federation.num_hospitals,
            backend_config=backend_config(config, verbose),
            verbose_logging=verbose,
        )
    if not (Path(config.out_dir) / "summary.json").exists():
        raise FedsynthError(f"the simulation ended without writing {config.out_dir}/summary.json{_why(config)}")
    return audit_run(config)


def _why(config: RunConfig) -> str:
    """What the run's own log says went wrong (the refusals of round 1), or a pointer to the log."""
    from fedsynth.runfolder import RunFolder

    rounds = [m for m in RunFolder(config.out_dir).read_metrics() if m.get("kind") == "server"]
    if rounds and rounds[0].get("refused") and not rounds[0].get("accepted"):
        reasons = "; ".join(f"hospital {h}: {r}" for h, r in sorted(rounds[0]["refused"].items()))
        return f": every hospital refused round 1 ({reasons})"
    return "; see the log above"


def simulate_in_process(config: RunConfig, resume: bool = False) -> dict:
    """The same sites, server, strategy and run folder without Flower: the hospitals stay resident
    in worker processes (``simulation.workers``; one per core or GPU by default,
    :mod:`fedsynth.simulation.workers`) or, with one worker, in this process; messages still pass
    through the wire module (and are counted)."""
    from fedsynth.attacks.server import attack_hook
    from fedsynth.federation.server import run_federation
    from fedsynth.simulation.audit import audit_run
    from fedsynth.simulation.workers import plan_workers

    if config.simulation.ray_address:
        raise FedsynthError(
            f"simulation.ray_address = {config.simulation.ray_address!r} attaches Flower's engine to a Ray "
            "cluster; the in-process engine runs its workers on this machine (use --engine flower, or drop the key)"
        )
    check_run_data(config, resume)
    schema, sites = sites_for(config, resume, late_seconds=0.0)
    plan = plan_workers(config.simulation, sorted(sites))
    with worker_transport(sites, plan) as transport:
        run_federation(config, schema, transport, resume=resume, hook=attack_hook(config))
    return audit_run(config)


@contextmanager
def worker_transport(sites: dict[int, Site], plan: WorkerPlan) -> Iterator[Transport]:
    """The plan's workers: worker 0's hospitals in this process, the others' in resident worker
    processes (none with a one-worker plan). This process's torch thread count is the plan's for
    the run, then restored."""
    import torch

    from fedsynth.simulation.inprocess import InProcessTransport
    from fedsynth.simulation.workers import WorkerPoolTransport

    threads = torch.get_num_threads()
    torch.set_num_threads(plan.threads)
    try:
        if plan.workers > 1:
            with WorkerPoolTransport(sites, plan) as pool:
                yield pool
        else:
            yield InProcessTransport.from_sites(sites)
    finally:
        torch.set_num_threads(threads)
