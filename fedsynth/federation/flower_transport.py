"""The transport over Flower's Grid: instructions become Messages to SuperNodes.

Hospitals identify themselves in a ``query`` message at start-up (their hospital id comes from
their site file), so the server addresses hospitals, not Flower node ids. In a deployment the
coordinator's node registry (:mod:`fedsynth.consortium.registry`) decides which node is which
hospital, by the key it registered; a node whose claim differs is refused.

A run being stopped (``flwr stop``) tears Flower's runtime down while the server is waiting for a
wave: the replies that still come are Flower's error replies for nodes that are gone, not
hospitals failing. The transport takes a ``stopping`` event, set by whoever learns of the stop,
and raises :class:`~fedsynth.errors.RunStopped` instead of returning such a wave, so a stopped run
is never finished as if every hospital had failed (and never writes a summary of a model nobody
trained).
"""

from __future__ import annotations

import logging
import threading
import time

from flwr.app import Message
from flwr.serverapp import Grid

from fedsynth.consortium.registry import NodeRegistry
from fedsynth.errors import RunStopped
from fedsynth.federation import wire
from fedsynth.federation.strategy import Send
from fedsynth.federation.transport import Exchange

log = logging.getLogger("fedsynth.server")

TRAIN = "train"
QUERY = "query"


class GridTransport:
    """Sends waves through a Flower ``Grid`` and decodes the replies; raises
    :class:`~fedsynth.errors.RunStopped` once ``stopping`` is set (see the module docstring)."""

    def __init__(
        self,
        grid: Grid,
        num_hospitals: int,
        wait_seconds: float = 600.0,
        registry: NodeRegistry | None = None,
        poll_seconds: float = 0.25,
        stopping: threading.Event | None = None,
    ) -> None:
        self.grid = grid
        self.stopping = stopping
        self.poll_seconds = poll_seconds
        self.num_hospitals = num_hospitals
        self.wait_seconds = wait_seconds
        self.registry = registry
        self._node_of: dict[int, int] = {}

    def hospitals(self) -> list[int]:
        if not self._node_of:
            self._discover()
        return sorted(self._node_of)

    def _expected_nodes(self) -> set[int] | None:
        """The registered node ids of hospitals 0..N-1 (None: no registry, any N nodes)."""
        if self.registry is None:
            return None
        missing = [h for h in range(self.num_hospitals) if h not in self.registry.nodes]
        if missing:
            raise RuntimeError(f"hospitals {missing} have no registered node in the node registry")
        return {self.registry.nodes[h].node_id for h in range(self.num_hospitals)}

    def _discover(self) -> None:
        """Identify N hospitals. A node Flower lists but cannot reach yet (restarting: its old
        session lapses first) answers with an error; it is asked again until ``wait_seconds``."""
        expected = self._expected_nodes()
        deadline = time.monotonic() + self.wait_seconds
        registered = self.registry.hospital_of() if self.registry is not None else {}
        unreachable: dict[int, str] = {}
        while len(self._node_of) < self.num_hospitals:
            known = set(self._node_of.values())
            nodes = [n for n in self.grid.get_node_ids() if n not in known and (expected is None or n in expected)]
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"only {len(self._node_of)} of {self.num_hospitals} hospitals identified in "
                    f"{self.wait_seconds:.0f} s (unreachable: {unreachable or 'none'})"
                )
            if len(nodes) + len(known) < self.num_hospitals:
                time.sleep(0.5)
                continue
            queries = [
                Message(content=wire.query_content("identity"), dst_node_id=n, message_type=QUERY) for n in nodes
            ]
            wait = max(1.0, min(60.0, deadline - time.monotonic()))
            for reply, index in self._round_trip(queries, timeout=wait):
                node = nodes[index] if index >= 0 else reply.metadata.src_node_id
                if reply.has_error():
                    unreachable[node] = reply.error.reason
                    continue
                hid = wire.content_to_identity(reply.content)
                if registered and registered[node] != hid:
                    raise RuntimeError(
                        f"node {node} is registered as hospital {registered[node]} but its site claims hospital {hid}"
                    )
                if hid in self._node_of:
                    raise RuntimeError(f"two nodes claim hospital id {hid}")
                self._node_of[hid] = node
                unreachable.pop(node, None)
            if len(self._node_of) < self.num_hospitals:
                time.sleep(1.0)

    def exchange(self, sends: list[Send], timeout: float) -> Exchange:
        out = Exchange()
        hospital_of_node = {n: h for h, n in self._node_of.items()}
        messages = []
        for send in sends:
            content = wire.instruction_to_content(send.instruction)
            out.bytes_down[send.hospital_id] = wire.content_nbytes(content)
            messages.append(Message(content=content, dst_node_id=self._node_of[send.hospital_id], message_type=TRAIN))
        answered = set()
        for reply, index in self._round_trip(messages, timeout=timeout):
            # Flower's own error replies (e.g. "node unavailable") come from the SuperLink, not the
            # node: they are attributed through the message they answer.
            hid = hospital_of_node.get(reply.metadata.src_node_id, sends[index].hospital_id if index >= 0 else -1)
            answered.add(hid)
            if reply.has_error():
                out.failures[hid] = f"error reply: {reply.error.reason}"
                continue
            try:
                decoded = wire.content_to_reply(reply.content)
            except wire.ManifestError as e:
                out.failures[hid] = f"malformed reply: {e}"
                continue
            if decoded.hospital_id != hid:  # the server knows a hospital by its node, not by its claim
                out.failures[hid] = f"reply claims to be hospital {decoded.hospital_id}"
                continue
            out.bytes_up[hid] = wire.content_nbytes(reply.content)
            out.replies.append(decoded)
        for send in sends:
            if send.hospital_id not in answered:
                out.failures[send.hospital_id] = f"no reply within {timeout:.0f} s"
        return out

    def _round_trip(self, messages: list[Message], timeout: float) -> list[tuple[Message, int]]:
        """Push ``messages``, then pull replies every ``poll_seconds`` (Flower's own
        ``send_and_receive`` waits 3 s between pulls) until all answered or ``timeout``; each reply
        with the index of the message it answers (-1 if none). Raises :class:`RunStopped` when the
        run is being stopped, before or during the wait."""
        self._check_stopping()
        ids = list(self.grid.push_messages(messages))
        index_of = {mid: i for i, mid in enumerate(ids) if mid}
        pending = set(index_of)
        out: list[tuple[Message, int]] = []
        deadline = time.monotonic() + timeout
        while pending:
            for reply in self.grid.pull_messages(pending):
                answered = reply.metadata.reply_to_message_id
                pending.discard(answered)
                out.append((reply, index_of.get(answered, -1)))
            self._check_stopping()  # replies pulled after the stop may be the runtime's, not the nodes'
            if not pending or time.monotonic() >= deadline:
                break
            time.sleep(self.poll_seconds)
        return out

    def _check_stopping(self) -> None:
        if self.stopping is not None and self.stopping.is_set():
            raise RunStopped("the run was stopped before it finished; nothing was finalized (resume it to continue)")

    def ledgers(self, hospitals: list[int], timeout: float) -> dict[int, dict]:
        messages = [
            Message(content=wire.query_content("ledger"), dst_node_id=self._node_of[h], message_type=QUERY)
            for h in hospitals
            if h in self._node_of
        ]
        out: dict[int, dict] = {}
        for reply, _ in self._round_trip(messages, timeout=timeout):
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
