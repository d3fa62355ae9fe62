"""Flower ServerApp: runs :func:`fedsynth.job.run_federation` over Flower's Grid."""

from __future__ import annotations

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedsynth.config import RunConfig, from_flat
from fedsynth.federation.flower_transport import GridTransport
from fedsynth.job import run_federation
from fedsynth.progress import RoundPrinter


def build_server_app(config: RunConfig | None = None, resume: bool = False) -> ServerApp:
    """A ServerApp bound to ``config``, or reading it from the run config when None (``flwr run``);
    with ``resume`` it continues the run folder's last checkpoint."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        cfg = config if config is not None else from_flat(context.run_config)
        transport = GridTransport(grid, cfg.federation.num_hospitals)
        with RoundPrinter(cfg) as printer:
            summary = run_federation(cfg, transport, on_round=printer.round_done, resume=resume)
            printer.finished(summary)

    return app


#: The app ``flwr run .`` loads (configuration from ``[tool.flwr.app.config]``).
app = build_server_app()
