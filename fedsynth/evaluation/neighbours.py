"""Exact Euclidean nearest neighbours, brute force in chunks (float64, memory-bounded).

Every distance-based metric (precision/recall, distance to closest record, membership inference,
Reality/Diversity Guarantees) goes through :func:`knn`, so they all agree on what "distance"
means: the plain Euclidean (L2) distance between feature vectors.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

#: Upper bound on the entries of one chunk of the distance matrix (~160 MB as float64).
CHUNK_ENTRIES = 20_000_000


def pairwise_chunks(a: np.ndarray, b: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (row offset, Euclidean distances of a chunk of rows of ``a`` to all rows of ``b``)."""
    a = np.asarray(a, dtype=np.float64).reshape(a.shape[0], -1)
    b = np.asarray(b, dtype=np.float64).reshape(b.shape[0], -1)
    b_sq = np.einsum("ij,ij->i", b, b)
    rows = max(1, CHUNK_ENTRIES // max(1, b.shape[0]))
    for start in range(0, a.shape[0], rows):
        chunk = a[start : start + rows]
        sq = np.einsum("ij,ij->i", chunk, chunk)[:, None] + b_sq[None, :] - 2.0 * chunk @ b.T
        yield start, np.sqrt(np.maximum(sq, 0.0))


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Full (len(a), len(b)) Euclidean distance matrix (use only for small inputs)."""
    out = np.empty((a.shape[0], b.shape[0]), dtype=np.float64)
    for start, d in pairwise_chunks(a, b):
        out[start : start + d.shape[0]] = d
    return out


def knn(query: np.ndarray, ref: np.ndarray, k: int = 1, *, exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Distances and indices of the ``k`` nearest rows of ``ref`` for each row of ``query``.

    ``exclude_self``: ``query`` and ``ref`` are the same array and a row is not its own neighbour.
    Returns float64 (n_query, k) distances sorted ascending and int64 (n_query, k) indices.
    """
    n_ref = ref.shape[0] - (1 if exclude_self else 0)
    if k < 1 or k > n_ref:
        raise ValueError(f"k={k} neighbours requested from {n_ref} reference rows")
    dist = np.empty((query.shape[0], k), dtype=np.float64)
    idx = np.empty((query.shape[0], k), dtype=np.int64)
    for start, d in pairwise_chunks(query, ref):
        if exclude_self:
            rows = np.arange(d.shape[0])
            d[rows, start + rows] = np.inf
        part = np.argpartition(d, k - 1, axis=1)[:, :k] if k < d.shape[1] else np.tile(np.arange(k), (d.shape[0], 1))
        part_d = np.take_along_axis(d, part, axis=1)
        order = np.argsort(part_d, axis=1, kind="stable")
        dist[start : start + d.shape[0]] = np.take_along_axis(part_d, order, axis=1)
        idx[start : start + d.shape[0]] = np.take_along_axis(part, order, axis=1)
    return dist, idx


def nn_distance(query: np.ndarray, ref: np.ndarray, *, exclude_self: bool = False) -> np.ndarray:
    """Distance of each row of ``query`` to its nearest row of ``ref`` (float64, (n_query,))."""
    return knn(query, ref, 1, exclude_self=exclude_self)[0][:, 0]
