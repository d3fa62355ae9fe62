"""A simple network model to turn the bytes a round moves into simulated communication time.

Every transfer goes between one hospital and the server: fedsynth has no peer-to-peer links,
so a ring passes a model on as two hops (hospital -> server, then server -> next hospital), see
:func:`relay_waves`. A round is a list of *waves* that run one after another; the transfers of
one wave run at the same time and the wave lasts until its slowest transfer has arrived.

Within a wave, transfers that share a link share its bandwidth max-min fairly (every transfer
gets an equal share of a link unless it is held back elsewhere, and what it cannot use goes to
the others), re-shared whenever a transfer finishes. The links are each hospital's uplink and
downlink and the server's outgoing and incoming side, each of ``server_mbps`` (full duplex;
None means the server is never the bottleneck). Latency is one-way propagation delay between a
hospital and the server: it delays arrival but does not occupy bandwidth.

Units: Mbit/s with 1 Mbit = 10**6 bits, milliseconds, bytes; times are returned in seconds.
Computation time (training) is not modelled here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from fedsynth.errors import ConfigError

SERVER: Literal["server"] = "server"
Node = int | Literal["server"]


class Transfer(NamedTuple):
    """``nbytes`` sent from ``src`` to ``dst``; exactly one of them is ``"server"``."""

    src: Node
    dst: Node
    nbytes: int


@dataclass(frozen=True)
class SiteLink:
    """One hospital's connection to the server."""

    uplink_mbps: float
    downlink_mbps: float
    latency_ms: float

    def __post_init__(self) -> None:
        for key in ("uplink_mbps", "downlink_mbps"):
            value = getattr(self, key)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{key} = {value!r}: expected a finite number > 0")
        if not (isinstance(self.latency_ms, int | float) and math.isfinite(self.latency_ms) and self.latency_ms >= 0):
            raise ValueError(f"latency_ms = {self.latency_ms!r}: expected a finite number >= 0")


@dataclass(frozen=True)
class NetworkModel:
    """Bandwidths and latencies of a federation's links.

    Every hospital has ``bandwidth_mbps`` up and down and ``latency_ms`` to the server unless
    ``sites`` overrides it (hospital id -> :class:`SiteLink`, e.g. from
    :func:`parse_site_overrides`). ``server_mbps`` caps the server's sending and, separately,
    its receiving side; None leaves the server unconstrained.
    """

    bandwidth_mbps: float = 100.0
    latency_ms: float = 20.0
    server_mbps: float | None = 1000.0
    sites: Mapping[int, SiteLink] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        SiteLink(self.bandwidth_mbps, self.bandwidth_mbps, self.latency_ms)  # validates the defaults
        if self.server_mbps is not None and not (math.isfinite(self.server_mbps) and self.server_mbps > 0):
            raise ValueError(f"server_mbps = {self.server_mbps!r}: expected a finite number > 0 or None")
        for hospital_id, link in self.sites.items():
            if not isinstance(link, SiteLink):
                raise TypeError(f"sites[{hospital_id!r}] = {link!r}: expected a SiteLink")

    def link(self, hospital_id: int) -> SiteLink:
        """The link of ``hospital_id``: its override, or the defaults."""
        if hospital_id in self.sites:
            return self.sites[hospital_id]
        return SiteLink(self.bandwidth_mbps, self.bandwidth_mbps, self.latency_ms)


def transfer_seconds(nbytes: int, mbps: float, latency_ms: float) -> float:
    """Time for ``nbytes`` over an otherwise idle link: latency plus bits over bandwidth."""
    if nbytes < 0:
        raise ValueError(f"nbytes = {nbytes}: expected >= 0")
    if not mbps > 0:
        raise ValueError(f"mbps = {mbps}: expected > 0")
    if latency_ms < 0:
        raise ValueError(f"latency_ms = {latency_ms}: expected >= 0")
    return latency_ms / 1000.0 + nbytes * 8 / (mbps * 1e6)


# --------------------------------------------------------------------------------------------
# wave timing


def _resources(transfer: Transfer) -> tuple[tuple[str, Node], tuple[str, Node], int]:
    """The two links a transfer occupies and its hospital; ValueError for non-server transfers."""
    src, dst, nbytes = transfer
    if nbytes < 0:
        raise ValueError(f"transfer {transfer}: nbytes must be >= 0")
    if src == SERVER and dst != SERVER:
        return ("server-out", SERVER), ("down", dst), dst
    if dst == SERVER and src != SERVER:
        return ("up", src), ("server-in", SERVER), src
    raise ValueError(
        f"transfer {transfer}: exactly one end must be 'server' (a hospital-to-hospital pass is two hops, "
        "see relay_waves)"
    )


def _max_min_rates(active: list[int], uses: list[tuple], capacity: dict) -> dict[int, float]:
    """Max-min fair rates (bits/s) by progressive filling over the links in ``capacity``."""
    rates = dict.fromkeys(active, 0.0)
    left = dict(capacity)
    growing = set(active)
    while growing:
        count: dict = {}
        for i in growing:
            for r in uses[i]:
                if r in left:
                    count[r] = count.get(r, 0) + 1
        bottleneck = min(count, key=lambda r: left[r] / count[r])
        step = left[bottleneck] / count[bottleneck]
        for i in growing:
            rates[i] += step
        for r, c in count.items():
            left[r] -= step * c
        full = {bottleneck} | {r for r in count if left[r] <= 1e-9 * capacity[r]}
        growing = {i for i in growing if not any(r in full for r in uses[i])}
    return rates


def wave_seconds(wave: Sequence[Transfer], network: NetworkModel) -> float:
    """Duration of one wave: until the last of its simultaneous transfers has arrived."""
    if not wave:
        return 0.0
    uses: list[tuple] = []
    capacity: dict = {}
    latency: list[float] = []
    bits: list[float] = []
    for t in wave:
        a, b, hospital = _resources(Transfer(*t))
        link = network.link(int(hospital))
        uses.append((a, b))
        for r in (a, b):
            if r[1] == SERVER:
                if network.server_mbps is not None:
                    capacity[r] = network.server_mbps * 1e6
            else:
                capacity[r] = (link.uplink_mbps if r[0] == "up" else link.downlink_mbps) * 1e6
        latency.append(link.latency_ms / 1000.0)
        bits.append(float(t[2]) * 8)

    finish = [0.0] * len(wave)
    active = [i for i in range(len(wave)) if bits[i] > 0]
    now = 0.0
    while active:
        rates = _max_min_rates(active, uses, capacity)
        first = min(active, key=lambda i: bits[i] / rates[i])
        dt = bits[first] / rates[first]
        now += dt
        still = []
        for i in active:
            bits[i] -= rates[i] * dt
            if i == first or bits[i] <= 1e-9 * rates[i] * dt:
                finish[i] = now
            else:
                still.append(i)
        active = still
    return max(f + lat for f, lat in zip(finish, latency))


def round_wall_time(waves: Sequence[Sequence[Transfer]], network: NetworkModel) -> float:
    """Seconds to run ``waves`` one after another (see :func:`wave_seconds`)."""
    return float(sum(wave_seconds(w, network) for w in waves))


# --------------------------------------------------------------------------------------------
# wave builders


def exchange_waves(bytes_down: Mapping[int, int], bytes_up: Mapping[int, int]) -> list[list[Transfer]]:
    """The two waves of one coordinator exchange: all downloads, then all uploads.

    Takes the per-hospital byte counts a transport measures for one exchange; empty waves are
    left out.
    """
    down = [Transfer(SERVER, h, int(n)) for h, n in bytes_down.items()]
    up = [Transfer(h, SERVER, int(n)) for h, n in bytes_up.items()]
    return [w for w in (down, up) if w]


def star_waves(hospitals: Sequence[int], nbytes: int) -> list[list[Transfer]]:
    """A star round: the server sends the model to every hospital, then every hospital sends back."""
    return exchange_waves(dict.fromkeys(hospitals, nbytes), dict.fromkeys(hospitals, nbytes))


def relay_waves(src: int, dst: int, nbytes: int) -> list[list[Transfer]]:
    """Passing ``nbytes`` from hospital ``src`` to ``dst`` through the server: two one-transfer waves."""
    return [[Transfer(src, SERVER, nbytes)], [Transfer(SERVER, dst, nbytes)]]


def ring_waves(order: Sequence[int], nbytes: int) -> list[list[Transfer]]:
    """A sequential ring round: the server sends the model to ``order[0]``, each hospital passes it
    on to the next through the server, and the last one sends it back: ``2 * len(order)`` waves.
    """
    if not order:
        return []
    waves: list[list[Transfer]] = [[Transfer(SERVER, order[0], nbytes)]]
    for src, dst in zip(order[:-1], order[1:]):
        waves += relay_waves(src, dst, nbytes)
    waves.append([Transfer(order[-1], SERVER, nbytes)])
    return waves


# --------------------------------------------------------------------------------------------
# configuration


def parse_site_overrides(text: str) -> dict[int, SiteLink]:
    """Parse ``"0:10/50/30,3:1/5/200"`` (hospital:uplink/downlink Mbit/s/latency ms) into links.

    An empty string gives no overrides. ConfigError names the bad entry and what was expected.
    """
    expected = "'hospital:uplink_mbps/downlink_mbps/latency_ms', e.g. '3:10/50/30'"
    out: dict[int, SiteLink] = {}
    if not text.strip():
        return out
    for entry in text.split(","):
        item = entry.strip()
        head, sep, tail = item.partition(":")
        parts = tail.split("/")
        if not sep or len(parts) != 3:
            raise ConfigError(f"network site override {item!r}: expected {expected}")
        try:
            hospital_id = int(head.strip())
        except ValueError:
            raise ConfigError(
                f"network site override {item!r}: hospital {head.strip()!r} is not an integer id"
            ) from None
        if hospital_id < 0:
            raise ConfigError(f"network site override {item!r}: hospital id must be >= 0")
        if hospital_id in out:
            raise ConfigError(f"network site override {item!r}: hospital {hospital_id} is given more than once")
        try:
            up, down, latency = (float(p.strip()) for p in parts)
        except ValueError:
            raise ConfigError(f"network site override {item!r}: expected numbers in {expected}") from None
        try:
            out[hospital_id] = SiteLink(up, down, latency)
        except ValueError as exc:
            raise ConfigError(f"network site override {item!r}: {exc}") from None
    return out
