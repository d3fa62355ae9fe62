"""The in-process engine: hospitals served in this process, without Flower.

Every hospital is a :class:`~fedsynth.hospital.service.HospitalService` built from its own site
file, kept resident for the whole run; messages still pass through the wire (and are counted), so
the server sees exactly what it would see behind Flower. Faults declared in the site files apply
as behind Flower: an unavailable hospital is a failure, a late one misses the round.
"""

from __future__ import annotations

from fedsynth.federation import wire
from fedsynth.federation.strategy import Send
from fedsynth.federation.transport import Exchange
from fedsynth.hospital.service import HospitalService
from fedsynth.site.config import Site
from fedsynth.site.faults import HospitalLate, HospitalUnavailable


class InProcessTransport:
    """A transport to resident hospital services of this process."""

    def __init__(self, services: dict[int, HospitalService]) -> None:
        self.services = dict(services)

    @classmethod
    def from_sites(cls, sites: dict[int, Site]) -> InProcessTransport:
        return cls({hid: HospitalService(site) for hid, site in sites.items()})

    def hospitals(self) -> list[int]:
        return sorted(self.services)

    def exchange(self, sends: list[Send], timeout: float) -> Exchange:
        out = Exchange()
        for send in sends:
            content = wire.instruction_to_content(send.instruction)
            out.bytes_down[send.hospital_id] = wire.content_nbytes(content)
            instruction = wire.content_to_instruction(content)  # what the site receives
            try:
                reply = self.services[send.hospital_id].handle(instruction)
            except (HospitalUnavailable, HospitalLate) as e:
                out.failures[send.hospital_id] = str(e)
                continue
            reply_content = wire.reply_to_content(reply, instruction)
            out.bytes_up[send.hospital_id] = wire.content_nbytes(reply_content)
            out.replies.append(wire.content_to_reply(reply_content))
        return out

    def ledgers(self, hospitals: list[int], timeout: float) -> dict[int, dict]:
        out = {}
        for hid in hospitals:
            try:
                report = self.services[hid].ledger_report()
            except HospitalUnavailable:
                continue
            _, out[hid] = wire.content_to_ledger(wire.ledger_to_content(hid, report))
        return out
