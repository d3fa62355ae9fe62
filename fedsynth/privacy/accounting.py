"""Epsilon of a DP-SGD mechanism history, and noise calibration for a target epsilon.

Pure functions over lists of :class:`MechanismEvent`. They use Opacus' accountants (RDP or PRV)
over the *whole* history, so repeated phases and rounds compose correctly, and they never return a
smaller epsilon than the accountant's upper bound.

Neighbouring relations. ``add-remove`` (one patient's record present or absent; the number of
records is private) is what Opacus' accountants analyse: an event with per-record sensitivity
``s`` (in units of the clipping norm C) is accounted at noise multiplier ``sigma / s``.
``replace-one`` (one record replaced by another; the number of records is a declared public fact)
moves the noisy sum by up to 2sC. fedsynth accounts it as add/remove at doubled sensitivity,
``sigma / (2 s)``: a sound upper bound (replacing a record is removing one and adding another, and
the shift of the sum is at most the norm of both contributions together). A ledger whose events
mix both relations is stated under ``replace-one`` and every event is accounted that way.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from opacus.accountants import PRVAccountant, RDPAccountant
from opacus.accountants.analysis import rdp as rdp_analysis

AccountantName = Literal["rdp", "prv"]
Relation = Literal["add-remove", "replace-one"]
RELATIONS: tuple[str, ...] = ("add-remove", "replace-one")


@dataclass(frozen=True)
class MechanismEvent:
    """``steps`` applications of the Poisson-subsampled Gaussian mechanism.

    ``noise_multiplier`` is sigma (noise std / clipping norm C); 0 means no noise (non-private).
    ``sensitivity``: the largest norm of one record's total contribution to a step's summed
    clipped gradient, in units of C (1 for fedsynth's networks: every record is one clipped row).
    ``relation``: the neighbouring relation the mechanism was run under. ``run`` names the run
    (a site's ledger spans all runs on its data); ``max_grad_norm`` is C.
    """

    phase: str
    round: int
    noise_multiplier: float
    sample_rate: float
    steps: int
    sensitivity: float = 1.0
    relation: Relation = "add-remove"
    run: str = ""
    max_grad_norm: float = 1.0

    def __post_init__(self) -> None:
        if self.relation not in RELATIONS:
            raise ValueError(f"mechanism event: relation {self.relation!r} (expected one of {list(RELATIONS)})")
        if not self.sensitivity > 0:
            raise ValueError(f"mechanism event: sensitivity {self.sensitivity} (expected > 0)")

    def to_dict(self) -> dict:
        return {
            "phase": self.phase,
            "round": self.round,
            "noise_multiplier": self.noise_multiplier,
            "sample_rate": self.sample_rate,
            "steps": self.steps,
            "sensitivity": self.sensitivity,
            "relation": self.relation,
            "run": self.run,
            "max_grad_norm": self.max_grad_norm,
        }

    @classmethod
    def from_dict(cls, d: dict) -> MechanismEvent:
        return cls(
            phase=str(d["phase"]),
            round=int(d["round"]),
            noise_multiplier=float(d["noise_multiplier"]),
            sample_rate=float(d["sample_rate"]),
            steps=int(d["steps"]),
            sensitivity=float(d.get("sensitivity", 1.0)),
            relation=d.get("relation", "add-remove"),
            run=str(d.get("run", "")),
            max_grad_norm=float(d.get("max_grad_norm", 1.0)),
        )


def relation_of(events: Sequence[MechanismEvent]) -> Relation:
    """The relation a history is stated under: ``replace-one`` as soon as one event used it."""
    return "replace-one" if any(e.relation == "replace-one" for e in events) else "add-remove"


def effective_noise_multiplier(event: MechanismEvent, relation: Relation) -> float:
    """sigma of the add/remove unit-sensitivity mechanism that dominates ``event`` under ``relation``."""
    scale = event.sensitivity * (2.0 if relation == "replace-one" else 1.0)
    return event.noise_multiplier / scale


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
    relation = relation_of(active)
    history: list[tuple[float, float, int]] = []
    for e in active:
        sigma_e = effective_noise_multiplier(e, relation)
        if history and history[-1][:2] == (sigma_e, e.sample_rate):
            sigma, q, t = history[-1]
            history[-1] = (sigma, q, t + e.steps)
        else:
            history.append((sigma_e, e.sample_rate, e.steps))
    return _epsilon_of_history(tuple(history), delta, accountant)


@functools.lru_cache(maxsize=4096)
def _epsilon_of_history(history: tuple[tuple[float, float, int], ...], delta: float, accountant: str) -> float:
    """Accountant query, memoized: the same history is asked for often (every round, every
    hospital with the same sample rate) and Opacus' RDP terms for fractional orders are slow."""
    if accountant == "rdp":
        eps = _rdp_epsilon(history, delta)
    else:
        acc = PRVAccountant()
        acc.history = list(history)
        eps = float(acc.get_epsilon(delta=delta))
    return eps if math.isfinite(eps) else math.inf


def _rdp_epsilon(history: tuple[tuple[float, float, int], ...], delta: float) -> float:
    """Opacus' ``RDPAccountant.get_epsilon`` of ``history``, term for term: the same orders, the
    RDP of each entry as its one-step RDP times its steps (as Opacus' ``compute_rdp`` forms it),
    summed in history order, then Opacus' conversion to epsilon. Only the one-step RDP vectors are
    memoized (:func:`_rdp_of_one_step`): a history that grows by one round, or a noise search
    over the same sigmas at another hospital, reuses them instead of recomputing Opacus' slow
    fractional-order terms. ``tests/test_privacy_accounting.py`` checks it equals Opacus' own."""
    rdp = sum([np.asarray(_rdp_of_one_step(sigma, q)) * steps for sigma, q, steps in history])
    eps, _ = rdp_analysis.get_privacy_spent(orders=RDPAccountant.DEFAULT_ALPHAS, rdp=rdp, delta=delta)
    return float(eps)


@functools.lru_cache(maxsize=65536)
def _rdp_of_one_step(sigma: float, q: float) -> tuple[float, ...]:
    """The subsampled Gaussian mechanism's RDP at Opacus' default orders for one step."""
    return tuple(
        float(v)
        for v in rdp_analysis.compute_rdp(q=q, noise_multiplier=sigma, steps=1, orders=RDPAccountant.DEFAULT_ALPHAS)
    )


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
