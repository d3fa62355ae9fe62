"""``fedsynth bench``: fedsynth's figures beside a baseline's, measured side by side (thin over
:mod:`fedsynth.bench`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console(stderr=True)

BENCH_HELP = """Measure fedsynth against a baseline in one run and print Markdown tables.

dp-step: one DP-SGD step of each private network (image autoencoder, table autoencoder,
discriminator) as fedsynth runs it, against a plain (non-private) step and against stock Opacus
(PrivacyEngine.make_private, default hooks) on the same batch: median time per step after warm-up
(the three steps timed in turns) and the peak memory one step adds, with the ratios DP/plain and
fedsynth/Opacus.

communication: a real simulated hospital trains every round of the gan and gaussian schedules;
for each phase's last round, the serialized bytes of the reply (the update) and of the instruction
against the raw bytes of the arrays they carry, and their ratio (issue #15's goal: at most 1.02x).

engines: N hospitals (--hospitals, default 3, 8 and 32) train the same DP-SGD rounds in one plain
loop, in fedsynth's in-process engine (one worker, and resident workers), in Flower's engine, and
in a straightforward Flower + Opacus assembly that rebuilds per round: wall time and its ratio to
the plain loop, and peak memory per hospital.

The dp-step and communication tables take about a minute each on a 2-core CPU; engines takes
longer (the 32-hospital federations dominate). Numbers depend on the machine and its
load; nothing is asserted.
"""


def register(app: typer.Typer) -> None:
    """Add the ``bench`` command to the fedsynth command-line app."""

    @app.command("bench", help=BENCH_HELP)
    def bench(
        table: Annotated[
            list[str] | None, typer.Option("--table", "-t", help="'dp-step' or 'communication' (default: both).")
        ] = None,
        device: Annotated[str, typer.Option(help="'cpu', or 'cuda' / 'cuda:N' for a GPU.")] = "cpu",
        batch_size: Annotated[int | None, typer.Option(help="DP-step batch (default: 64 CPU, 256 GPU).")] = None,
        image_size: Annotated[int | None, typer.Option(help="DP-step image side (default: 32 CPU, 64 GPU).")] = None,
        warmup: Annotated[int | None, typer.Option(help="Untimed steps first (default: 3 CPU, 5 GPU).")] = None,
        repeats: Annotated[int | None, typer.Option(help="Timed steps per variant (default: 10 CPU, 30 GPU).")] = None,
        threads: Annotated[int | None, typer.Option(help="torch CPU threads (default: torch's own).")] = None,
        hospitals: Annotated[
            str, typer.Option(help="Engines table: the hospital counts to measure, comma-separated.")
        ] = "3,8,32",
        out: Annotated[Path | None, typer.Option("--out", "-o", help="Also write the tables to this file.")] = None,
    ) -> None:
        import torch

        from fedsynth.bench.engines import EngineSize
        from fedsynth.bench.report import TABLES, bench_report, dp_step_size

        target = torch.device(device)
        if target.type == "cuda" and not torch.cuda.is_available():
            console.print(f"[red]error:[/red] --device {device}: no CUDA device is available")
            raise typer.Exit(2)
        if threads is not None:
            torch.set_num_threads(threads)
        try:
            size = dp_step_size(target, batch_size, image_size, warmup, repeats)
            if not all(h.strip().isdigit() for h in hospitals.split(",")):
                raise ValueError(f"--hospitals {hospitals!r}: expected comma-separated hospital counts, e.g. 3,8,32")
            counts = tuple(int(h) for h in hospitals.split(","))
            text = bench_report(table or list(TABLES), target, size, EngineSize(hospitals=counts))
        except ValueError as e:
            console.print(f"[red]error:[/red] {e}")
            raise typer.Exit(2) from e
        typer.echo(text)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text)
