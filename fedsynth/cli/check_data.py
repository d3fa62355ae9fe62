"""``fedsynth check-data``: validate a run's data and print what it would train on, without training.

Takes the same ``--config`` / ``--set`` as ``fedsynth simulate``; never starts Flower or Ray.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from fedsynth.data.check import DataCheck
from fedsynth.data.load_report import MB
from fedsynth.errors import FedsynthError

console = Console(stderr=True)

CHECK_DATA_HELP = (
    "Validate the data of a run configuration and print what a run would train on.\n\n"
    "Loads the data exactly as `fedsynth simulate` does (every loader check and size guard: "
    "data.max_image_side, data.max_records, data.max_memory_mb), draws the held-out test split and the "
    "hospitals' partitions, and prints per hospital and for the test split the record and label counts and "
    "the memory the records take, the image shape, the clinical columns with their kinds and bounds, the "
    "loader's notes (resized images, skipped files, unused arrays) and warnings (a test split too small to "
    "score on). Nothing is trained and no engine is started; a refused input is reported with its file, "
    "field and row, and the command exits with status 2.\n\n"
    "The output holds counts of real records: keep it inside the data owners' walls."
)


def register(app: typer.Typer) -> None:
    """Add the ``check-data`` command to the fedsynth command-line app."""

    @app.command("check-data", help=CHECK_DATA_HELP)
    def check_data_command(
        config: Annotated[
            Path | None,
            typer.Option("--config", "-c", help="TOML run configuration (defaults apply to missing keys)."),
        ] = None,
        set_: Annotated[
            list[str] | None,
            typer.Option("--set", "-s", help="Override one key, e.g. --set data.source=npz --set data.path=x.npz."),
        ] = None,
    ) -> None:
        from fedsynth.config import load_config
        from fedsynth.data.check import check_data

        try:
            cfg = load_config(config, list(set_ or []))
            with console.status("checking the data"):
                check = check_data(cfg.data, cfg.federation.num_hospitals, cfg.seed)
        except FedsynthError as e:
            console.print(f"[red]error:[/red] {escape(str(e))}", soft_wrap=True)
            raise typer.Exit(2) from e
        typer.echo("\n".join(report_lines(check)))


def report_lines(check: DataCheck) -> list[str]:
    """The check as plain text lines: source, image, table, per-split counts, memory, notes, warnings."""
    schema = check.schema
    names = schema.class_names
    lines = [f"data: {check.source}  (checked in {check.seconds:.1f} s; nothing was trained)"]
    shape = schema.image_shape
    lines.append(f"image: {shape[0]} x {shape[1]} x {shape[2]} (channels x height x width)" if shape else "image: none")
    if schema.columns:
        lines.append(f"table: {len(schema.columns)} columns (bounds: {schema.bounds_source})")
        width = max(len(c.name) for c in schema.columns)
        for c in schema.columns:
            detail = f"[{c.low:g}, {c.high:g}]" if c.kind == "numeric" else ", ".join(c.categories)
            lines.append(f"  {c.name:<{width}}  {c.kind:<11}  {detail}")
    else:
        lines.append("table: none")
    source = "declared" if schema.class_names_source == "declared" else "inferred from the labels"
    lines.append(f"classes: {', '.join(repr(n) for n in names)} ({source})")
    rows = [("split", "records", "labels", "memory")]
    for s in check.splits:
        labels = ", ".join(f"{n!r}: {c}" for n, c in zip(names, s.class_counts))
        rows.append((s.name, str(s.records), labels, f"{s.memory_bytes / MB:.1f} MB"))
    widths = [max(len(r[k]) for r in rows) for k in range(3)]
    lines += [f"  {r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}" for r in rows]
    lines.append(
        f"estimated memory: {check.memory.describe()} (allowed {check.limit_mb} MB, data.max_memory_mb; the data alone)"
    )
    if check.notes:
        lines.append("notes:")
        lines += [f"  - {note}" for note in check.notes]
    if check.warnings:
        lines.append("warnings:")
        lines += [f"  - {warning}" for warning in check.warnings]
    trained = sum(s.records for s in check.hospitals)
    lines.append(
        f"would train on {len(check.hospitals)} hospitals, {trained} records; scores on {check.test.records} "
        "held-out records"
    )
    return lines
