"""Simulated communication time: transfers, shared links, star vs ring, site overrides."""

from __future__ import annotations

import pytest

from fedsynth.errors import ConfigError
from fedsynth.federation.network import (
    SERVER,
    NetworkModel,
    SiteLink,
    Transfer,
    exchange_waves,
    parse_site_overrides,
    relay_waves,
    ring_waves,
    round_wall_time,
    star_waves,
    transfer_seconds,
    wave_seconds,
)

MB = 1_000_000  # bytes: 8 Mbit


def test_transfer_seconds() -> None:
    assert transfer_seconds(MB, mbps=8.0, latency_ms=10.0) == pytest.approx(1.01)
    assert transfer_seconds(0, mbps=8.0, latency_ms=25.0) == pytest.approx(0.025)
    with pytest.raises(ValueError, match="mbps"):
        transfer_seconds(MB, mbps=0.0, latency_ms=0.0)
    with pytest.raises(ValueError, match="nbytes"):
        transfer_seconds(-1, mbps=1.0, latency_ms=0.0)


def test_a_lone_transfer_takes_transfer_seconds_on_the_slower_side() -> None:
    net = NetworkModel(bandwidth_mbps=8.0, latency_ms=10.0, server_mbps=4.0)
    assert wave_seconds([Transfer(SERVER, 0, MB)], net) == pytest.approx(transfer_seconds(MB, 4.0, 10.0))
    net = NetworkModel(bandwidth_mbps=8.0, latency_ms=10.0, server_mbps=None)
    assert wave_seconds([(0, SERVER, MB)], net) == pytest.approx(transfer_seconds(MB, 8.0, 10.0))


def test_star_versus_ring_hand_computed() -> None:
    # 3 hospitals, a 1 MB (8 Mbit) model, 8 Mbit/s per hospital, 10 ms, server 16 Mbit/s.
    net = NetworkModel(bandwidth_mbps=8.0, latency_ms=10.0, server_mbps=16.0)
    star = star_waves([0, 1, 2], MB)
    assert len(star) == 2 and all(len(w) == 3 for w in star)
    # each wave: 3 transfers share the server's 16 Mbit/s -> 16/3 each -> 8 / (16/3) = 1.5 s, + 10 ms
    assert round_wall_time(star, net) == pytest.approx(2 * 1.51)
    ring = ring_waves([0, 1, 2], MB)
    # server->0, 0->server, server->1, 1->server, server->2, 2->server: 6 lone transfers of 1.01 s
    assert len(ring) == 6 and all(len(w) == 1 for w in ring)
    assert round_wall_time(ring, net) == pytest.approx(6 * 1.01)
    # an unconstrained server lets the star run at the hospitals' own speed
    free = NetworkModel(bandwidth_mbps=8.0, latency_ms=10.0, server_mbps=None)
    assert round_wall_time(star, free) == pytest.approx(2 * 1.01)


def test_shared_server_link_is_shared_max_min_fairly_and_reshared_when_a_transfer_ends() -> None:
    net = NetworkModel(
        bandwidth_mbps=100.0,
        latency_ms=0.0,
        server_mbps=10.0,
        sites={0: SiteLink(1.0, 2.0, 100.0), 1: SiteLink(1.0, 20.0, 0.0)},
    )
    # hospital 0 can take only 2 of the server's 10 Mbit/s, so hospital 1 gets 8; after 1 s
    # hospital 0 is done (2 Mbit) and hospital 1 has 8 of 16 Mbit left at 10 Mbit/s: 0.8 s more.
    wave = [Transfer(SERVER, 0, 250_000), Transfer(SERVER, 1, 2 * MB)]
    assert wave_seconds(wave, net) == pytest.approx(1.8)
    # hospital 0's 100 ms latency makes its transfer arrive at 1.1 s, still before 1.8 s
    assert wave_seconds(wave[:1], net) == pytest.approx(1.1)


def test_transfers_from_one_hospital_share_its_uplink() -> None:
    net = NetworkModel(bandwidth_mbps=8.0, latency_ms=0.0, server_mbps=None)
    assert wave_seconds([Transfer(0, SERVER, MB), Transfer(0, SERVER, MB)], net) == pytest.approx(2.0)
    assert wave_seconds([Transfer(0, SERVER, MB), Transfer(1, SERVER, MB)], net) == pytest.approx(1.0)


def test_uplink_and_downlink_overrides_and_empty_waves() -> None:
    net = NetworkModel(bandwidth_mbps=8.0, latency_ms=0.0, server_mbps=None, sites={2: SiteLink(1.0, 4.0, 50.0)})
    assert net.link(2).uplink_mbps == 1.0 and net.link(0).uplink_mbps == 8.0
    assert wave_seconds([Transfer(2, SERVER, MB)], net) == pytest.approx(8.05)
    assert wave_seconds([Transfer(SERVER, 2, MB)], net) == pytest.approx(2.05)
    assert wave_seconds([Transfer(SERVER, 2, 0)], net) == pytest.approx(0.05)
    assert wave_seconds([], net) == 0.0
    assert round_wall_time([], net) == 0.0


def test_relay_is_two_hops_and_direct_hospital_transfers_are_refused() -> None:
    assert relay_waves(0, 1, 5) == [[Transfer(0, SERVER, 5)], [Transfer(SERVER, 1, 5)]]
    net = NetworkModel()
    with pytest.raises(ValueError, match="relay_waves"):
        wave_seconds([Transfer(0, 1, MB)], net)
    with pytest.raises(ValueError, match="exactly one end"):
        wave_seconds([Transfer(SERVER, SERVER, MB)], net)


def test_exchange_waves_from_measured_bytes() -> None:
    waves = exchange_waves({0: 10, 1: 20}, {0: 30})
    assert waves == [[Transfer(SERVER, 0, 10), Transfer(SERVER, 1, 20)], [Transfer(0, SERVER, 30)]]
    assert exchange_waves({}, {}) == []


def test_invalid_network_model() -> None:
    with pytest.raises(ValueError, match="server_mbps"):
        NetworkModel(server_mbps=0.0)
    with pytest.raises(ValueError, match="latency_ms"):
        NetworkModel(latency_ms=-1.0)
    with pytest.raises(ValueError, match="uplink_mbps"):
        SiteLink(0.0, 1.0, 1.0)


def test_parse_site_overrides() -> None:
    assert parse_site_overrides("0:10/50/30,3:1/5/200") == {0: SiteLink(10.0, 50.0, 30.0), 3: SiteLink(1.0, 5.0, 200.0)}
    assert parse_site_overrides(" 1 : 2.5 / 3 / 0 ") == {1: SiteLink(2.5, 3.0, 0.0)}
    assert parse_site_overrides("") == {} and parse_site_overrides("  ") == {}


@pytest.mark.parametrize(
    ("text", "bad", "why"),
    [
        ("0:10/50/30,3:1/5", "3:1/5", "expected 'hospital:uplink_mbps/downlink_mbps/latency_ms'"),
        ("x:1/2/3", "x:1/2/3", "not an integer"),
        ("-1:1/2/3", "-1:1/2/3", ">= 0"),
        ("1:1/2/3,1:4/5/6", "1:4/5/6", "more than once"),
        ("2:0/5/3", "2:0/5/3", "uplink_mbps"),
        ("2:1/nan/3", "2:1/nan/3", "downlink_mbps"),
        ("2:a/5/3", "2:a/5/3", "expected numbers"),
        ("2:1/5/-3", "2:1/5/-3", "latency_ms"),
        ("0:1/1/1,", "", "expected"),
        ("0-1/1/1", "0-1/1/1", "expected"),
    ],
)
def test_parse_site_overrides_errors_name_the_bad_entry(text: str, bad: str, why: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_site_overrides(text)
    assert f"{bad!r}" in str(info.value) and why in str(info.value)
