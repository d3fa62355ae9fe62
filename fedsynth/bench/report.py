"""The benchmark tables as Markdown, with the machine they were measured on.

:func:`bench_report` runs the chosen tables and formats them; ``fedsynth bench`` and
``experiments/bench/run.py`` both print what it returns.
"""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Sequence
from dataclasses import replace

import torch

from fedsynth.bench.communication import CommunicationRow, bench_communication
from fedsynth.bench.dp_step import CPU_SIZE, CUDA_SIZE, DPStepRow, DPStepSize, bench_dp_steps
from fedsynth.bench.engines import EngineSize, bench_engines, engine_tables

#: Table names, in the order they are printed.
TABLES = ("dp-step", "communication", "engines")

#: The communication goal of issue #15: serialized bytes at most this multiple of the raw bytes.
COMMUNICATION_GOAL = 1.02


def dp_step_size(
    device: torch.device,
    batch_size: int | None = None,
    image_size: int | None = None,
    warmup: int | None = None,
    repeats: int | None = None,
) -> DPStepSize:
    """The DP-step sizes for a device (about a minute on a 2-core CPU, larger on a GPU), with the
    values given here instead of the defaults."""
    chosen = {"batch_size": batch_size, "image_size": image_size, "warmup": warmup, "repeats": repeats}
    default = CUDA_SIZE if device.type == "cuda" else CPU_SIZE
    return replace(default, **{k: v for k, v in chosen.items() if v is not None})


def bench_report(
    tables: Sequence[str], device: torch.device, size: DPStepSize, engines: EngineSize | None = None
) -> str:
    """Measure ``tables`` (names from :data:`TABLES`) and return them as Markdown; ``engines``: the
    federations of the engines table (default :class:`~fedsynth.bench.engines.EngineSize`)."""
    unknown = sorted(set(tables) - set(TABLES))
    if unknown:
        raise ValueError(f"unknown table(s) {unknown} (expected some of {list(TABLES)})")
    parts = [machine_line(device)]
    if "dp-step" in tables:
        parts.append(dp_step_tables(bench_dp_steps(size, device), size, device))
    if "communication" in tables:
        parts.append(communication_table(bench_communication()))
    if "engines" in tables:
        engines = engines or EngineSize()
        parts.append(engine_tables(bench_engines(engines, log=_progress), engines))
    return "\n\n".join(parts) + "\n"


def machine_line(device: torch.device) -> str:
    """Where the numbers come from: device, cores, threads, library versions."""
    import flwr
    import opacus

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.machine()})"
    return (
        f"Measured on {where}; {os.cpu_count()} cores, torch threads {torch.get_num_threads()}; "
        f"torch {torch.__version__}, opacus {opacus.__version__}, flwr {flwr.__version__}."
    )


def dp_step_tables(rows: list[DPStepRow], size: DPStepSize, device: torch.device) -> str:
    """Two tables: time per step and peak memory per step, fedsynth's DP step on each engine
    (``hooks``: Opacus' per-sample gradients; ``ghost``: ghost norms) against each baseline."""
    memory = "torch.cuda.max_memory_allocated" if device.type == "cuda" else "resident-set peak (VmHWM)"
    head = (
        f"### DP step vs plain step vs stock Opacus ({device.type}, batch {size.batch_size}, "
        f"image {size.image_size}x{size.image_size}; median of {size.repeats} steps after {size.warmup} warm-up)"
    )
    time_table = _markdown(
        [
            "network",
            "parameters",
            "plain ms",
            "stock Opacus ms",
            "fedsynth hooks ms",
            "fedsynth ghost ms",
            "hooks / plain",
            "ghost / plain",
            "hooks / Opacus",
            "ghost / Opacus",
        ],
        [
            [
                r.network,
                f"{r.parameters:,}",
                _ms(r.plain.seconds),
                _ms(r.opacus.seconds),
                _ms(r.fedsynth.seconds),
                _ms(r.ghost.seconds),
                _x(r.dp_over_plain_time),
                _x(r.ghost_over_plain_time),
                _x(r.fedsynth_over_opacus_time),
                _x(r.ghost_over_opacus_time),
            ]
            for r in rows
        ],
    )
    memory_table = _markdown(
        [
            "network",
            "plain MB",
            "stock Opacus MB",
            "fedsynth hooks MB",
            "fedsynth ghost MB",
            "hooks / plain",
            "ghost / plain",
            "hooks / Opacus",
            "ghost / Opacus",
        ],
        [
            [
                r.network,
                _mb(r.plain.peak_bytes),
                _mb(r.opacus.peak_bytes),
                _mb(r.fedsynth.peak_bytes),
                _mb(r.ghost.peak_bytes),
                _x(r.dp_over_plain_memory),
                _x(r.ghost_over_plain_memory),
                _x(r.fedsynth_over_opacus_memory),
                _x(r.ghost_over_opacus_memory),
            ]
            for r in rows
        ],
    )
    return (
        f"{head}\n\nTime per step:\n\n{time_table}\n\n"
        f"Peak memory one step adds ({memory}, over what the network and optimizer hold):\n\n{memory_table}"
    )


def communication_table(rows: list[CommunicationRow]) -> str:
    """Serialized bytes against raw array bytes, per schedule, phase and direction."""
    table = _markdown(
        [
            "schedule",
            "phase",
            "message",
            "round",
            "arrays",
            "raw bytes",
            "wire bytes",
            "wire / raw",
            "array framing",
            "other records",
            f"<= {COMMUNICATION_GOAL}x",
        ],
        [
            [
                r.schedule,
                r.phase,
                r.direction,
                str(r.server_round),
                str(r.arrays),
                f"{r.raw_bytes:,}",
                f"{r.wire_bytes:,}",
                f"{r.wire_over_raw:.4f}",
                f"{r.framing_bytes:,}",
                f"{r.metadata_bytes:,}",
                "yes" if r.wire_over_raw <= COMMUNICATION_GOAL else "no",
            ]
            for r in rows
        ],
    )
    return (
        "### Communication: serialized bytes per message vs raw array bytes (default model sizes, "
        "last round of each phase)\n\n" + table
    )


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}"


def _mb(nbytes: int) -> str:
    return f"{nbytes / 1e6:.2f}"


def _x(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}x"


def _progress(message: str) -> None:
    """Which engine variant is running (stderr), since the engines table takes minutes."""
    from rich.console import Console

    Console(stderr=True).print(f"[cyan]bench[/cyan] {message}", highlight=False)
