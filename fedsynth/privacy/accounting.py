"""Epsilon of a DP-SGD mechanism history, and noise calibration for a target epsilon.

Pure functions over lists of :class:`MechanismEvent`. They use Opacus' accountants (RDP or PRV)
over the *whole* history, so repeated phases and rounds compose correctly, and they never return a
smaller epsilon than the accountant's upper bound.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from opacus.accountants import PRVAccountant, RDPAccountant

AccountantName = Literal["rdp", "prv"]


@dataclass(frozen=True)
class MechanismEvent:
    """``steps`` applications of the Poisson-subsampled Gaussian mechanism.

    ``noise_multiplier`` is sigma (noise std / clipping norm); 0 means no noise (non-private).
    """

    phase: str
    round: int
    noise_multiplier: float
    sample_rate: float
    steps: int

    def to_dict(self) -> dict:
        return {
            "phase": self.phase,
            "round": self.round,
            "noise_multiplier": self.noise_multiplier,
            "sample_rate": self.sample_rate,
            "steps": self.steps,
        }

    @classmethod
    def from_dict(cls, d: dict) -> MechanismEvent:
        return cls(
            phase=str(d["phase"]),
            round=int(d["round"]),
            noise_multiplier=float(d["noise_multiplier"]),
            sample_rate=float(d["sample_rate"]),
            steps=int(d["steps"]),
        )


def is_private(events: Sequence[MechanismEvent]) -> bool:
    """True when every event that ran at least one step added noise."""
    return all(e.noise_multiplier > 0 for e in events if e.steps > 0)


def compute_epsilon(events: Sequence[MechanismEvent], delta: float, accountant: AccountantName = "rdp") -> float | None:
    """Epsilon at ``delta`` of the composition of ``events``.

    Returns None when some event ran without noise (no finite guarantee), 0.0 for no steps.
    """
    active = [e for e in events if e.steps > 0]
    if not active:
        return 0.0
    if not is_private(active):
        return None
    # Opacus' accountants keep the history as (noise_multiplier, sample_rate, steps) tuples and
    # compose it at query time; adjacent identical entries are merged for speed only.
    history: list[tuple[float, float, int]] = []
    for e in active:
        if history and history[-1][:2] == (e.noise_multiplier, e.sample_rate):
            sigma, q, t = history[-1]
            history[-1] = (sigma, q, t + e.steps)
        else:
            history.append((e.noise_multiplier, e.sample_rate, e.steps))
    return _epsilon_of_history(tuple(history), delta, accountant)


@functools.lru_cache(maxsize=4096)
def _epsilon_of_history(history: tuple[tuple[float, float, int], ...], delta: float, accountant: str) -> float:
    """Accountant query, memoized: the same history is asked for often (every round, every
    hospital with the same sample rate) and Opacus' RDP terms for fractional orders are slow."""
    acc = RDPAccountant() if accountant == "rdp" else PRVAccountant()
    acc.history = list(history)
    eps = float(acc.get_epsilon(delta=delta))
    return eps if math.isfinite(eps) else math.inf


def calibrate_noise_multiplier(
    planned: Sequence[MechanismEvent],
    target_epsilon: float,
    delta: float,
    accountant: AccountantName = "rdp",
    *,
    tolerance: float = 0.005,
    max_sigma: float = 1e4,
) -> float:
    """Smallest noise multiplier (within ``tolerance`` relative) such that the planned history,
    with every event's sigma replaced by it, spends at most ``target_epsilon``.

    The search is a bisection on sigma over the monotone map sigma -> epsilon(history).
    """
    if target_epsilon <= 0:
        raise ValueError(f"target_epsilon must be positive, got {target_epsilon}")
    if not any(e.steps > 0 for e in planned):
        raise ValueError("the planned history has no steps to calibrate")

    def eps_at(sigma: float) -> float:
        value = compute_epsilon([replace(e, noise_multiplier=sigma) for e in planned], delta, accountant)
        return math.inf if value is None else value

    lo, hi = 0.0, 1.0
    while eps_at(hi) > target_epsilon:
        lo, hi = hi, hi * 2
        if hi > max_sigma:
            raise ValueError(f"no noise multiplier up to {max_sigma} reaches epsilon {target_epsilon} for this plan")
    while hi - lo > tolerance * hi:
        mid = (lo + hi) / 2
        if eps_at(mid) > target_epsilon:
            lo = mid
        else:
            hi = mid
    return hi
