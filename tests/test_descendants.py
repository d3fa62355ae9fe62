"""Processes that outlive a shutdown are found and ended (``fedsynth.flower.descendants``), as the
ServerApp does with Ray's agents when a run is stopped: listed while they are descendants, ended
after their parent has gone and they were re-parented."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from fedsynth.flower.descendants import ProcessId, alive, descendants, end

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

#: A child that starts a grandchild ignoring SIGTERM (as a stubborn agent), prints its id, and waits.
TREE = """
import signal, subprocess, sys, time
grandchild = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(120)"],
    stdout=subprocess.PIPE, text=True)
grandchild.stdout.readline()
print(grandchild.pid, flush=True)
time.sleep(120)
"""


def test_an_orphaned_grandchild_listed_before_its_parent_died_is_ended() -> None:
    child = subprocess.Popen([sys.executable, "-c", TREE], stdout=subprocess.PIPE, text=True)
    grandchild, listed = None, []
    try:
        grandchild = int(child.stdout.readline())
        listed = [p for p in descendants(os.getpid()) if p.pid in (child.pid, grandchild)]
        assert {p.pid for p in listed} >= {child.pid, grandchild}
        child.kill()  # the parent dies without ending its child: the grandchild is orphaned
        child.wait()
        orphan = next(p for p in listed if p.pid == grandchild)
        assert alive(orphan) and grandchild not in {p.pid for p in descendants(os.getpid())}
        ended = end(listed, patience=1.0)
        assert [p.pid for p in ended] == [grandchild]  # the dead child is not signalled again
        deadline = time.monotonic() + 5
        while alive(orphan) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(orphan)  # ignored SIGTERM, so SIGKILL after the patience
    finally:
        child.kill()
        child.wait()
        if grandchild is not None:
            end([p for p in listed if p.pid == grandchild], patience=0.0)


def test_a_process_id_given_to_a_new_process_is_not_taken_for_the_old_one() -> None:
    me = next(p for p in descendants(os.getppid()) if p.pid == os.getpid())
    assert alive(me)
    assert not alive(ProcessId(me.pid, me.started + 1))  # same id, another start time
    assert end([ProcessId(me.pid, me.started + 1)]) == []  # so it is never signalled
