"""The Flower ServerApp: :func:`fedsynth.federation.server.run_federation` over Flower's Grid.

The server reads the run configuration and the consortium's public schema file, nothing else:
``fedsynth simulate`` binds both; under ``flwr run .`` the configuration comes from the run config
and the schema from ``<out_dir>/schema.json`` (written by ``fedsynth prepare``).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedsynth.attacks.server import attack_hook
from fedsynth.config import RunConfig, from_flat
from fedsynth.consortium.registry import NodeRegistry
from fedsynth.data.records import Schema
from fedsynth.errors import ConfigError
from fedsynth.federation.flower_transport import GridTransport
from fedsynth.federation.server import run_federation
from fedsynth.flower.descendants import descendants, end
from fedsynth.progress import RoundPrinter
from fedsynth.runfolder import RunFolder

#: Run-config key (``flwr run``) asking the ServerApp to continue the run folder's last checkpoint.
RESUME_KEY = "resume"

log = logging.getLogger(__name__)


def public_schema(config: RunConfig) -> Schema:
    """The consortium's public schema of a run (``<out_dir>/schema.json``)."""
    path = Path(config.out_dir) / "schema.json"
    if not path.exists():
        raise ConfigError(f"{path}: missing (run `fedsynth prepare` for a simulation, or publish the schema)")
    return Schema.from_dict(RunFolder(config.out_dir).read_json("schema.json"))


def stop_on_exit(stopping: threading.Event) -> None:
    """When Flower's process runtime exits (``flwr stop``, a signal), first tell the run it is being
    stopped (``stopping``, which the run's :class:`GridTransport` watches), then shut this
    process's Ray instance down and end whatever of it outlives the shutdown.

    Under ``flwr run`` the ServerApp runs in a thread of ``flwr-simulation``, which also drives
    Flower's Ray instance. When the run is stopped, that process's main thread runs Flower's exit
    handlers and then forces an exit, without ``ray.shutdown()``: Ray's GCS and raylet die with it,
    but the raylet's agents (``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``) were left running,
    orphaned, for minutes. So the handler lists this process's descendants, shuts Ray down with
    SIGINT ignored (Flower's own connections raise SIGINT when they learn of the stop, and a second
    one, after Flower has restored Python's default handler, would interrupt the shutdown), and
    ends the listed processes still alive (:mod:`fedsynth.flower.descendants`). Meanwhile the
    ServerApp's thread goes on: without the event it took the error replies of the dying actors for
    failed hospitals, ran the remaining rounds in a fraction of a second and wrote a summary of an
    untrained model. Outside Flower's process runtime (``fedsynth simulate``) the handler is never
    triggered.
    """
    from flwr.supercore.exit import add_exit_handler

    def on_exit() -> None:
        stopping.set()
        ray = sys.modules.get("ray")  # never import Ray where the process did not use it
        if ray is None or not ray.is_initialized():
            return
        started = descendants(os.getpid())
        in_main = threading.current_thread() is threading.main_thread()  # only it may set handlers
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main else None
        try:
            ray.shutdown()
        finally:
            left = end(started)
            if left:
                log.info("ended %d process(es) that outlived ray.shutdown(): %s", len(left), [p.pid for p in left])
            if previous is not None:
                signal.signal(signal.SIGINT, previous)

    add_exit_handler(on_exit, run_before_force_exit=True)


def build_server_app(config: RunConfig | None = None, resume: bool = False) -> ServerApp:
    """A ServerApp bound to ``config``, or reading it from the run config when None (``flwr run``);
    with ``resume`` it continues the run folder's last checkpoint."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        flat = dict(context.run_config)
        resuming = resume or bool(flat.pop(RESUME_KEY, False))  # `fedsynth coordinator run --resume`
        cfg = config if config is not None else from_flat(flat)
        stopping = threading.Event()
        if config is None:  # `flwr run`: this process may drive Flower's Ray instance and be stopped
            stop_on_exit(stopping)
        registry = NodeRegistry.load(cfg.federation.node_registry) if cfg.federation.node_registry else None
        transport = GridTransport(grid, cfg.federation.num_hospitals, registry=registry, stopping=stopping)
        with RoundPrinter(cfg) as printer:
            summary = run_federation(
                cfg, public_schema(cfg), transport, on_round=printer.round_done, resume=resuming, hook=attack_hook(cfg)
            )
            printer.finished(summary)

    return app
