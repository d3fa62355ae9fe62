"""Time per step (median after warm-up, steps timed in turns) and peak memory of a step, on the
CPU or a CUDA device.

Peak memory is the growth during one step over the memory held before it (model, optimizer state
and batch already allocated, warm-up done), so it is what one step needs on top of what the
network keeps:

- CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``;
- CPU (Linux): the process's resident-set high-water mark (``VmHWM``), reset through
  ``/proc/self/clear_refs`` after returning freed heap memory to the system (``malloc_trim``).
  ``tracemalloc`` cannot be used: PyTorch's CPU allocator bypasses Python's allocators, so it sees
  none of the tensors; ``getrusage``'s maximum cannot be reset between measurements. Elsewhere
  the CPU peak is reported as 0 (not measured).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass(frozen=True)
class StepCost:
    """What one step cost: median seconds over ``steps`` timed steps, and the peak bytes one step
    allocated on top of what was held before it."""

    seconds: float
    peak_bytes: int
    steps: int


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``; NaN when the denominator is 0 (a figure that was not measured)."""
    return numerator / denominator if denominator else float("nan")


def measure_steps(
    steps: Mapping[str, Callable[[], None]], device: torch.device, warmup: int, repeats: int
) -> dict[str, StepCost]:
    """Time and peak memory of each named step, measured side by side.

    Every step is warmed up ``warmup`` times; its peak memory is measured over one step run alone;
    then the steps are timed in turns (one of each, ``repeats`` rounds, each synchronised on CUDA),
    so a change of the machine's load during the run affects every step alike. Returns the median
    time and the peak per name."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    gc.collect()  # once: what earlier measurements left behind (a collection takes tenths of a second)
    peaks = {}
    for name, step in steps.items():
        for _ in range(warmup):
            step()
        _synchronize(device)
        probe = _MemoryProbe(device)
        step()
        _synchronize(device)
        peaks[name] = probe.peak()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            _synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: StepCost(statistics.median(times[name]), peaks[name], repeats) for name in steps}


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _MemoryProbe:
    """The peak memory growth from its creation to :meth:`peak` (see the module docstring)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            self.baseline = torch.cuda.memory_allocated(device)
        else:
            _trim_heap()
            self.baseline = _reset_resident_peak()

    def peak(self) -> int:
        if self.device.type == "cuda":
            return max(0, torch.cuda.max_memory_allocated(self.device) - self.baseline)
        high = _status_bytes("VmHWM")
        return 0 if high is None or self.baseline < 0 else max(0, high - self.baseline)


def _trim_heap() -> None:
    """Give freed heap memory back to the system (glibc), so the next step's allocations show."""
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        ctypes.CDLL(name).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_resident_peak() -> int:
    """Reset the resident-set high-water mark; the current resident set (-1: not available)."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return -1
    current = _status_bytes("VmRSS")
    return -1 if current is None else current


def _status_bytes(key: str, pid: int | str = "self") -> int | None:
    """A ``kB`` field of ``/proc/<pid>/status`` in bytes (None when there is no such file)."""
    status = _STATUS if pid == "self" else Path(f"/proc/{pid}/status")
    try:
        for line in status.read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
