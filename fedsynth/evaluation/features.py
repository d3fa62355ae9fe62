"""Feature spaces the distance-based metrics work in (no downloads, no pretrained networks).

Two spaces are used, and the report names which one every number comes from:

``pixel``
    The raw record: every image pixel flattened at full resolution. For table-only data it is the
    clinical part of :func:`~fedsynth.evaluation.utility.record_features` (numeric columns scaled
    by public bounds, categorical one-hot). For image + table data the images alone (the
    memorization question is about images; the table enters the embedding space).

``embedding``
    A linear encoder fitted on the *held-out real split* only (never on training or synthetic
    records): the fixed record features (images average-pooled to <= 16 x 16, numeric columns
    scaled by public bounds, categoricals one-hot), weighted so that each modality has a total
    variance of 1 on the held-out records (pixels share one factor; table columns are each
    standardized, then divided by sqrt(number of table features)), projected onto the first
    principal components of the held-out records (scikit-learn PCA, at most
    :data:`EMBEDDING_DIM` components and at most n_holdout - 1). Fitting on the held-out split
    makes the space describe how real data varies without ever looking at what is being judged;
    the variance weighting keeps a few binary columns or thousands of pixels from dominating.

Why not Inception features: they need a download and were trained on natural photographs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.decomposition import PCA

from fedsynth.data.records import Dataset
from fedsynth.evaluation.utility import clinical_features, pool_images

#: Largest number of principal components of the embedding space.
EMBEDDING_DIM = 32

EMBEDDING_DESCRIPTION = (
    "PCA encoder fitted on the held-out real split only: images average-pooled to at most 16x16, "
    "numeric clinical columns scaled by their public bounds, categorical columns one-hot; each "
    "modality weighted to a total variance of 1 on the held-out records (table columns standardized), "
    f"then projected onto at most {EMBEDDING_DIM} principal components of the held-out records"
)
PIXEL_DESCRIPTION = (
    "raw images flattened at full resolution (table-only data: numeric columns scaled by public "
    "bounds, categorical one-hot)"
)


def pixel_space(ds: Dataset) -> np.ndarray:
    """Raw features: flattened full-resolution images, or the scaled table when there is no image."""
    if ds.images is not None:
        return ds.images.reshape(len(ds), -1).astype(np.float32)
    assert ds.clinical is not None
    return clinical_features(ds.clinical, ds.schema)


def modality_blocks(ds: Dataset) -> tuple[np.ndarray, int]:
    """Fixed record features (pooled image, then scaled table) and the width of the image block."""
    parts: list[np.ndarray] = []
    n_img = 0
    if ds.images is not None:
        img = pool_images(ds.images).reshape(len(ds), -1)
        parts.append(img)
        n_img = img.shape[1]
    if ds.clinical is not None:
        parts.append(clinical_features(ds.clinical, ds.schema))
    return np.concatenate(parts, axis=1).astype(np.float64), n_img


def fit_scales(x: np.ndarray, n_img: int) -> np.ndarray:
    """Per-feature weights that give each modality a total variance of 1 (see module docstring).

    Image block: one common factor 1/sqrt(total pixel variance), so the pixels keep their relative
    variances. Table block: each column divided by its standard deviation (so units do not matter)
    and by sqrt(number of table features).
    """
    var = x.var(axis=0)
    scales = np.ones(x.shape[1], dtype=np.float64)
    if n_img:
        scales[:n_img] = 1.0 / np.sqrt(max(float(var[:n_img].sum()), 1e-12))
    n_tab = x.shape[1] - n_img
    if n_tab:
        std = np.sqrt(np.maximum(var[n_img:], 1e-6))
        scales[n_img:] = 1.0 / (std * np.sqrt(n_tab))
    return scales


@dataclass(frozen=True)
class EmbeddingSpace:
    """A fitted linear encoder (see module docstring); apply with :meth:`transform`."""

    scales: np.ndarray
    mean: np.ndarray
    components: np.ndarray
    explained_variance_ratio: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.components.shape[0])

    def transform(self, ds: Dataset) -> np.ndarray:
        x, _ = modality_blocks(ds)
        return ((x * self.scales - self.mean) @ self.components.T).astype(np.float32)

    def describe(self) -> dict:
        return {
            "description": EMBEDDING_DESCRIPTION,
            "fitted_on": "held-out real split",
            "dim": self.dim,
            "explained_variance": float(np.sum(self.explained_variance_ratio)),
        }


def fit_embedding(holdout: Dataset, *, seed: int, dim: int = EMBEDDING_DIM) -> EmbeddingSpace:
    """Fit the embedding encoder on the held-out real records (deterministic per seed)."""
    x, n_img = modality_blocks(holdout)
    scales = fit_scales(x, n_img)
    xs = x * scales
    n_comp = max(1, min(dim, xs.shape[0] - 1, xs.shape[1]))
    pca = PCA(n_components=n_comp, svd_solver="full", random_state=seed).fit(xs)
    return EmbeddingSpace(
        scales=scales,
        mean=pca.mean_.copy(),
        components=pca.components_.copy(),
        explained_variance_ratio=pca.explained_variance_ratio_.copy(),
    )
