"""2-D views of real vs synthetic records (seed 000 used UMAP for this).

Two projections of the embedding-space features (:mod:`fedsynth.evaluation.features`):

- PCA: the first two principal components of the real training records; synthetic records are
  projected with the same linear map, so positions are comparable and nothing is fitted on
  synthetic data. Deterministic.
- t-SNE (scikit-learn): a non-linear, neighbourhood-preserving map of real and synthetic records
  together (t-SNE has no out-of-sample transform), on a random subsample to bound run time.
  Clusters of synthetic points without real neighbours, or real clusters without synthetic
  points, are what to look for; distances between far-apart clusters mean little.

Why not UMAP: umap-learn pulls in numba and llvmlite (JIT compilation on first use adds seconds
to every fresh process, and numba pins numpy versions); t-SNE gives the same kind of
neighbourhood view from a dependency the project already has.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

#: Largest number of records (real + synthetic) given to t-SNE.
TSNE_MAX_POINTS = 1000


def pca_2d(real: np.ndarray, synthetic: np.ndarray, *, seed: int) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """PCA fitted on ``real``: 2-D coordinates of real and synthetic records and explained variance."""
    n_comp = min(2, real.shape[1], max(1, real.shape[0] - 1))
    pca = PCA(n_components=n_comp, svd_solver="full", random_state=seed).fit(real)
    r, s = pca.transform(real), pca.transform(synthetic)
    if n_comp == 1:
        r, s = np.column_stack([r, np.zeros(len(r))]), np.column_stack([s, np.zeros(len(s))])
    return r, s, [float(v) for v in pca.explained_variance_ratio_]


def tsne_2d(
    real: np.ndarray, synthetic: np.ndarray, *, seed: int, max_points: int = TSNE_MAX_POINTS
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Joint t-SNE of a subsample: (real coords, synthetic coords, real indices, synthetic indices)."""
    rng = np.random.default_rng(seed)
    half = max_points // 2
    ri = np.sort(rng.choice(real.shape[0], min(half, real.shape[0]), replace=False))
    si = np.sort(rng.choice(synthetic.shape[0], min(half, synthetic.shape[0]), replace=False))
    joint = np.concatenate([real[ri], synthetic[si]]).astype(np.float64)
    perplexity = float(min(30.0, max(2.0, (joint.shape[0] - 1) / 3.0)))
    coords = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(joint)
    return coords[: ri.size], coords[ri.size :], ri, si


def embedding_view(
    real: np.ndarray,
    synthetic: np.ndarray,
    *,
    seed: int,
    tsne: bool = True,
    max_points: int = TSNE_MAX_POINTS,
) -> dict[str, Any]:
    """2-D coordinates for the report's scatter plots (arrays; not written to evaluation.json)."""
    r, s, var = pca_2d(real, synthetic, seed=seed)
    out: dict[str, Any] = {"pca": {"real": r, "synthetic": s, "explained_variance": var}}
    if tsne and real.shape[0] + synthetic.shape[0] >= 10:
        tr, ts, ri, si = tsne_2d(real, synthetic, seed=seed, max_points=max_points)
        out["tsne"] = {"real": tr, "synthetic": ts, "real_index": ri, "synthetic_index": si}
    return out
