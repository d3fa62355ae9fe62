"""The ``[node]`` table of a site file: how a real hospital joins the consortium's SuperLink.

::

    [node]
    superlink = "coordinator.example.org:9092"   # the coordinator's SuperLink (host:port)
    root_certificates = "keys/ca.pem"           # the consortium CA: verifies the SuperLink's TLS
    node_key = "keys/node.key"                  # node-authentication key (registered by the coordinator)
    runtime_port = 9094                         # local port of the node's own Runtime API (127.0.0.1)
    approved_apps = ["<sha256 of the app bundle>"]   # app bundles (FABs) this site will run

Paths are relative to the site file. A simulated hospital has no ``[node]`` table: Flower's
simulation engine or the in-process engine connects it.

``approved_apps`` pins the code: the SuperLink ships the app bundle a SuperNode runs, and the
bundle's own Python is what executes at the site, so a site runs a bundle only when its SHA-256
(the hash Flower gives every bundle; bundles build reproducibly from the same source, see
``fedsynth site app-hash``) is listed here. An empty list refuses every bundle.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedsynth.errors import ConfigError

_HEX = frozenset("0123456789abcdef")


def is_sha256(text: str) -> bool:
    """Whether ``text`` is a SHA-256 hex digest (64 lowercase hex digits)."""
    return len(text) == 64 and set(text) <= _HEX


@dataclass(frozen=True)
class NodeConfig:
    """A site's connection to the consortium (see the module docstring)."""

    superlink: str = ""
    root_certificates: str = ""
    node_key: str = ""
    runtime_port: int = 9094
    approved_apps: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.superlink and (":" not in self.superlink or not self.superlink.rsplit(":", 1)[1].isdigit()):
            raise ConfigError(f"node.superlink = {self.superlink!r}: expected host:port")
        if not 0 < self.runtime_port < 65536:
            raise ConfigError(f"node.runtime_port = {self.runtime_port}: expected a port in 1..65535")
        for i, digest in enumerate(self.approved_apps):
            if not is_sha256(digest):
                raise ConfigError(
                    f"node.approved_apps[{i}] = {digest!r}: expected the SHA-256 of an app bundle "
                    "(64 lowercase hex digits, printed by `fedsynth site app-hash`)"
                )

    @property
    def configured(self) -> bool:
        """Whether the site has a deployment section at all (a real site)."""
        return bool(self.superlink)
