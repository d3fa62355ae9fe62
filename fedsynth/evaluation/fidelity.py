"""Distribution fidelity in a feature space: Frechet distance and precision/recall/density/coverage.

Frechet distance (FD): the Frechet (2-Wasserstein) distance between Gaussians fitted to the real
and the synthetic features, ``|mu_r - mu_s|^2 + tr(C_r + C_s - 2 (C_r^1/2 C_s C_r^1/2)^1/2)``.
It is 0 for identical distributions and grows with any shift of mean or covariance; it is FID when
the features are Inception activations (here they are not: see :mod:`fedsynth.evaluation.features`).

Precision, recall, density and coverage follow Naeem et al. 2020 ("Reliable Fidelity and
Diversity Metrics for Generative Models"), with k-nearest-neighbour balls around each point:

- precision: share of synthetic points inside at least one real k-NN ball (realism);
- recall: share of real points inside at least one synthetic k-NN ball (diversity);
- density: average number of real balls containing a synthetic point, divided by k
  (about 1 when synthetic data are distributed like real data, above 1 when they crowd dense real
  regions, below 1 when they fall in sparse ones);
- coverage: share of real points whose own ball contains at least one synthetic point.
"""

from __future__ import annotations

import numpy as np

from fedsynth.evaluation.neighbours import knn, pairwise_chunks

#: k of the k-NN balls (Naeem et al. use 5).
PRDC_K = 5


def _sqrtm_psd(mat: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh((mat + mat.T) / 2.0)
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def frechet_distance(real: np.ndarray, synthetic: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two (n, d) feature matrices.

    Uses the symmetric form tr((C_r^1/2 C_s C_r^1/2)^1/2) with eigen-decompositions of symmetric
    matrices, which avoids the complex round-off of a general matrix square root.
    """
    real = np.asarray(real, dtype=np.float64)
    synthetic = np.asarray(synthetic, dtype=np.float64)
    if real.shape[0] < 2 or synthetic.shape[0] < 2:
        raise ValueError("the Frechet distance needs at least two records on each side")
    mu_r, mu_s = real.mean(axis=0), synthetic.mean(axis=0)
    c_r = np.atleast_2d(np.cov(real, rowvar=False))
    c_s = np.atleast_2d(np.cov(synthetic, rowvar=False))
    root_r = _sqrtm_psd(c_r)
    cross = _sqrtm_psd(root_r @ c_s @ root_r)
    fd = float(np.sum((mu_r - mu_s) ** 2) + np.trace(c_r) + np.trace(c_s) - 2.0 * np.trace(cross))
    return max(fd, 0.0)


def prdc(real: np.ndarray, synthetic: np.ndarray, k: int = PRDC_K) -> dict[str, float]:
    """Precision, recall, density and coverage (Naeem et al. 2020) with k-NN radii.

    Radii: the distance of each real point to its k-th nearest other real point, and of each
    synthetic point to its k-th nearest other synthetic point. Exact, brute force.
    """
    real = np.asarray(real, dtype=np.float64)
    synthetic = np.asarray(synthetic, dtype=np.float64)
    if real.shape[0] <= k or synthetic.shape[0] <= k:
        raise ValueError(f"precision/recall need more than k={k} records on each side")
    r_radius = knn(real, real, k, exclude_self=True)[0][:, -1]
    s_radius = knn(synthetic, synthetic, k, exclude_self=True)[0][:, -1]
    in_real_balls = np.zeros(synthetic.shape[0], dtype=np.int64)  # per synthetic: number of real balls
    real_covered = np.zeros(real.shape[0], dtype=bool)  # real ball contains some synthetic point
    real_in_synth = np.zeros(real.shape[0], dtype=bool)  # real point inside some synthetic ball
    for start, d in pairwise_chunks(synthetic, real):
        inside = d <= r_radius[None, :]
        in_real_balls[start : start + d.shape[0]] = inside.sum(axis=1)
        real_covered |= inside.any(axis=0)
        real_in_synth |= (d <= s_radius[start : start + d.shape[0], None]).any(axis=0)
    return {
        "precision": float(np.mean(in_real_balls > 0)),
        "recall": float(np.mean(real_in_synth)),
        "density": float(np.sum(in_real_balls) / (k * synthetic.shape[0])),
        "coverage": float(np.mean(real_covered)),
        "k": k,
    }


def subsample(x: np.ndarray, max_rows: int, seed: int) -> np.ndarray:
    """At most ``max_rows`` rows of ``x``, chosen at random without replacement (deterministic per seed)."""
    if x.shape[0] <= max_rows:
        return x
    idx = np.sort(np.random.default_rng(seed).choice(x.shape[0], max_rows, replace=False))
    return x[idx]


def fidelity_metrics(real: np.ndarray, synthetic: np.ndarray, *, seed: int, max_rows: int = 3000) -> dict:
    """FD and PRDC of two feature matrices; each side is subsampled to ``max_rows`` rows first."""
    r = subsample(real, max_rows, seed)
    s = subsample(synthetic, max_rows, seed + 1)
    out: dict = {
        "frechet_distance": frechet_distance(r, s),
        "n_real": int(r.shape[0]),
        "n_synthetic": int(s.shape[0]),
    }
    out.update(prdc(r, s))
    return out
