"""A run stopped while the server waits for hospitals (``flwr stop``) ends with ``RunStopped``.

Flower's exit handlers run in the main thread of ``flwr-simulation`` while the ServerApp's thread is
still waiting for a wave; the actors that die meanwhile come back as error replies. Taken for failed
hospitals, they let the server run its remaining rounds in a fraction of a second and write a
summary.json of an untrained model (tests/test_flwr_run.py saw it). The Grid below behaves as a
dying runtime does: it accepts the messages, and at the first pull the stop is signalled (as
``fedsynth.flower.server.stop_on_exit`` does) and every message comes back as an error reply.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
from flwr.supercore.task_identity import TaskIdentity

from fedsynth.errors import RunStopped
from fedsynth.federation.flower_transport import GridTransport


class DyingGrid:
    """A Grid whose runtime is being torn down: every pulled reply is an error reply, and the first
    pull sets ``stopping`` (when given) before answering."""

    def __init__(self, stopping: threading.Event | None) -> None:
        self.stopping = stopping
        self.pulls = 0
        self.ids: list[str] = []

    def get_node_ids(self) -> list[int]:
        return [101, 102]

    def push_messages(self, messages: list) -> list[str]:
        self.ids = [f"message-{i}" for i, _ in enumerate(messages)]
        return list(self.ids)

    def pull_messages(self, ids: set[str]) -> list[SimpleNamespace]:
        self.pulls += 1
        if self.stopping is not None:
            self.stopping.set()
        return [
            SimpleNamespace(
                metadata=SimpleNamespace(reply_to_message_id=mid, src_node_id=0),
                has_error=lambda: True,
                error=SimpleNamespace(reason="Failed to submit task to actor: it might be dead"),
            )
            for mid in sorted(ids)
        ]


@pytest.fixture
def flower_task(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flower builds a Message only inside a task; give this process one (restored afterwards)."""
    monkeypatch.setattr(TaskIdentity, "_run_id", 1)
    monkeypatch.setattr(TaskIdentity, "_node_id", 0)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)


def transport(grid: DyingGrid, stopping: threading.Event | None) -> GridTransport:
    t = GridTransport(grid, num_hospitals=2, poll_seconds=0.01, stopping=stopping)  # type: ignore[arg-type]
    t._node_of = {0: 101, 1: 102}  # identified earlier in the run
    return t


def test_error_replies_of_a_stopping_runtime_stop_the_run(flower_task: None) -> None:
    stopping = threading.Event()
    grid = DyingGrid(stopping)
    with pytest.raises(RunStopped, match="stopped before it finished"):
        transport(grid, stopping).ledgers([0, 1], timeout=5.0)
    assert grid.pulls == 1  # stopped at the wave it was waiting for, not after its timeout


def test_without_a_stop_the_same_error_replies_are_unreachable_hospitals(flower_task: None) -> None:
    # The control: the same replies with no stop signalled are what they say, hospitals not answering.
    grid = DyingGrid(None)
    assert transport(grid, threading.Event()).ledgers([0, 1], timeout=5.0) == {}
    assert grid.pulls == 1


def test_a_stop_signalled_before_a_wave_sends_nothing(flower_task: None) -> None:
    stopping = threading.Event()
    stopping.set()
    grid = DyingGrid(None)
    with pytest.raises(RunStopped):
        transport(grid, stopping).ledgers([0, 1], timeout=5.0)
    assert grid.ids == [] and grid.pulls == 0
