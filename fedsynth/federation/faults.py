"""Fault injection for simulated federations: who fails in which round, and how.

A :class:`FaultPlan` is parsed from the ``[faults]`` configuration and consulted on the hospital
side (the ClientApp or the in-process transport), so the server sees exactly what it would see
from a real failing site: an error reply, no reply before the timeout, or a malformed update.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from fedsynth.config.schema import FaultConfig
from fedsynth.errors import ConfigError

FaultKind = Literal["drop", "late", "crash", "corrupt"]


class HospitalUnavailable(RuntimeError):
    """The hospital cannot answer this round (dropped out or crashed)."""


class HospitalLate(RuntimeError):
    """The hospital's answer arrives after the round timeout (in-process simulation)."""


def _parse(kind: str, text: str, num_hospitals: int, open_ended: bool) -> dict[int, set[int] | int]:
    out: dict[int, set[int] | int] = {}
    for entry in (e.strip() for e in text.split(",") if e.strip()):
        try:
            hospital_text, rounds_text = entry.split("@")
            hospital = int(hospital_text)
            if "-" in rounds_text:
                first, last = (int(x) for x in rounds_text.split("-"))
            else:
                first = last = int(rounds_text)
        except ValueError:
            raise ConfigError(
                f"faults.{kind} entry {entry!r}: expected HOSPITAL@ROUND or HOSPITAL@FIRST-LAST, e.g. 1@3"
            ) from None
        if not 0 <= hospital < num_hospitals or first < 1 or last < first:
            raise ConfigError(
                f"faults.{kind} entry {entry!r}: expected a hospital in 0..{num_hospitals - 1} and rounds >= 1"
            )
        if open_ended:
            out[hospital] = first
        else:
            rounds = out.setdefault(hospital, set())
            assert isinstance(rounds, set)
            rounds.update(range(first, last + 1))
    return out


@dataclass(frozen=True)
class FaultPlan:
    """Faults by hospital: ``drop`` maps to the first round missed for good, the others to rounds."""

    drop: dict[int, int] = field(default_factory=dict)
    late: dict[int, set[int]] = field(default_factory=dict)
    crash: dict[int, set[int]] = field(default_factory=dict)
    corrupt: dict[int, set[int]] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: FaultConfig, num_hospitals: int) -> FaultPlan:
        return cls(
            drop=_parse("drop", config.drop, num_hospitals, open_ended=True),  # type: ignore[arg-type]
            late=_parse("late", config.late, num_hospitals, open_ended=False),  # type: ignore[arg-type]
            crash=_parse("crash", config.crash, num_hospitals, open_ended=False),  # type: ignore[arg-type]
            corrupt=_parse("corrupt", config.corrupt, num_hospitals, open_ended=False),  # type: ignore[arg-type]
        )

    def fault(self, hospital_id: int, server_round: int) -> FaultKind | None:
        """The fault that hits ``hospital_id`` in ``server_round``, if any."""
        if hospital_id in self.drop and server_round >= self.drop[hospital_id]:
            return "drop"
        if server_round in self.crash.get(hospital_id, set()):
            return "crash"
        if server_round in self.late.get(hospital_id, set()):
            return "late"
        if server_round in self.corrupt.get(hospital_id, set()):
            return "corrupt"
        return None

    @property
    def empty(self) -> bool:
        return not (self.drop or self.late or self.crash or self.corrupt)
