"""How the coordinator reaches hospitals: the transport interface and the in-process transport.

A transport delivers a wave of instructions and returns the replies that came back. Every
transport serializes through :mod:`fedsynth.federation.wire`, so bytes are counted the same way
whether hospitals live behind Flower or in this process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from fedsynth.config.schema import RunConfig
from fedsynth.federation import wire
from fedsynth.federation.faults import HospitalLate, HospitalUnavailable
from fedsynth.federation.strategy import Send
from fedsynth.hospital.service import HospitalService
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


class InProcessTransport:
    """Hospitals served in this process (Flower-free); messages still go through the wire.

    Faults configured for simulation apply as behind Flower: an unavailable hospital is a failure,
    a late one misses the round.
    """

    def __init__(self, config: RunConfig, service: HospitalService | None = None) -> None:
        self.config = config
        self.service = service or HospitalService()

    def hospitals(self) -> list[int]:
        return list(range(self.config.federation.num_hospitals))

    def exchange(self, sends: list[Send], timeout: float) -> Exchange:
        out = Exchange()
        for send in sends:
            content = wire.instruction_to_content(send.instruction)
            out.bytes_down[send.hospital_id] = wire.content_nbytes(content)
            try:
                reply = self.service.handle(send.hospital_id, self.config, wire.content_to_instruction(content))
            except (HospitalUnavailable, HospitalLate) as e:
                out.failures[send.hospital_id] = str(e)
                continue
            reply_content = wire.reply_to_content(reply)
            out.bytes_up[send.hospital_id] = wire.content_nbytes(reply_content)
            out.replies.append(wire.content_to_reply(reply_content))
        return out
