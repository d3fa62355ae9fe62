"""Issue #15's side-by-side tables: fedsynth's DP step against a plain step and stock Opacus, and
the bytes fedsynth puts on the wire against the raw array bytes (see :mod:`fedsynth.bench`).

Usage: python experiments/bench/run.py [--device cpu|cuda] [--table dp-step|communication ...]
                                       [--batch-size N] [--image-size N] [--warmup N] [--repeats N]
                                       [--threads N] [--out FILE]
Prints the Markdown tables (``fedsynth bench`` prints the same); --out also writes them to FILE.
experiments/bench/RESULTS.md holds the tables measured on the 2-core CPU machine.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from fedsynth.bench.report import TABLES, bench_report, dp_step_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, or cuda / cuda:N")
    parser.add_argument("--table", action="append", choices=TABLES, help="a table to run (default: all)")
    for name in ("batch-size", "image-size", "warmup", "repeats"):
        parser.add_argument(f"--{name}", type=int, help="DP-step size (default: the device's)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own)")
    parser.add_argument("--out", type=Path, help="also write the tables here")
    args = parser.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA device is available")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    size = dp_step_size(device, args.batch_size, args.image_size, args.warmup, args.repeats)
    text = bench_report(args.table or list(TABLES), device, size)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
