"""Finding and ending the processes one test started, and nothing else.

Ray and Flower start their processes detached (new sessions: ``ray start``'s GCS and raylet,
Flower's SuperLink and SuperExec, ``flwr-simulation``'s Ray instance), so neither a process
group nor a parent chain finds them all. Every process inherits its parent's environment,
though: a test puts a unique tag in the environment of the commands it runs, and the processes
holding that tag are exactly the ones it started (other engineers' SuperLinks, Ray clusters and
pytest sessions on the same machine never carry it).
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

#: The environment variable holding a test's tag.
TAG_VARIABLE = "FEDSYNTH_TEST_PROCESS_TAG"


def new_tag() -> str:
    """A tag no other process on this machine carries."""
    return uuid.uuid4().hex


def tagged(tag: str) -> dict[int, str]:
    """``{pid: command line}`` of the live processes whose environment holds ``tag``."""
    marker = f"{TAG_VARIABLE}={tag}".encode()
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue  # a zombie already exited; its parent only has to reap it
            found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue  # exited meanwhile, or not ours to read
    return found


def wait_until_gone(tag: str, patience: float = 30.0) -> dict[int, str]:
    """Wait (up to ``patience`` seconds, for processes that are shutting down) until no process holds
    ``tag``; returns those still alive then (empty when all are gone)."""
    deadline = time.monotonic() + patience
    alive = tagged(tag)
    while alive and time.monotonic() < deadline:
        time.sleep(0.5)
        alive = tagged(tag)
    return alive


def kill_tagged(tag: str) -> None:
    """SIGKILL every process still holding ``tag`` (a test's clean-up after a failure)."""
    for pid in tagged(tag):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
