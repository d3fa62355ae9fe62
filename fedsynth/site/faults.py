"""Simulated site faults: a simulated hospital that drops out, answers late, crashes or corrupts.

The simulation writes each hospital's faults into that hospital's own site file, so the hospital
fails on its own side exactly as a real site would, and the server sees only the consequence: an
error reply, no reply before the timeout, or a malformed update.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fedsynth.errors import ConfigError

FaultKind = Literal["drop", "late", "crash", "corrupt"]


class HospitalUnavailable(RuntimeError):
    """The hospital cannot answer this round (dropped out or crashed)."""


class HospitalLate(RuntimeError):
    """The hospital's answer arrives after the round timeout (in-process simulation)."""


def parse_rounds(text: str, key: str) -> set[int]:
    """``"2,4-6"`` -> {2, 4, 5, 6}; errors name ``key``."""
    rounds: set[int] = set()
    for part in (p.strip() for p in text.split(",") if p.strip()):
        try:
            first, last = (int(x) for x in part.split("-")) if "-" in part else (int(part), int(part))
        except ValueError:
            raise ConfigError(f"{key} entry {part!r}: expected ROUND or FIRST-LAST, e.g. 3 or 2-4") from None
        if first < 1 or last < first:
            raise ConfigError(f"{key} entry {part!r}: expected rounds >= 1 with FIRST <= LAST")
        rounds.update(range(first, last + 1))
    return rounds


def format_rounds(rounds: set[int]) -> str:
    return ",".join(str(r) for r in sorted(rounds))


@dataclass(frozen=True)
class SiteFaults:
    """Faults of one simulated hospital: ``drop_from`` (0 = never) is the first round it misses for
    good; ``late``/``crash``/``corrupt`` are round lists; a late hospital sleeps ``late_seconds``
    (0: it raises :class:`HospitalLate` at once, for the in-process engine)."""

    drop_from: int = 0
    late: str = ""
    crash: str = ""
    corrupt: str = ""
    late_seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.drop_from < 0:
            raise ConfigError(f"faults.drop_from = {self.drop_from}: expected 0 (never) or a round >= 1")
        for kind in ("late", "crash", "corrupt"):
            parse_rounds(getattr(self, kind), f"faults.{kind}")

    def fault(self, server_round: int) -> FaultKind | None:
        """The fault that hits this hospital in ``server_round``, if any."""
        if self.drop_from and server_round >= self.drop_from:
            return "drop"
        for kind in ("crash", "late", "corrupt"):
            if server_round in parse_rounds(getattr(self, kind), f"faults.{kind}"):
                return kind  # type: ignore[return-value]
        return None
