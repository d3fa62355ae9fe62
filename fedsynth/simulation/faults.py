"""Fault injection for simulated federations: the run configuration's ``[faults]`` lists, split into
each simulated hospital's own site file.

``[faults]`` takes comma-separated ``HOSPITAL@ROUND`` or ``HOSPITAL@FIRST-LAST`` entries. The
simulation turns them into one :class:`~fedsynth.site.faults.SiteFaults` per hospital, so each
hospital fails on its own side and the server sees only what it would see from a real failing site.
"""

from __future__ import annotations

from fedsynth.config.schema import FaultConfig
from fedsynth.errors import ConfigError
from fedsynth.site.faults import SiteFaults, format_rounds, parse_rounds


def _entries(kind: str, text: str, num_hospitals: int) -> list[tuple[int, str]]:
    out = []
    for entry in (e.strip() for e in text.split(",") if e.strip()):
        hospital_text, _, rounds_text = entry.partition("@")
        try:
            hospital = int(hospital_text)
        except ValueError:
            hospital = -1
        if not rounds_text or not 0 <= hospital < num_hospitals:
            raise ConfigError(
                f"faults.{kind} entry {entry!r}: expected HOSPITAL@ROUND or HOSPITAL@FIRST-LAST with a hospital "
                f"in 0..{num_hospitals - 1}, e.g. 1@3"
            )
        parse_rounds(rounds_text, f"faults.{kind} entry {entry!r}")
        out.append((hospital, rounds_text))
    return out


def site_faults(config: FaultConfig, num_hospitals: int, late_seconds: float) -> dict[int, SiteFaults]:
    """Each simulated hospital's faults (``drop``: from the first listed round on, for good)."""
    drop: dict[int, int] = {}
    rounds: dict[str, dict[int, set[int]]] = {"late": {}, "crash": {}, "corrupt": {}}
    for hospital, text in _entries("drop", config.drop, num_hospitals):
        first = min(parse_rounds(text, "faults.drop"))
        drop[hospital] = min(first, drop.get(hospital, first))
    for kind in rounds:
        for hospital, text in _entries(kind, getattr(config, kind), num_hospitals):
            rounds[kind].setdefault(hospital, set()).update(parse_rounds(text, f"faults.{kind}"))
    return {
        h: SiteFaults(
            drop_from=drop.get(h, 0),
            late=format_rounds(rounds["late"].get(h, set())),
            crash=format_rounds(rounds["crash"].get(h, set())),
            corrupt=format_rounds(rounds["corrupt"].get(h, set())),
            late_seconds=late_seconds,
        )
        for h in range(num_hospitals)
    }
