"""How the coordinator reaches hospitals: the transport interface.

A transport delivers a wave of instructions and returns the replies that came back, and at the end
of a run collects every hospital's ledger. Every transport serializes through
:mod:`fedsynth.federation.wire`, so bytes are counted the same way whether hospitals live behind
Flower (:mod:`fedsynth.federation.flower_transport`) or in this process
(:mod:`fedsynth.simulation.inprocess`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from fedsynth.federation.strategy import Send
from fedsynth.protocol import HospitalReply


@dataclass
class Exchange:
    """The result of delivering one wave."""

    replies: list[HospitalReply] = field(default_factory=list)
    #: Serialized bytes sent to (downlink) / received from (uplink) each hospital.
    bytes_down: dict[int, int] = field(default_factory=dict)
    bytes_up: dict[int, int] = field(default_factory=dict)
    #: Hospitals that did not answer, with the reason.
    failures: dict[int, str] = field(default_factory=dict)


class Transport(Protocol):
    def hospitals(self) -> list[int]:
        """Ids of the hospitals taking part, sorted."""
        ...

    def exchange(self, sends: list[Send], timeout: float) -> Exchange:
        """Deliver ``sends`` at once and collect the replies."""
        ...

    def ledgers(self, hospitals: list[int], timeout: float) -> dict[int, dict]:
        """Every reachable hospital's full ledger (as it reports it); unreachable ones are left out."""
        ...
