"""The processes a process started, and ending those that outlive a shutdown.

Ray's agents (``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``) are children of the raylet, which
is a child of the process that started Ray. When that process is stopped (``flwr stop``) its
``ray.shutdown()`` may be cut short, and the agents, re-parented to init, run on for minutes with
nothing left to tell them apart from any other process. So the processes are listed *before* the
shutdown, while they are still this process's descendants, and whatever of them is still alive
afterwards is ended. A process is known by its id and its start time, so an id the system has
given to a new process since is never signalled.

Linux only (``/proc``); elsewhere nothing is listed and nothing is ended.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessId:
    """A process as the kernel knows it: its id and its start time (clock ticks after boot)."""

    pid: int
    started: int


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent id, start time) of ``pid`` from ``/proc/<pid>/stat``; None if it is gone."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
    return fields[0], int(fields[1]), int(fields[19])


def descendants(pid: int) -> list[ProcessId]:
    """Every living descendant of ``pid`` (children, their children, ...)."""
    if not _PROC.is_dir():
        return []
    children: dict[int, list[ProcessId]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name))
        if stat is not None:
            children.setdefault(stat[1], []).append(ProcessId(int(entry.name), stat[2]))
    out: list[ProcessId] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child.pid)
    return out


def alive(process: ProcessId) -> bool:
    """Whether ``process`` still runs (the same process: same id and start time, not a zombie)."""
    stat = _stat(process.pid)
    return stat is not None and stat[2] == process.started and stat[0] != "Z"


def end(processes: list[ProcessId], patience: float = 3.0) -> list[ProcessId]:
    """SIGTERM each of ``processes`` still alive, SIGKILL those alive ``patience`` seconds later;
    returns the ones that had outlived the shutdown (those that were signalled)."""
    left = [p for p in processes if alive(p)]
    for p in left:
        _signal(p, signal.SIGTERM)
    deadline = time.monotonic() + patience
    while any(alive(p) for p in left) and time.monotonic() < deadline:
        time.sleep(0.05)
    for p in left:
        if alive(p):
            _signal(p, signal.SIGKILL)
    return left


def _signal(process: ProcessId, signum: int) -> None:
    if alive(process):  # checked again just before: the id is never one given to a new process
        try:
            os.kill(process.pid, signum)
        except ProcessLookupError:
            pass
