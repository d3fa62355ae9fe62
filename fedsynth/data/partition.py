"""Held-out test split and partitioners: which record goes to which hospital.

All functions are pure: they take labels and a ``numpy.random.Generator`` and return index arrays
(positions into ``labels``, sorted ascending). The same labels and the same generator state give
the same result. Every record of the train split goes to exactly one hospital; none is dropped.

Schemes:

- ``iid``: a random permutation cut into hospitals of equal size (+-1).
- ``dirichlet``: label skew. For each class, the shares of the hospitals are drawn from
  Dirichlet(alpha, ..., alpha) and the class's records are cut by these shares. A draw in which some
  hospital gets fewer than ``min_size`` records is redrawn (up to ``DIRICHLET_MAX_DRAWS`` times, all
  from the same generator, so still deterministic); this conditions the Dirichlet draw on a minimum
  hospital size, as is common practice.
- ``quantity``: size skew. Hospital sizes are ``min_size`` plus a share of the remaining records
  proportional to log-normal(0, skew) weights; records are assigned at random, so label
  proportions stay close to the pool's.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from fedsynth.errors import ConfigError, DataError

#: How many Dirichlet draws are tried before a too-small hospital is reported.
DIRICHLET_MAX_DRAWS = 1000

Scheme = Literal["iid", "dirichlet", "quantity"]


def split_test(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Stratified held-out split: ``(train_idx, test_idx)``, disjoint, together all records.

    Each class contributes ``round(fraction * n_class)`` records to the test split, at least one
    and at most ``n_class - 1`` when the class has two or more records (a class with a single
    record stays in the train split).
    """
    labels = _check_labels(labels)
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"data.test_fraction: {fraction} (expected a fraction in (0, 1))")
    test_parts = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        n_test = int(round(fraction * members.size))
        if members.size >= 2:
            n_test = min(max(n_test, 1), members.size - 1)
        else:
            n_test = 0
        test_parts.append(rng.permutation(members)[:n_test])
    test_idx = np.sort(np.concatenate(test_parts)) if test_parts else np.zeros(0, np.int64)
    train_mask = np.ones(labels.size, dtype=bool)
    train_mask[test_idx] = False
    train_idx = np.flatnonzero(train_mask)
    if test_idx.size == 0 or train_idx.size == 0:
        raise DataError(
            "test split",
            f"{labels.size} records give {train_idx.size} train and {test_idx.size} test records",
            "a data set with at least 2 records of some class",
        )
    return train_idx.astype(np.int64), test_idx.astype(np.int64)


def partition(
    labels: np.ndarray,
    num_hospitals: int,
    scheme: Scheme,
    rng: np.random.Generator,
    alpha: float = 0.5,
    skew: float = 1.0,
    min_size: int = 1,
) -> list[np.ndarray]:
    """Split record positions ``0..len(labels)-1`` over ``num_hospitals`` hospitals.

    Returns one sorted int64 index array per hospital; their union is every position exactly
    once. Raises ``DataError`` naming the hospital if one would get fewer than ``min_size``
    records.
    """
    labels = _check_labels(labels)
    if isinstance(num_hospitals, bool) or not isinstance(num_hospitals, (int, np.integer)) or num_hospitals < 1:
        raise ConfigError(f"num_hospitals: {num_hospitals!r} (expected an integer >= 1)")
    if min_size < 1:
        raise ConfigError(f"data.min_records_per_hospital: {min_size} (expected an integer >= 1)")
    n = labels.size
    if n < num_hospitals * min_size:
        raise DataError(
            "partition",
            f"{n} train records cannot give {num_hospitals} hospitals {min_size} records each",
            f"at least {num_hospitals * min_size} train records; use fewer hospitals, a smaller "
            "data.min_records_per_hospital or more data",
        )
    if scheme == "iid":
        parts = np.array_split(rng.permutation(n), num_hospitals)
    elif scheme == "dirichlet":
        if not alpha > 0:
            raise ConfigError(f"data.dirichlet_alpha: {alpha} (expected a value > 0)")
        parts = _dirichlet(labels, num_hospitals, alpha, min_size, rng)
    elif scheme == "quantity":
        if not skew >= 0:
            raise ConfigError(f"data.quantity_skew: {skew} (expected a value >= 0)")
        parts = _quantity(n, num_hospitals, skew, min_size, rng)
    else:
        raise ConfigError(f"data.partition: {scheme!r} (expected 'iid', 'dirichlet' or 'quantity')")
    result = [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]
    _check_sizes(result, min_size, scheme)
    return result


def _dirichlet(labels: np.ndarray, k: int, alpha: float, min_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    classes = np.unique(labels)
    members = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    best: list[np.ndarray] = []
    best_min = -1
    for _ in range(DIRICHLET_MAX_DRAWS):
        shares = rng.dirichlet(np.full(k, alpha), size=classes.size)  # (classes, hospitals)
        parts: list[list[np.ndarray]] = [[] for _ in range(k)]
        for cls_members, share in zip(members, shares):
            counts = _largest_remainder(share, cls_members.size)
            for h, chunk in enumerate(np.split(cls_members, np.cumsum(counts)[:-1])):
                parts[h].append(chunk)
        merged = [np.concatenate(p) for p in parts]
        smallest = min(p.size for p in merged)
        if smallest >= min_size:
            return merged
        if smallest > best_min:
            best, best_min = merged, smallest
    return best  # too small: _check_sizes reports the hospital


def _quantity(n: int, k: int, skew: float, min_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    weights = rng.lognormal(0.0, skew, size=k) if skew > 0 else np.ones(k)
    sizes = min_size + _largest_remainder(weights / weights.sum(), n - k * min_size)
    return np.split(rng.permutation(n), np.cumsum(sizes)[:-1])


def _largest_remainder(shares: np.ndarray, total: int) -> np.ndarray:
    """Integer counts summing to ``total``, proportional to ``shares`` (Hamilton's method)."""
    raw = shares / shares.sum() * total
    counts = np.floor(raw).astype(np.int64)
    rest = total - int(counts.sum())
    if rest > 0:
        order = np.argsort(-(raw - counts), kind="stable")
        counts[order[:rest]] += 1
    return counts


def _check_sizes(parts: list[np.ndarray], min_size: int, scheme: str) -> None:
    for h, p in enumerate(parts):
        if p.size < min_size:
            hint = (
                "use a larger data.dirichlet_alpha, fewer hospitals or a smaller data.min_records_per_hospital"
                if scheme == "dirichlet"
                else "use fewer hospitals or a smaller data.min_records_per_hospital"
            )
            raise DataError(
                f"partition '{scheme}', hospital {h}",
                f"gets {p.size} records",
                f"at least {min_size} records; {hint}",
            )


def _check_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError("partition", f"labels have shape {labels.shape} and dtype {labels.dtype}", "1-D integers")
    if labels.size == 0:
        raise DataError("partition", "no records", "a non-empty data set")
    return labels
