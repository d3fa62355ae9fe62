"""The transport over Flower's Grid: instructions become Messages to SuperNodes.

Hospitals identify themselves in a ``query`` message at start-up (their hospital id comes from
the node config), so the server addresses hospitals, not Flower node ids.
"""

from __future__ import annotations

import logging
import time

from flwr.app import Message
from flwr.serverapp import Grid

from fedsynth.federation import wire
from fedsynth.federation.strategy import Send
from fedsynth.federation.transport import Exchange

log = logging.getLogger("fedsynth.server")

TRAIN = "train"
QUERY = "query"


class GridTransport:
    """Sends waves through a Flower ``Grid`` and decodes the replies."""

    def __init__(self, grid: Grid, num_hospitals: int, wait_seconds: float = 600.0) -> None:
        self.grid = grid
        self.num_hospitals = num_hospitals
        self.wait_seconds = wait_seconds
        self._node_of: dict[int, int] = {}

    def hospitals(self) -> list[int]:
        if not self._node_of:
            self._discover()
        return sorted(self._node_of)

    def _discover(self) -> None:
        deadline = time.monotonic() + self.wait_seconds
        node_ids = list(self.grid.get_node_ids())
        while len(node_ids) < self.num_hospitals:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"only {len(node_ids)} of {self.num_hospitals} hospitals connected in {self.wait_seconds:.0f} s"
                )
            time.sleep(0.5)
            node_ids = list(self.grid.get_node_ids())
        queries = [Message(content=wire.query_content("identity"), dst_node_id=n, message_type=QUERY) for n in node_ids]
        for reply in self.grid.send_and_receive(queries, timeout=self.wait_seconds):
            if reply.has_error():
                raise RuntimeError(f"node {reply.metadata.src_node_id} failed to identify itself: {reply.error}")
            hid = wire.content_to_identity(reply.content)
            if hid in self._node_of:
                raise RuntimeError(f"two nodes claim hospital id {hid}")
            self._node_of[hid] = reply.metadata.src_node_id

    def exchange(self, sends: list[Send], timeout: float) -> Exchange:
        out = Exchange()
        hospital_of_node = {n: h for h, n in self._node_of.items()}
        messages = []
        for send in sends:
            content = wire.instruction_to_content(send.instruction)
            out.bytes_down[send.hospital_id] = wire.content_nbytes(content)
            messages.append(Message(content=content, dst_node_id=self._node_of[send.hospital_id], message_type=TRAIN))
        answered = set()
        for reply in self.grid.send_and_receive(messages, timeout=timeout):
            hid = hospital_of_node.get(reply.metadata.src_node_id, -1)
            answered.add(hid)
            if reply.has_error():
                out.failures[hid] = f"error reply: {reply.error.reason}"
                continue
            decoded = wire.content_to_reply(reply.content)
            if decoded.hospital_id != hid:  # the server knows a hospital by its node, not by its claim
                out.failures[hid] = f"reply claims to be hospital {decoded.hospital_id}"
                continue
            out.bytes_up[hid] = wire.content_nbytes(reply.content)
            out.replies.append(decoded)
        for send in sends:
            if send.hospital_id not in answered:
                out.failures[send.hospital_id] = f"no reply within {timeout:.0f} s"
        return out

    def ledgers(self, hospitals: list[int], timeout: float) -> dict[int, dict]:
        messages = [
            Message(content=wire.query_content("ledger"), dst_node_id=self._node_of[h], message_type=QUERY)
            for h in hospitals
            if h in self._node_of
        ]
        out: dict[int, dict] = {}
        for reply in self.grid.send_and_receive(messages, timeout=timeout):
            if reply.has_error():
                log.warning("node %s did not report its ledger: %s", reply.metadata.src_node_id, reply.error.reason)
                continue
            claimed, ledger = wire.content_to_ledger(reply.content)
            hid = {n: h for h, n in self._node_of.items()}.get(reply.metadata.src_node_id)
            if hid is None or claimed != hid:
                log.warning("node %s reported a ledger for hospital %s: ignored", reply.metadata.src_node_id, claimed)
                continue
            out[hid] = ledger
        return out
