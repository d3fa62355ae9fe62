"""Theoretical bounds on the success of data reconstruction attacks against DP-SGD.

A reconstruction adversary who must pick the training record out of ``n`` equally likely candidates
succeeds with prior probability ``kappa = 1/n``. Following "Bounding data reconstruction attacks
with the hypothesis testing interpretation of differential privacy" (Kaissis et al.), the
probability of success of *any* such adversary against a mechanism with trade-off curve ``f`` is
at most ``1 - f(kappa)``: the power of the optimal (Neyman-Pearson) test between "record absent"
and "record present" at type-I error ``kappa``. This module computes that worst-case ReRo bound for
compositions of Poisson-subsampled Gaussian mechanisms (DP-SGD), plus two companions:

* :func:`worst_case_bound`: the power of the Neyman-Pearson test, computed numerically from the
  discretized privacy loss distribution composed by FFT. The discretization is pessimistic (it can
  only make the mechanism look *less* private), so the result is an upper bound up to floating
  point and FFT truncation, both far below the reported precision.
* :func:`clt_bound`: the central-limit (Gaussian DP) approximation ``Phi(PhiInv(kappa) + mu)``;
  cheap and close when there are many steps with small sample rates, but not a bound.
* :func:`relaxed_bound`: the adversary does not know the candidate record in advance and uses a
  generalised likelihood ratio test (a chi-square statistic over the steps), as analysed in
  "Generalised Likelihood Ratio Testing Adversaries through the Differential Privacy Lens".

One step with noise multiplier ``sigma``, sample rate ``q`` and sensitivity ``s`` (in units of the
clipping norm) is the pair ``P = N(0, 1)`` (record absent) and ``Q = (1-q) N(0, 1) + q N(s/sigma, 1)``
(record present). A noise multiplier of 0 means no noise: every bound is then 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import fft as sp_fft
from scipy import special, stats

from fedsynth.privacy.accounting import MechanismEvent, relation_of

#: One step's Gaussian tails beyond this many standard deviations (mass < 2e-33) are not
#: discretized; what lies beyond is moved in the pessimistic direction (see ``_discretize``).
_X_TAIL = 12.0
#: Grid points across the window of the composed privacy loss (before rounding to a fast FFT size).
_GRID_POINTS = 1 << 17
#: At most this many grid points across one step's range of privacy loss.
_MAX_STEP_POINTS = 1 << 20
#: Log of the composed probability left outside the loss window (it would wrap around in the FFT).
_LOG_TAIL = math.log(1e-18)
#: Largest composed probability tolerated near the window's edges (else the window is widened).
_EDGE_MASS = 1e-14


@dataclass(frozen=True)
class StepGroup:
    """``steps`` applications of one Poisson-subsampled Gaussian mechanism.

    ``noise_multiplier`` is sigma (noise std / clipping norm; 0 means no noise), ``sample_rate`` the
    Poisson sampling probability q, ``sensitivity`` the norm of one record's contribution to a
    step's sum, in clipping norms. The mean shift a record causes is ``sensitivity / sigma`` noise
    standard deviations.
    """

    noise_multiplier: float
    sample_rate: float
    steps: int
    sensitivity: float = 1.0

    def __post_init__(self) -> None:
        if not self.noise_multiplier >= 0:
            raise ValueError(f"step group: noise multiplier {self.noise_multiplier} (expected >= 0)")
        if not 0 <= self.sample_rate <= 1:
            raise ValueError(f"step group: sample rate {self.sample_rate} (expected in [0, 1])")
        if self.steps < 0:
            raise ValueError(f"step group: steps {self.steps} (expected >= 0)")
        if not self.sensitivity > 0:
            raise ValueError(f"step group: sensitivity {self.sensitivity} (expected > 0)")

    @property
    def shift(self) -> float:
        """Mean shift of the noisy step caused by the record, in noise standard deviations."""
        return math.inf if self.noise_multiplier == 0 else self.sensitivity / self.noise_multiplier


def groups_from_events(events: Sequence[MechanismEvent]) -> list[StepGroup]:
    """Step groups of a mechanism history; events with equal (sigma, q, sensitivity) are merged.

    Composition does not depend on order, so merging only saves work. Neighbouring relations follow
    the ledger (:mod:`fedsynth.privacy.accounting`): a history with any ``replace-one`` event is
    stated under ``replace-one``, and every event is then analysed as add/remove at doubled
    sensitivity. Events without steps are dropped.
    """
    factor = 2.0 if relation_of(events) == "replace-one" else 1.0
    steps: dict[tuple[float, float, float], int] = {}
    for e in events:
        if e.steps > 0:
            key = (float(e.noise_multiplier), float(e.sample_rate), float(e.sensitivity) * factor)
            steps[key] = steps.get(key, 0) + int(e.steps)
    return [StepGroup(sigma, q, t, s) for (sigma, q, s), t in steps.items()]


def _check_prior(prior: float) -> None:
    if not 0 < prior < 1:
        raise ValueError(f"prior {prior} (expected in (0, 1))")


def _informative(groups: Sequence[StepGroup]) -> list[StepGroup]:
    """The groups that can leak anything: at least one step, with the record ever sampled."""
    return [g for g in groups if g.steps > 0 and g.sample_rate > 0]


def _noiseless(groups: Sequence[StepGroup]) -> bool:
    return any(g.noise_multiplier == 0 for g in groups if g.steps > 0)


# --- CLT and relaxed bounds -------------------------------------------------------------------


def gdp_mu(groups: Sequence[StepGroup]) -> float:
    """mu of the Gaussian DP limit of the composition (central limit theorem for subsampling):
    ``sqrt(sum_i T_i q_i^2 (exp((s_i/sigma_i)^2) - 1))``; inf when a group adds no noise."""
    total = 0.0
    for g in _informative(groups):
        if g.noise_multiplier == 0:
            return math.inf
        with np.errstate(over="ignore"):
            total += g.steps * g.sample_rate**2 * float(np.expm1(g.shift**2))
    return math.sqrt(total)


def clt_bound(groups: Sequence[StepGroup], prior: float) -> float:
    """Central-limit approximation of the worst-case ReRo bound: ``Phi(PhiInv(prior) + mu)``.

    Accurate for many steps at small sample rates; it can under- or over-estimate otherwise, which
    is why :func:`worst_case_bound` is the number to report.
    """
    _check_prior(prior)
    mu = gdp_mu(groups)
    return 1.0 if math.isinf(mu) else float(special.ndtr(special.ndtri(prior) + mu))


def relaxed_bound(groups: Sequence[StepGroup], prior: float) -> float:
    """ReRo bound for an adversary who does not know the candidate record in advance.

    Its generalised likelihood ratio test sums the squared (whitened) noisy steps: a chi-square
    statistic with ``T`` degrees of freedom, non-central with ``nc = sum_i T_i q_i (s_i/sigma_i)^2``
    when the record took part. The bound is the test's power at false-positive rate ``prior``.
    """
    _check_prior(prior)
    active = [g for g in groups if g.steps > 0]
    if _noiseless(active):
        return 1.0
    df = sum(g.steps for g in active)
    if df == 0:
        return prior
    nc = sum(g.steps * g.sample_rate * g.shift**2 for g in active)
    threshold = stats.chi2.isf(prior, df)
    power = stats.chi2.sf(threshold, df) if nc == 0 else stats.ncx2.sf(threshold, df, nc)
    return float(min(max(power, prior), 1.0))


# --- numerical worst case ---------------------------------------------------------------------


@dataclass(frozen=True)
class _StepPLD:
    """One step's discretized privacy loss: losses ``(start + i) * h``; ``alt`` is the pmf under the
    alternative hypothesis (the distribution in the numerator of the likelihood ratio), ``null``
    under the null; ``alt_inf`` the alternative's mass at loss +inf (where the null has none)."""

    start: int
    alt: np.ndarray
    null: np.ndarray
    alt_inf: float


def _one_step_loss(x: np.ndarray, q: float, m: float) -> np.ndarray:
    """``log dQ/dP`` at observation x: ``log((1-q) + q exp(m x - m^2/2))``, overflow-safe."""
    with np.errstate(divide="ignore"):
        return np.logaddexp(np.log1p(-q), math.log(q) + m * x - m * m / 2)


def _loss_to_x(loss: np.ndarray, q: float, m: float) -> np.ndarray:
    """Inverse of :func:`_one_step_loss` (increasing in x); -inf for losses at or below log(1-q)."""
    if q == 1.0:
        return (loss + m * m / 2) / m
    base = math.log1p(-q)
    z = np.maximum(loss - base, 0.0)
    with np.errstate(divide="ignore"):
        excess = z + np.log(-np.expm1(-z)) + base - math.log(q)  # log(exp(loss) - (1-q)) - log(q)
    return np.where(loss > base, (excess + m * m / 2) / m, -np.inf)


def _gauss_mass(lo: np.ndarray, hi: np.ndarray, mean: float) -> np.ndarray:
    """Mass of N(mean, 1) on [lo, hi), taken from the lower or the upper tail to avoid cancellation."""
    a, b = lo - mean, hi - mean
    return np.where(a > 0, special.ndtr(-a) - special.ndtr(-b), special.ndtr(b) - special.ndtr(a))


def _split_bucket(lo: np.ndarray, h: float, alt: np.ndarray, null: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split each bucket's alternative mass between its end points ``lo`` and ``lo + h``.

    The split keeps the bucket's null mass exact (``E_alt[exp(-L)]``, the null mass, is matched), as
    in "Connect the Dots: Tighter Discrete Approximations of Privacy Loss Distributions". Every
    hockey-stick divergence ``E_alt[(1 - g exp(-L))_+]`` is convex in ``exp(-L)``, so by Jensen's
    inequality the discrete pair is at least as distinguishable as the continuous one: the
    resulting power is an upper bound. Returns (mass at lo, mass at lo + h).
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # E_alt[exp(lo - L) | bucket], in [exp(-h), 1]; in logs, as far tails under- or overflow.
        ratio = np.exp(np.log(null) - np.log(alt) + lo)
        w = np.clip((ratio - math.exp(-h)) / -math.expm1(-h), 0.0, 1.0)
    w = np.where(alt > 0, w, 0.0)  # where the null's mass underflowed, all goes up (pessimistic)
    return w * alt, (1.0 - w) * alt


def _discretize(group: StepGroup, h: float, swapped: bool) -> _StepPLD:
    """One step's privacy loss on the grid ``k * h``, pessimistically (see :func:`_split_bucket`).

    ``swapped=False`` tests P (absent) against Q (present), loss ``log dQ/dP``; ``swapped=True``
    tests Q against P, loss ``log dP/dQ``. Tail mass beyond the discretized range is moved to loss
    +inf (high side) or rounded up to the lowest grid point (low side); both only raise the power.
    """
    q, m = group.sample_rate, group.shift
    x_lo, x_hi = -_X_TAIL, m + _X_TAIL
    l_lo, l_hi = _one_step_loss(np.array([x_lo, x_hi]), q, m)
    k_lo, k_hi = math.floor(l_lo / h), math.ceil(l_hi / h)
    edges = np.arange(k_lo, k_hi + 1) * h  # losses log dQ/dP at the bucket edges
    x = _loss_to_x(edges, q, m)
    p = _gauss_mass(x[:-1], x[1:], 0.0)
    q_mass = (1 - q) * p + q * _gauss_mass(x[:-1], x[1:], m)
    p_below, p_above = float(special.ndtr(x[0])), float(special.ndtr(-x[-1]))
    q_below = (1 - q) * p_below + q * float(special.ndtr(x[0] - m))
    q_above = (1 - q) * p_above + q * float(special.ndtr(m - x[-1]))
    size = k_hi - k_lo + 1
    alt = np.zeros(size)
    if not swapped:
        low, high = _split_bucket(edges[:-1], h, q_mass, p)
        alt[:-1] += low
        alt[1:] += high
        alt[0] += q_below
        start, alt_inf = k_lo, q_above
    else:
        # Loss log dP/dQ = -(log dQ/dP): the bucket [e_k, e_k+1) maps to (-e_k+1, -e_k].
        low, high = _split_bucket(-edges[1:], h, p, q_mass)
        alt[:-1] += high
        alt[1:] += low
        alt[-1] += p_above
        alt = alt[::-1]
        start, alt_inf = -k_hi, p_below
    losses = (start + np.arange(size)) * h
    with np.errstate(divide="ignore"):
        null = np.exp(np.log(alt) - losses)  # dP = exp(-L) dQ, without overflowing where alt is 0
    return _StepPLD(start, alt, null, alt_inf)


def _log_mgf(pmf: np.ndarray, start: int, h: float, lambdas: np.ndarray) -> np.ndarray:
    """``log E[exp(lambda L)]`` for each lambda, L distributed as the normalized (sub-)pmf (whose tails
    bound those of the sub-pmf itself)."""
    losses = (start + np.arange(pmf.size)) * h
    with np.errstate(divide="ignore"):
        log_pmf = np.log(pmf / pmf.sum())
    return special.logsumexp(lambdas[:, None] * losses[None, :] + log_pmf[None, :], axis=1)


def _window(groups: Sequence[StepGroup], plds: Sequence[_StepPLD], h: float) -> tuple[float, float]:
    """Loss interval outside which the composed null and alternative pmfs have mass below
    ``exp(_LOG_TAIL)``: Chernoff bounds on the null's lower tail and the alternative's upper tail
    (the null's upper and the alternative's lower tails are lighter still: d alt = exp(L) d null).
    The Chernoff parameters span five decades around the inverse standard deviation of the sum."""
    variance = 0.0
    for g, d in zip(groups, plds):
        losses = (d.start + np.arange(d.alt.size)) * h
        spreads = []
        for pmf in (d.alt, d.null):
            mean = pmf @ losses / pmf.sum()
            spreads.append(float(pmf @ (losses - mean) ** 2 / pmf.sum()))
        variance += g.steps * max(spreads)
    lambdas = np.logspace(-3.0, 2.0, 41) / max(math.sqrt(variance), h)
    upper = sum(g.steps * _log_mgf(d.alt, d.start, h, lambdas) for g, d in zip(groups, plds))
    lower = sum(g.steps * _log_mgf(d.null, d.start, h, -lambdas) for g, d in zip(groups, plds))
    hi = float(np.min((upper - _LOG_TAIL) / lambdas))
    lo = float(np.max((_LOG_TAIL - lower) / lambdas))
    margin = 0.02 * (hi - lo) + h
    return lo - margin, hi + margin


def _compose(
    groups: Sequence[StepGroup], plds: Sequence[_StepPLD], start: int, size: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """Composed (alt, null) pmfs on the losses ``(start + i) h``, ``i < size``, and the alternative's
    mass at +inf.

    Each step's pmf is wrapped onto a circle of ``size`` grid points (index mod ``size``), its FFT
    raised to the group's step count and multiplied in: the inverse FFT is the composed pmf modulo
    ``size``, unrolled from ``start``. Mass outside the window would wrap around, so the caller
    sizes the window to hold all but a negligible part of both pmfs and checks its edges.
    """
    composed = []
    for pmfs in ([d.alt for d in plds], [d.null for d in plds]):
        spectrum = np.ones(size // 2 + 1, dtype=complex)
        for g, d, pmf in zip(groups, plds, pmfs):
            wrapped = np.bincount((d.start + np.arange(pmf.size)) % size, weights=pmf, minlength=size)
            spectrum *= sp_fft.rfft(wrapped) ** g.steps
        composed.append(np.roll(sp_fft.irfft(spectrum, n=size), -(start % size)))
    alt_inf = -math.expm1(sum(g.steps * math.log1p(-d.alt_inf) for g, d in zip(groups, plds)))
    return composed[0], composed[1], alt_inf


def _edges_clear(pmfs: Sequence[np.ndarray], check_low: bool, check_high: bool) -> bool:
    """True when no pmf has more than a negligible probability near a window edge that is checked
    (an edge at the end of the support cannot have mass wrapped around it)."""
    band = max(pmfs[0].size // 256, 1)
    for pmf in pmfs:
        if check_low and np.max(np.abs(pmf[:band])) > _EDGE_MASS:
            return False
        if check_high and np.max(np.abs(pmf[-band:])) > _EDGE_MASS:
            return False
    return True


def _directional_power(groups: Sequence[StepGroup], prior: float, swapped: bool, grid_points: int) -> float:
    """Power at type-I error ``prior`` of the optimal test in one direction (see :func:`_discretize`).

    A coarse first discretization sizes the window of the composed loss (Chernoff bounds); the grid
    step is the window's width over ``grid_points`` (never so fine that one step's range exceeds
    ``_MAX_STEP_POINTS``). Should the window's edges still hold mass (wrapped around), it is widened;
    if that never clears them, the trivial bound 1 is returned.
    """
    ranges = [np.ptp(_one_step_loss(np.array([-_X_TAIL, g.shift + _X_TAIL]), g.sample_rate, g.shift)) for g in groups]
    coarse = max(ranges) / 4096
    lo, hi = _window(groups, [_discretize(g, coarse, swapped) for g in groups], coarse)
    h = max((hi - lo) / grid_points, max(ranges) / _MAX_STEP_POINTS)
    plds = [_discretize(g, h, swapped) for g in groups]
    support_lo = sum(g.steps * d.start for g, d in zip(groups, plds))
    support_hi = sum(g.steps * (d.start + d.alt.size - 1) for g, d in zip(groups, plds))
    for attempt in range(4):
        start, stop = max(math.floor(lo / h), support_lo), min(math.ceil(hi / h), support_hi)
        size = sp_fft.next_fast_len(stop - start + 1, real=True)
        alt, null, alt_inf = _compose(groups, plds, start, size)
        if _edges_clear((alt, null), start > support_lo, start + size - 1 < support_hi):
            return _power_at(prior, null, alt, alt_inf)
        if attempt == 0:  # the coarse pmfs misjudged the tails: size the window on the grid itself
            fine_lo, fine_hi = _window(groups, plds, h)
            lo, hi = min(lo, fine_lo), max(hi, fine_hi)
        else:
            lo, hi = lo - (hi - lo) / 2, hi + (hi - lo) / 2
    # Only reached far outside any private regime (thousands of noise-free-like steps, where the
    # power is 1 to machine precision): 1 is then the one safe answer.
    return 1.0


def worst_case_bound(groups: Sequence[StepGroup], prior: float, *, grid_points: int = _GRID_POINTS) -> float:
    """Worst-case ReRo bound: ``1 - f(prior)`` for the trade-off curve f of the composition.

    Computed from the privacy loss distribution of each step, discretized pessimistically and
    composed exactly on the grid by FFT, in both directions (absent vs present and present vs
    absent); the larger power is returned. ``grid_points`` (points across the composed loss
    window) sets the accuracy; the default is accurate to well under 1% relative.
    """
    _check_prior(prior)
    active = _informative(groups)
    if _noiseless(active):
        return 1.0
    if not active:
        return prior
    power = max(_directional_power(active, prior, swapped, grid_points) for swapped in (False, True))
    return float(min(max(power, prior), 1.0))


def _power_at(alpha: float, null: np.ndarray, alt: np.ndarray, alt_inf: float) -> float:
    """Power of the (randomized) Neyman-Pearson test at type-I error ``alpha``: reject the largest
    losses first; between two grid losses the test randomizes, so power is linear in alpha."""
    null_tail = np.concatenate(([0.0], np.cumsum(np.clip(null[::-1], 0.0, None))))
    alt_tail = alt_inf + np.concatenate(([0.0], np.cumsum(np.clip(alt[::-1], 0.0, None))))
    j = int(np.searchsorted(null_tail, alpha, side="left"))
    if j >= null_tail.size:
        return 1.0
    if j == 0:
        return float(alt_tail[0])
    a0, a1, b0, b1 = null_tail[j - 1], null_tail[j], alt_tail[j - 1], alt_tail[j]
    frac = 0.0 if a1 == a0 else (alpha - a0) / (a1 - a0)
    return float(min(b0 + frac * (b1 - b0), 1.0))


# --- all bounds of a history ------------------------------------------------------------------


@dataclass(frozen=True)
class ReconstructionBounds:
    """ReRo bounds of one mechanism history at one prior (success probability of a baseline guess)."""

    prior: float
    worst_case: float
    worst_case_clt: float
    relaxed: float
    steps: int

    def to_dict(self) -> dict:
        return {
            "prior": self.prior,
            "worst_case": self.worst_case,
            "worst_case_clt": self.worst_case_clt,
            "relaxed": self.relaxed,
            "steps": self.steps,
        }


def reconstruction_bounds(events: Sequence[MechanismEvent], prior: float) -> ReconstructionBounds:
    """All three ReRo bounds of a ledger's mechanism history at ``prior`` (e.g. 1 / records)."""
    groups = groups_from_events(events)
    worst = worst_case_bound(groups, prior)
    # The relaxed adversary is a weaker test than the Neyman-Pearson one, so its success never
    # exceeds the worst case; the chi-square formula averages the subsampling into the
    # non-centrality, which over a handful of steps can overshoot, so it is capped there.
    return ReconstructionBounds(
        prior=prior,
        worst_case=worst,
        worst_case_clt=clt_bound(groups, prior),
        relaxed=min(relaxed_bound(groups, prior), worst),
        steps=sum(g.steps for g in groups),
    )
