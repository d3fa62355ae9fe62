"""Memorization: the maximum Pearson correlation of each synthetic image to all training images.

Following seed 001 (Akbar et al. 2023, "Beware of diffusion models ..."): for every synthetic image,
the Pearson correlation of its pixels with the pixels of every training image is computed and the
maximum kept. A value near 1 means the synthetic image is (a rescaled copy of) a training image;
FID-like metrics do not see this. Images with correlation above :data:`COPY_THRESHOLD` (0.95)
count as near-copies.

The same statistic for the *held-out* real images against the training images is the baseline: two
different real patients are this similar by nature. A synthetic distribution shifted above the
held-out one signals memorization even when nothing crosses 0.95.

Aligned medical images share a template (the same anatomy in the same place), so *raw* correlations
between different patients are high: on the built-in phantom, held-out images reach a median
maximum correlation of about 0.95 with the training images, and the 0.95 threshold alone flags
new patients as copies. The *residual* variant therefore subtracts a template (the pixel-wise mean
training image) from every image before correlating: copies keep a correlation of 1, different
patients drop far below 0.95. Both are reported; the raw one is seed 001's definition.

Computation: each image is flattened (all channels), centred and scaled to unit norm; then the
correlation matrix is a matrix product, evaluated in chunks of synthetic images so memory stays
bounded. A constant image has no defined correlation: its maximum is reported as 0 and it is
counted in ``n_constant``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

COPY_THRESHOLD = 0.95
#: Synthetic images per chunk of the correlation matrix.
CHUNK = 512


def standardize_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows centred and scaled to unit L2 norm (float32), and a mask of constant rows (left at 0)."""
    flat = np.asarray(x, dtype=np.float64).reshape(x.shape[0], -1)
    flat = flat - flat.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(flat, axis=1)
    constant = norm < 1e-8
    out = np.zeros_like(flat)
    out[~constant] = flat[~constant] / norm[~constant, None]
    return out.astype(np.float32), constant


def max_correlation(query: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query image, the maximum Pearson correlation to any reference image and its index.

    ``query`` (Nq, ...) and ``reference`` (Nr, ...) images of the same shape. Returns float64 (Nq,)
    maxima in [-1, 1] (0 for constant images) and int64 (Nq,) indices into ``reference``.
    """
    q, q_const = standardize_rows(query)
    r, _ = standardize_rows(reference)
    best = np.empty(q.shape[0], dtype=np.float64)
    arg = np.empty(q.shape[0], dtype=np.int64)
    for start in range(0, q.shape[0], CHUNK):
        corr = q[start : start + CHUNK] @ r.T
        arg[start : start + CHUNK] = np.argmax(corr, axis=1)
        best[start : start + CHUNK] = np.take_along_axis(corr, arg[start : start + CHUNK, None], axis=1)[:, 0]
    best = np.clip(best, -1.0, 1.0)
    best[q_const] = 0.0
    return best, arg


def distribution_summary(values: np.ndarray) -> dict[str, float]:
    """Mean, quantiles and maximum of a 1-D sample."""
    v = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(v.mean()),
        "median": float(np.median(v)),
        "p05": float(np.quantile(v, 0.05)),
        "p95": float(np.quantile(v, 0.95)),
        "p99": float(np.quantile(v, 0.99)),
        "max": float(v.max()),
    }


def memorization_metrics(
    synthetic: np.ndarray,
    train: np.ndarray,
    holdout: np.ndarray | None = None,
    *,
    top_k: int = 8,
    threshold: float = COPY_THRESHOLD,
    template: np.ndarray | None = None,
) -> dict[str, Any]:
    """Max-correlation statistics of synthetic (and, as baseline, held-out) images to training images.

    ``template``: an image subtracted from every image first (the residual variant, see the module
    docstring); None = raw correlations.

    Returns ``synthetic`` (distribution summary), ``share_above`` (share of synthetic images with
    max correlation > ``threshold``), ``n_above``, ``n_constant``, ``top_pairs`` (the ``top_k``
    synthetic images with the highest max correlation: synthetic index, training index,
    correlation), and with ``holdout``: ``holdout`` (summary), ``holdout_share_above`` and
    ``exceeds_holdout_p99`` (share of synthetic images more correlated to a training image than 99%
    of held-out real images are) and ``excess_share_above`` (share_above minus holdout_share_above).
    The per-image values are returned under ``values`` (arrays,
    not JSON) for plots.
    """
    if template is not None:
        synthetic, train = synthetic - template, train - template
        holdout = None if holdout is None else holdout - template
    best, arg = max_correlation(synthetic, train)
    _, const = standardize_rows(synthetic)
    order = np.argsort(-best, kind="stable")[:top_k]
    out: dict[str, Any] = {
        "threshold": threshold,
        "variant": "raw" if template is None else "residual (template subtracted)",
        "n_synthetic": int(best.size),
        "n_train": int(train.shape[0]),
        "synthetic": distribution_summary(best),
        "share_above": float(np.mean(best > threshold)),
        "n_above": int(np.sum(best > threshold)),
        "n_constant": int(const.sum()),
        "top_pairs": [{"synthetic": int(i), "train": int(arg[i]), "correlation": float(best[i])} for i in order],
        "values": {"synthetic": best, "synthetic_arg": arg},
    }
    if holdout is not None and holdout.shape[0] > 0:
        hbest, _ = max_correlation(holdout, train)
        p99 = float(np.quantile(hbest, 0.99))
        out["holdout"] = distribution_summary(hbest)
        out["holdout_share_above"] = float(np.mean(hbest > threshold))
        out["exceeds_holdout_p99"] = float(np.mean(best > p99))
        out["excess_share_above"] = out["share_above"] - out["holdout_share_above"]
        out["values"]["holdout"] = hbest
    return out
