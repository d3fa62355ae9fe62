"""Detectors of crafted weights: imprint blocks and trap weights planted in a Linear layer.

A server that may only send weights (honest code) can still plant an *imprint block* in the
first Linear of a network ("Robbing the Fed: Directly Obtaining Private Data in Federated Learning
with Modified Models"): K rows that all measure one direction ``v`` of the input (often scaled up
so a smooth activation gates like a step), biases on a ladder of thresholds along ``v``, and
identical columns for those rows in the next layer. The gradient of row i is then the sum of the
records whose measurement passes threshold i, and differences of adjacent rows isolate single
records. *Trap weights* ("When the Curious Abandon Honesty: Federated Learning Is Not Private")
make each row of paired positive and (scaled) negative entries so that few records activate it.

Honestly initialized and honestly trained layers look nothing like that: PyTorch initializes a
Linear uniformly in +-1/sqrt(fan_in), so rows point in unrelated directions, and DP training moves
them only a moderate multiple of that scale. Each detector here is a small pure function over one
layer's arrays (weight, bias, the next layer's weight) returning None or a finding; the site runs
:data:`DETECTORS` on every Linear of the networks it trains on its records. Thresholds are set so
that fresh initializations and every round of real runs pass (see
``experiments/redteam/guardrail_rates.py`` for measured detection and false-positive rates).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import stats

#: Rows (or columns) closer than this cosine count as the same measurement.
IDENTICAL_COSINE = 0.98
#: Smallest group of identical rows/columns that is a finding (an imprint needs several bins).
IDENTICAL_MIN = 4
#: Rows within this cosine of a seed row form a candidate low-rank block ...
BLOCK_COSINE = 0.6
#: ... of at least this many rows ...
BLOCK_MIN = 8
#: ... which is a finding when its top singular value carries this share of its energy.
BLOCK_ENERGY = 0.8
#: Rows of a ladder share a direction within this cosine ...
LADDER_COSINE = 0.9
#: ... and there are at least this many of them.
LADDER_MIN = 5
#: Relative spread of a row's entries below which the row is constant (a brightness measurement).
CONSTANT_SPREAD = 1e-3
#: A trap row pairs positive with negative magnitudes at one ratio, within this coefficient of
#: variation of the ratios ...
TRAP_RATIO_SPREAD = 0.02
#: ... over at least this many pairs; a finding needs this many trap rows.
TRAP_MIN_PAIRS = 4
TRAP_MIN_ROWS = 3
#: Chance (binomial tail under random signs) below which many sign-balanced rows are a finding.
TRAP_BALANCE_P = 1e-9
#: Multiples of the honest initialization scale beyond which a row norm or a bias is extreme.
EXTREME_FACTOR = 50.0
#: A bias is never extreme below this absolute value (honest training moves biases by O(1)).
EXTREME_BIAS_FLOOR = 4.0


@dataclass(frozen=True)
class LinearWeights:
    """One Linear layer as the server sent it: ``weight`` (out, in), its ``bias`` (out,) and the
    ``next_weight`` (out2, out) of the Linear that reads its output, where the server sent them."""

    name: str
    weight: np.ndarray
    bias: np.ndarray | None = None
    next_weight: np.ndarray | None = None

    @property
    def fan_in(self) -> int:
        return int(self.weight.shape[1])

    @cached_property
    def row_cosines(self) -> tuple[np.ndarray, np.ndarray]:
        """(indices of the non-zero rows, their pairwise cosines), computed once for every
        detector that groups rows."""
        return _cosines(self.weight)

    @cached_property
    def column_cosines(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The same for the next layer's columns (one per unit of this layer), if sent."""
        columns = _columns(self)
        return None if columns is None else _cosines(columns)


Detector = Callable[[LinearWeights], str | None]


def _unit(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the non-zero rows and those rows scaled to unit norm."""
    rows = np.asarray(rows, dtype=np.float64)
    norms = np.linalg.norm(rows, axis=1)
    keep = np.flatnonzero(norms > 1e-12 * max(1.0, float(norms.max(initial=0.0))))
    return keep, rows[keep] / norms[keep, None]


def _cosines(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the non-zero rows and their pairwise cosine similarities."""
    keep, unit = _unit(rows)
    return keep, unit @ unit.T


def aligned_group(rows: np.ndarray, cosine: float) -> np.ndarray:
    """The largest group of rows within ``cosine`` of one seed row (the seed included), as
    indices into ``rows``; zero rows never join a group."""
    return _group(_cosines(rows), cosine)


def _group(cosines: tuple[np.ndarray, np.ndarray], cosine: float) -> np.ndarray:
    """:func:`aligned_group` from precomputed (indices, cosines)."""
    keep, similarity = cosines
    if len(keep) < 2:
        return keep[:1]
    similar = similarity >= cosine
    seed = int(np.argmax(similar.sum(axis=1)))
    return keep[similar[seed]]


def top_energy(rows: np.ndarray) -> float:
    """Share of the energy of the unit-normalized ``rows`` carried by the top singular value
    (1 for rows that all point one way, about 1/min(n, d) for unrelated rows)."""
    _, unit = _unit(rows)
    if len(unit) == 0:
        return 0.0
    singular = np.linalg.svd(unit, compute_uv=False)
    return float(singular[0] ** 2 / np.sum(singular**2))


def identical_rows(layer: LinearWeights) -> str | None:
    """Several rows measuring the same direction: the rows of an imprint block."""
    group = _group(layer.row_cosines, IDENTICAL_COSINE)
    if len(group) >= IDENTICAL_MIN:
        return (
            f"{len(group)} rows of {layer.name} point the same way (cosine >= {IDENTICAL_COSINE}): "
            "one measurement repeated, the shape of an imprint block"
        )
    return None


def low_rank_block(layer: LinearWeights) -> str | None:
    """A block of rows (or of the next layer's columns) that is rank one up to small noise: an
    imprint block whose rows were perturbed to slip past :func:`identical_rows`."""
    blocks = (("rows", layer.weight, layer.row_cosines), ("next-layer columns", _columns(layer), layer.column_cosines))
    for what, matrix, cosines in blocks:
        if matrix is None or cosines is None:
            continue
        group = _group(cosines, BLOCK_COSINE)
        if len(group) >= BLOCK_MIN:
            energy = top_energy(matrix[group])
            if energy >= BLOCK_ENERGY:
                return (
                    f"{len(group)} {what} of {layer.name} form a rank-one block "
                    f"({energy:.0%} of their energy in one direction): a perturbed imprint block"
                )
    return None


def bias_ladder(layer: LinearWeights) -> str | None:
    """Rows sharing a direction whose thresholds (bias / row norm) climb strictly along the rows:
    the bins of an imprint, one threshold per quantile of the measurement."""
    if layer.bias is None:
        return None
    group = _group(layer.row_cosines, LADDER_COSINE)
    if len(group) < LADDER_MIN:
        return None
    norms = np.linalg.norm(np.asarray(layer.weight, dtype=np.float64)[group], axis=1)
    thresholds = np.asarray(layer.bias, dtype=np.float64)[group] / norms
    steps = np.diff(thresholds)  # group indices ascend: the row order the server chose
    spread = float(np.ptp(thresholds))
    if spread > 0 and (np.all(steps > 1e-6 * spread) or np.all(steps < -1e-6 * spread)):
        return (
            f"{len(group)} aligned rows of {layer.name} have strictly ordered thresholds "
            f"(bias / row norm over a range of {spread:.3g}): a bias ladder of imprint bins"
        )
    return None


def identical_columns(layer: LinearWeights) -> str | None:
    """The next layer reads several units through identical columns: what turns imprint rows
    into bins whose gradients differ only by the records they let through."""
    if layer.column_cosines is None:
        return None
    group = _group(layer.column_cosines, IDENTICAL_COSINE)
    if len(group) >= IDENTICAL_MIN:
        return (
            f"the layer after {layer.name} reads {len(group)} of its units through identical columns "
            f"(cosine >= {IDENTICAL_COSINE})"
        )
    return None


def constant_rows(layer: LinearWeights) -> str | None:
    """Rows whose entries are all equal and non-zero (a brightness measurement), or a whole layer
    of one non-zero value: nothing an honest initialization or training produces."""
    if layer.fan_in < 2:
        return None
    w = np.asarray(layer.weight, dtype=np.float64)
    scale = np.abs(w).mean(axis=1)
    flat = (w.std(axis=1) <= CONSTANT_SPREAD * scale) & (scale > 0)
    if flat.any():
        return f"{int(flat.sum())} rows of {layer.name} are constant (every entry equal)"
    return None


def paired_rows(layer: LinearWeights) -> str | None:
    """Trap weights: rows whose positive entries mirror their negative ones at one ratio, more rows
    with exactly as many positive as negative entries than random signs give (a perturbed trap
    keeps its balance), or rows that are exact negatives of one another."""
    w = np.asarray(layer.weight, dtype=np.float64)
    positive, negative = (w > 0).sum(axis=1), (w < 0).sum(axis=1)
    balanced = positive == negative
    ordered = np.sort(w, axis=1)
    traps = 0
    for k in np.unique(positive[balanced & (positive >= TRAP_MIN_PAIRS)]):
        rows = ordered[balanced & (positive == k)]
        ratios = rows[:, -k:] / -rows[:, :k][:, ::-1]  # i-th largest positive over i-th largest negative
        traps += int((ratios.std(axis=1) <= TRAP_RATIO_SPREAD * ratios.mean(axis=1)).sum())
    if traps >= TRAP_MIN_ROWS:
        return f"{traps} rows of {layer.name} pair each positive entry with a negative one at one ratio: trap weights"
    count = int((balanced & (positive > 0)).sum())
    d = layer.fan_in
    chance = float(stats.binom.pmf(d // 2, d, 0.5)) if d % 2 == 0 else 0.0  # honest entries are never 0
    if count >= TRAP_MIN_ROWS and stats.binom.sf(count - 1, len(w), chance) < TRAP_BALANCE_P:
        return (
            f"{count} of {len(w)} rows of {layer.name} have exactly as many positive as negative entries "
            f"(random signs give {chance * len(w):.1f}): paired trap rows"
        )
    opposite = int(np.triu(layer.row_cosines[1] <= -IDENTICAL_COSINE, 1).sum())
    if opposite >= IDENTICAL_MIN:
        return f"{opposite} pairs of rows of {layer.name} are negatives of one another"
    return None


def extreme_scale(layer: LinearWeights) -> str | None:
    """Row norms or biases far beyond the honest scale: PyTorch draws a Linear's entries and bias
    uniformly in +-1/sqrt(fan_in) (row norm about 1/sqrt(3)); planted rows are scaled up so a
    smooth activation gates like a step, with biases to match."""
    bound = 1.0 / math.sqrt(layer.fan_in)
    row_limit = EXTREME_FACTOR / math.sqrt(3.0)
    norms = np.linalg.norm(np.asarray(layer.weight, dtype=np.float64), axis=1)
    if norms.max(initial=0.0) > row_limit:
        return (
            f"{int((norms > row_limit).sum())} rows of {layer.name} have norm up to {norms.max():.3g}, "
            f"over {EXTREME_FACTOR:g} times the initialization scale"
        )
    if layer.bias is not None:
        bias_limit = max(EXTREME_FACTOR * bound, EXTREME_BIAS_FLOOR)
        largest = float(np.abs(layer.bias).max(initial=0.0))
        if largest > bias_limit:
            return (
                f"biases of {layer.name} reach {largest:.3g}, beyond {bias_limit:.3g} (the honest scale is {bound:.3g})"
            )
    return None


def _columns(layer: LinearWeights) -> np.ndarray | None:
    """The next layer's weight read per unit of this layer (one row per unit), if sent."""
    if layer.next_weight is None or layer.next_weight.shape[1] != layer.weight.shape[0]:
        return None
    return np.asarray(layer.next_weight).T


#: Run on every Linear the site trains on its records; the first finding refuses the weights.
DETECTORS: list[Detector] = [
    extreme_scale,
    constant_rows,
    identical_rows,
    identical_columns,
    paired_rows,
    bias_ladder,
    low_rank_block,
]


def findings(layer: LinearWeights, detectors: list[Detector] | None = None) -> dict[str, str]:
    """Every detector's finding on ``layer`` (detector name -> finding); empty when it looks honest."""
    out: dict[str, str] = {}
    for detector in DETECTORS if detectors is None else detectors:
        found = detector(layer)
        if found is not None:
            out[detector.__name__] = found
    return out


def first_finding(layer: LinearWeights, detectors: list[Detector] | None = None) -> str | None:
    """The first detector finding on ``layer``, or None."""
    for detector in DETECTORS if detectors is None else detectors:
        found = detector(layer)
        if found is not None:
            return found
    return None
