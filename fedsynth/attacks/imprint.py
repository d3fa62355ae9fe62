"""The linear-imprint attack: a server-planted layer whose gradient contains the client's records verbatim.

Following "Robbing the Fed: Directly Obtaining Private Data in Federated Learning with Modified Models"
(Fowl et al.) and "When the Curious Abandon Honesty: Federated Learning Is Not Private" (Boenisch et al.).

**The layer.** ``K`` rows of a linear layer all measure the same linear function ``h(x) = <v, x>`` of the
input and differ only in their biases ``b_i = -c_i``, where ``c_0 < c_1 < ... < c_{K-1}`` are thresholds
at the quantiles ``i / K`` of ``h``'s distribution. The server calibrates them on auxiliary data it may
hold (public or synthetic records, never the victim's), see :func:`calibrate`. The first threshold is
finite but far below every plausible value, so row 0 fires for every record.

**The gate.** After the layer comes a nonlinearity that acts as a step at 0:

* ReLU: derivative ``1[s > 0]`` exactly.
* SiLU: ``silu'(s) -> 1[s > 0]`` as ``|s|`` grows, so every row and bias is multiplied by a large
  ``scale`` (:attr:`ImprintDesign.scale`); records within about ``10 / scale`` of a threshold are blurred.
* LeakyReLU with slope ``a``: derivative ``a + (1 - a) 1[s > 0]``; the constant ``a`` cancels in the
  differences below (pass ``negative_slope`` to :func:`invert` so the last bin is handled too).

**The next layer.** Its columns for the imprint rows are made identical (:func:`equalize_columns`), so the
back-propagated signal ``g_t = dL/dy_i`` of record ``t`` is the same for every imprint row ``i``.

**The inversion.** With a step gate,

    dL/dW_i = sum_t 1[h_t > c_i] g_t x_t,      dL/db_i = sum_t 1[h_t > c_i] g_t,

so the difference of consecutive rows keeps only the records in bin ``i`` (``c_i < h_t <= c_{i+1}``):

    x = (dW_i - dW_{i+1}) / (db_i - db_{i+1}),

and the last row is used alone. A record alone in its bin is recovered exactly, whatever the rest of the
network and the loss. The learning rate, the ``1 / B`` of a mean loss and DP-SGD's per-sample clipping all
multiply numerator and denominator by the same factor and cancel; plain SGD's weight *update* (returned
minus sent weights) is ``-lr`` times the gradient, so updates invert the same way. Momentum, Adam and
several local steps mix gradients from different weights and break the exact cancellation.

**Limits, stated plainly.**

* A *crowded* bin (several records) returns the ``g``-weighted average of its records. The ratio alone
  cannot tell such an average from a single record; only scoring against the truth can. When one
  record's ``|g|`` dwarfs its bin-mates' the average is that record to within a small error, so the
  observed count of (near-)exact recoveries can slightly exceed the records alone in their bins.
* Under DP noise every difference carries Gaussian noise and the ratio of two noisy numbers is returned
  as is: the reconstruction is then mostly noise, and the scoring shows how bad it is.
* With ``K`` equal-mass bins and a batch of ``n`` records the expected number of records alone in their
  bin is ``n (1 - 1/K)^(n-1)`` (:func:`expected_exact_recoveries`); under Poisson sampling with rate ``q``
  over ``N`` records it is ``N q (1 - q/K)^(N-1)`` (:func:`expected_exact_recoveries_poisson`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri

#: Distributions :func:`calibrate` can fit to the measurement of the auxiliary data.
DISTRIBUTIONS = ("gaussian", "empirical", "laplace")
#: The first threshold lies this many standard deviations of ``h`` below the smallest auxiliary value,
#: so row 0 fires for every record the victim plausibly holds.
FLOOR_SDS = 10.0
#: Default relative tolerance below which a bin's bias difference counts as empty.
REL_TOL = 1e-5


@dataclass(frozen=True, eq=False)
class ImprintDesign:
    """What the server chooses: the measurement ``v`` and the ascending bin thresholds ``c``.

    ``scale`` multiplies rows and biases (``rows = scale * v``, ``biases = -scale * c``): 1 for ReLU and
    LeakyReLU, large (e.g. 1e3 relative to the spread of ``h``) to make SiLU act as a step.
    """

    measurement: np.ndarray
    thresholds: np.ndarray
    scale: float = 1.0

    def __post_init__(self) -> None:
        v = np.asarray(self.measurement, dtype=np.float64)
        c = np.asarray(self.thresholds, dtype=np.float64)
        if v.ndim != 1 or v.size == 0:
            raise ValueError(f"measurement must be a non-empty 1-D vector, got shape {v.shape}")
        if c.ndim != 1 or c.size == 0:
            raise ValueError(f"thresholds must be a non-empty 1-D vector, got shape {c.shape}")
        if not (np.all(np.isfinite(v)) and np.all(np.isfinite(c))):
            raise ValueError("measurement and thresholds must be finite")
        if np.any(np.diff(c) < 0):
            raise ValueError("thresholds must be ascending")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"scale must be a positive finite number, got {self.scale}")
        object.__setattr__(self, "measurement", v)
        object.__setattr__(self, "thresholds", c)

    @property
    def bins(self) -> int:
        """Number of imprint rows ``K`` (one bin per row)."""
        return int(self.thresholds.size)

    @property
    def dim(self) -> int:
        """Input dimension ``D`` the measurement applies to."""
        return int(self.measurement.size)

    def assign(self, records: np.ndarray) -> np.ndarray:
        """Bin index of each record (``c_i < h <= c_{i+1}``; -1 below the first threshold)."""
        h = np.asarray(records, dtype=np.float64).reshape(len(records), -1) @ self.measurement
        return np.searchsorted(self.thresholds, h, side="left") - 1


def _flat(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim < 2 or arr.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty batch of records (N, ...), got shape {arr.shape}")
    return arr.reshape(arr.shape[0], -1)


def random_measurement(dim: int, rng: np.random.Generator) -> np.ndarray:
    """A random unit-norm measurement ``v`` of length ``dim``: isotropic, so no record direction is favoured."""
    if dim < 1:
        raise ValueError(f"dim must be positive, got {dim}")
    v = rng.standard_normal(dim)
    return v / np.linalg.norm(v)


def mean_brightness_measurement(dim: int) -> np.ndarray:
    """The unit-norm all-equal measurement: ``h`` is proportional to the mean brightness of an image.

    This is the measurement of "Robbing the Fed"; brightness varies a lot between images, which spreads
    them over the bins.
    """
    if dim < 1:
        raise ValueError(f"dim must be positive, got {dim}")
    return np.full(dim, 1.0 / math.sqrt(dim))


def _laplace_ppf(p: np.ndarray, loc: float, b: float) -> np.ndarray:
    return np.where(p < 0.5, loc + b * np.log(2 * p), loc - b * np.log(2 - 2 * p))


def calibrate(aux: np.ndarray, measurement: np.ndarray, bins: int, distribution: str = "gaussian") -> ImprintDesign:
    """Thresholds at the quantiles ``i / bins`` of ``h = <v, x>`` over auxiliary records ``aux`` (N, ...).

    ``distribution`` says how the quantiles are estimated: ``"gaussian"`` (``mu + sd * PhiInv(i/K)`` with
    the mean and standard deviation of ``h``), ``"laplace"`` (median and mean absolute deviation) or
    ``"empirical"`` (sample quantiles). The parametric fits extrapolate better from small auxiliary sets;
    the empirical one follows skewed data. Threshold 0 (quantile 0) is placed :data:`FLOOR_SDS` standard
    deviations below the smallest auxiliary value so that row 0 fires for every record.

    The auxiliary data must come from the server's side (public or synthetic records). Bins are equal-mass
    for the victim only as far as its data resemble them.
    """
    if bins < 1:
        raise ValueError(f"bins must be positive, got {bins}")
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {DISTRIBUTIONS}, got {distribution!r}")
    flat = _flat(aux, "aux")
    v = np.asarray(measurement, dtype=np.float64).ravel()
    if v.size != flat.shape[1]:
        raise ValueError(f"measurement has {v.size} entries, records have {flat.shape[1]}")
    h = flat @ v
    sd = float(h.std())
    if flat.shape[0] < 2 or not sd > 0:
        raise ValueError("the auxiliary records must have a non-zero spread along the measurement")
    p = np.arange(1, bins) / bins
    if distribution == "gaussian":
        inner = float(h.mean()) + sd * ndtri(p)
    elif distribution == "laplace":
        loc = float(np.median(h))
        b = float(np.mean(np.abs(h - loc)))
        inner = _laplace_ppf(p, loc, b if b > 0 else sd)
    else:
        inner = np.quantile(h, p)
    floor = float(h.min()) - FLOOR_SDS * sd
    if inner.size:
        floor = min(floor, float(inner[0]) - FLOOR_SDS * sd)
    thresholds = np.concatenate([[floor], inner])
    return ImprintDesign(measurement=v, thresholds=thresholds)


def imprint_rows(design: ImprintDesign) -> tuple[np.ndarray, np.ndarray]:
    """The imprint rows: weight ``(K, D)`` (every row ``scale * v``) and bias ``(K,)`` (``-scale * c``)."""
    weight = np.tile(design.scale * design.measurement, (design.bins, 1))
    bias = -design.scale * design.thresholds
    return weight, bias


def _check_rows(rows: Sequence[int], size: int, count: int | None = None) -> np.ndarray:
    idx = np.asarray(list(rows), dtype=np.int64)
    if idx.ndim != 1 or idx.size == 0:
        raise ValueError("rows must be a non-empty sequence of indices")
    if count is not None and idx.size != count:
        raise ValueError(f"{idx.size} rows given for {count} imprint rows")
    if np.any(idx < 0) or np.any(idx >= size):
        raise ValueError(f"rows must lie in [0, {size})")
    if np.unique(idx).size != idx.size:
        raise ValueError("rows must be distinct")
    return idx


def plant(
    weight: np.ndarray, bias: np.ndarray, rows: Sequence[int], design: ImprintDesign
) -> tuple[np.ndarray, np.ndarray]:
    """Copies of a Linear layer's ``(out, in)`` weight and ``(out,)`` bias with the imprint written into ``rows``.

    ``rows[k]`` receives the row of threshold ``k``, so the same ``rows`` passed to :func:`invert` lists
    them in ascending threshold order. The other rows are left as they were (the honest network keeps
    working on them). Dtypes are preserved.
    """
    weight = np.array(weight, copy=True)
    bias = np.array(bias, copy=True)
    if weight.ndim != 2 or bias.shape != (weight.shape[0],):
        raise ValueError(f"expected an (out, in) weight and (out,) bias, got {weight.shape} and {bias.shape}")
    if weight.shape[1] != design.dim:
        raise ValueError(f"the layer takes {weight.shape[1]} inputs, the measurement has {design.dim}")
    idx = _check_rows(rows, weight.shape[0], design.bins)
    w_rows, b_rows = imprint_rows(design)
    weight[idx] = w_rows
    bias[idx] = b_rows
    return weight, bias


def equalize_columns(next_weight: np.ndarray, rows: Sequence[int], column: np.ndarray | None = None) -> np.ndarray:
    """Copy of the next Linear's ``(out2, out)`` weight whose columns ``rows`` are all equal to ``column``.

    Identical columns make ``dL/dy_i`` the same for every imprint row of a record, which the inversion
    needs. ``column`` defaults to the existing column ``rows[0]``; a small column keeps the forward pass
    close to the honest network's without changing the ratio the inversion forms.
    """
    out = np.array(next_weight, copy=True)
    if out.ndim != 2:
        raise ValueError(f"expected an (out2, out) weight, got shape {out.shape}")
    idx = _check_rows(rows, out.shape[1])
    col = out[:, idx[0]].copy() if column is None else np.asarray(column, dtype=out.dtype).ravel()
    if col.shape != (out.shape[0],):
        raise ValueError(f"column must have {out.shape[0]} entries, got {col.shape}")
    out[:, idx] = col[:, None]
    return out


@dataclass(frozen=True, eq=False)
class Reconstruction:
    """One bin's estimate of a record.

    ``values`` is the flattened ``(D,)`` record; ``bin`` the index ``i`` of the bin ``(c_i, c_{i+1}]``;
    ``mass`` the absolute bias difference of the bin (divided by ``1 - negative_slope``), i.e.
    ``|sum_t g_t|`` over its records: how much signal the bin carried. A large mass does not prove a single
    record: crowded bins give averages.
    """

    values: np.ndarray
    bin: int
    mass: float


def invert(
    delta_weight: np.ndarray,
    delta_bias: np.ndarray,
    rows: Sequence[int] | None = None,
    *,
    negative_slope: float = 0.0,
    rel_tol: float = REL_TOL,
    min_mass: float = 0.0,
) -> list[Reconstruction]:
    """Records from the gradient (or plain-SGD update) of the imprint rows, one per non-empty bin.

    ``delta_weight`` ``(K, D)`` and ``delta_bias`` ``(K,)`` hold the imprint rows in ascending threshold
    order; or pass the whole layer's ``(out, D)`` / ``(out,)`` and ``rows`` (as given to :func:`plant`).
    Gradients and updates work alike (the sign and the learning rate cancel).

    Bin ``i`` is ``(row_i - row_{i+1}) / (bias_i - bias_{i+1})``. Beyond the last row lies a virtual row
    ``negative_slope * row_0`` (zero for ReLU and SiLU): row 0 fires for every record, so for a LeakyReLU
    gate this removes the slope's share of all records from the last bin. A bin is empty, and skipped, when
    its absolute bias difference is at most ``rel_tol`` times the largest one or at most ``min_mass``
    (an absolute noise floor, e.g. a few noise standard deviations under DP).

    Crowded bins return an average of their records and noisy bins the ratio of noisy differences, both
    without any flag: this function cannot tell them from single records (see the module docstring).
    """
    dw = np.asarray(delta_weight, dtype=np.float64)
    db = np.asarray(delta_bias, dtype=np.float64).ravel()
    if dw.ndim != 2 or db.shape != (dw.shape[0],):
        raise ValueError(f"expected a (K, D) weight delta and (K,) bias delta, got {dw.shape} and {db.shape}")
    if rows is not None:
        idx = _check_rows(rows, dw.shape[0])
        dw, db = dw[idx], db[idx]
    if not 0.0 <= negative_slope < 1.0:
        raise ValueError(f"negative_slope must lie in [0, 1), got {negative_slope}")
    next_w = np.concatenate([dw[1:], negative_slope * dw[:1]])
    next_b = np.concatenate([db[1:], negative_slope * db[:1]])
    num = dw - next_w
    den = db - next_b
    mass = np.abs(den) / (1.0 - negative_slope)
    largest = float(mass.max()) if mass.size else 0.0
    if not largest > 0:
        return []
    floor = max(rel_tol * largest, float(min_mass))
    out: list[Reconstruction] = []
    for i in np.flatnonzero(mass > floor):
        out.append(Reconstruction(values=num[i] / den[i], bin=int(i), mass=float(mass[i])))
    return out


def stack(reconstructions: Sequence[Reconstruction], dim: int | None = None) -> np.ndarray:
    """The reconstructions' values as an ``(M, D)`` array (``(0, dim)`` when there are none)."""
    if not reconstructions:
        return np.zeros((0, dim or 0))
    return np.stack([r.values for r in reconstructions])


def expected_exact_recoveries(batch: int, bins: int) -> float:
    """Expected number of records alone in their bin: ``n (1 - 1/K)^(n-1)`` for ``n`` records, ``K`` equal bins."""
    if batch < 0 or bins < 1:
        raise ValueError("batch must be >= 0 and bins >= 1")
    if batch == 0:
        return 0.0
    return batch * (1.0 - 1.0 / bins) ** (batch - 1)


def expected_exact_recoveries_poisson(records: int, sample_rate: float, bins: int) -> float:
    """Same under Poisson sampling: ``N q (1 - q/K)^(N-1)`` over ``N`` records with rate ``q``.

    A record is recovered when it is sampled (probability ``q``) and none of the other ``N - 1`` records is
    both sampled and in its bin (probability ``q / K`` each, independently).
    """
    if records < 0 or bins < 1 or not 0.0 <= sample_rate <= 1.0:
        raise ValueError("records must be >= 0, bins >= 1 and sample_rate in [0, 1]")
    if records == 0:
        return 0.0
    return records * sample_rate * (1.0 - sample_rate / bins) ** (records - 1)
