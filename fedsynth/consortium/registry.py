"""The coordinator's node registry: which registered SuperNode key is which hospital.

``flwr supernode register KEY.pub`` admits a hospital's node-authentication key to the SuperLink
and answers with the node id Flower gives the node that authenticates with that key. The
coordinator records the pairing here, a public TOML file::

    [hospitals.0]
    node_id = 5412281440035005650
    key_fingerprint = "SHA256:..."

The ServerApp reads it (run config ``federation.node_registry``) and addresses hospital ``i``
only through the node registered for it: a node's own claim about which hospital it is never
decides anything (a mismatch is refused).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from fedsynth.errors import ConfigError


@dataclass(frozen=True)
class RegisteredNode:
    hospital_id: int
    node_id: int
    key_fingerprint: str


class NodeRegistry:
    """Hospital id <-> registered node id (see the module docstring)."""

    def __init__(self, nodes: list[RegisteredNode]) -> None:
        self.nodes = {n.hospital_id: n for n in nodes}
        by_node = {n.node_id for n in nodes}
        if len(by_node) != len(nodes):
            raise ConfigError("node registry: two hospitals share one node id")

    @classmethod
    def load(cls, path: str | Path) -> NodeRegistry:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: node registry not found (run `fedsynth coordinator register`)")
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML ({e})") from e
        nodes = []
        for key, entry in data.get("hospitals", {}).items():
            try:
                nodes.append(RegisteredNode(int(key), int(entry["node_id"]), str(entry.get("key_fingerprint", ""))))
            except (KeyError, ValueError, TypeError) as e:
                raise ConfigError(f"{path}: hospitals.{key}: expected an integer node_id ({e})") from e
        return cls(nodes)

    def save(self, path: str | Path) -> None:
        import tomli_w

        data = {
            "hospitals": {
                str(h): {"node_id": n.node_id, "key_fingerprint": n.key_fingerprint}
                for h, n in sorted(self.nodes.items())
            }
        }
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(tomli_w.dumps(data))

    def with_node(self, node: RegisteredNode) -> NodeRegistry:
        """A registry with ``node`` added; refuses a hospital already registered under another key."""
        old = self.nodes.get(node.hospital_id)
        if old is not None and old != node:
            raise ConfigError(
                f"hospital {node.hospital_id} is already registered as node {old.node_id} "
                f"(key {old.key_fingerprint}); unregister it first"
            )
        return NodeRegistry([*[n for h, n in self.nodes.items() if h != node.hospital_id], node])

    def hospital_of(self) -> dict[int, int]:
        """Node id -> hospital id."""
        return {n.node_id: h for h, n in self.nodes.items()}
