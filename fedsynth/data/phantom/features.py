"""Known cross-modal associations of the phantom and how to measure them from images.

``PHANTOM_ASSOCIATIONS`` lists what the phantom builds in (covariate -> image feature -> sign).
``phantom_image_features`` measures the image features from any images with the phantom's layout
(real or synthetic, any size), and ``measure_associations`` computes the Spearman correlation of
each declared pair on a data set, so an evaluation can check that synthetic data keeps the signs.

Features are read in fixed regions of interest of the phantom's layout and are expressed in units
of the image's own marrow-minus-soft-tissue contrast, so scanner gain and offset largely cancel:

- ``disc_intensity``: inner-disc centre minus marrow, over contrast (T2 disc signal; partial
  volume makes thin discs darker too).
- ``body_size``: vertebral-body width along the anterior-posterior axis, as a fraction of the
  image width (integral of the contrast-normalized profile through the body centres).
- ``fat_thickness``: subcutaneous fat-band thickness, as a fraction of the image width (integral
  of the fat excess over muscle, divided by the expected fat-minus-muscle contrast).
- ``lesion_load``: sum over the six anterior-corner sites of the positive excess over marrow.
- ``lesion_count``: number of corner sites whose excess exceeds ``LESION_THRESHOLD``.
- ``bridge_score``: mean over the two inner discs of the intensity anterior to the disc (above
  soft tissue), i.e. bony bridging.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedsynth.data.phantom import geometry as g
from fedsynth.data.phantom.cohort import ACTIVE, STRUCTURAL
from fedsynth.data.records import Dataset
from fedsynth.errors import DataError

#: Corner excess (in contrast units) above which a site counts as a lesion.
LESION_THRESHOLD = 0.1


@dataclass(frozen=True)
class Association:
    """``covariate`` -> image ``feature`` with ``sign`` (+1 / -1).

    ``covariate`` is a clinical column name (categorical columns by code, e.g. sex M = 1) or
    ``"label=<class>"`` for the indicator of a class. ``min_classes``: the association exists only
    when the phantom has at least this many classes.
    """

    covariate: str
    feature: str
    sign: int
    mechanism: str
    min_classes: int = 2


PHANTOM_ASSOCIATIONS: tuple[Association, ...] = (
    Association("age", "disc_intensity", -1, "disc degeneration: older discs are darker and thinner"),
    Association("sex", "body_size", +1, "men (code 1) have wider vertebral bodies"),
    Association("bmi", "fat_thickness", +1, "higher BMI, thicker subcutaneous fat band"),
    Association("label=active", "lesion_load", +1, "active disease shows bright corner lesions (oedema)"),
    Association("label=active", "lesion_count", +1, "active disease shows several corner lesions"),
    Association("crp_mg_l", "lesion_load", +1, "CRP is high in active disease and brightens its lesions"),
    Association("label=structural", "bridge_score", +1, "structural class shows anterior bridges", 3),
    Association("disease_duration_years", "bridge_score", +1, "bridging accumulates with duration", 3),
)

FEATURE_NAMES = (
    "disc_intensity",
    "body_size",
    "fat_thickness",
    "lesion_load",
    "lesion_count",
    "bridge_score",
)

_CLASS_INDEX = {"active": ACTIVE, "structural": STRUCTURAL, "inactive": 0}


def phantom_image_features(images: np.ndarray) -> dict[str, np.ndarray]:
    """Measure ``FEATURE_NAMES`` on images (n, 1, H, W), (n, C, H, W) (channels averaged) or
    (n, H, W) with square H = W; returns one float64 (n,) array per feature."""
    img = np.asarray(images, dtype=np.float64)
    if img.ndim == 4:
        img = img.mean(axis=1)
    if img.ndim != 3 or img.shape[1] != img.shape[2]:
        raise DataError("phantom features", f"images have shape {np.shape(images)}", "(n, [C,] S, S) images")
    size = img.shape[1]

    def span(a: float, b: float) -> slice:
        return g.pixel_span(a, b, size)

    def roi_mean(x: tuple[float, float], y: tuple[float, float]) -> np.ndarray:
        return img[:, span(*y), span(*x)].mean(axis=(1, 2))

    body_x = (g.X_ANTERIOR + 0.06, g.X_ANTERIOR + 0.22)
    soft = np.median(img[:, :, span(0.0, 0.08)].reshape(len(img), -1), axis=1)
    marrow = np.mean([roi_mean(body_x, (yc - 0.05, yc + 0.05)) for yc in g.BODY_Y], axis=0)
    contrast = np.maximum(marrow - soft, 0.02)

    disc = np.mean([roi_mean(body_x, (g.DISC_Y[d] - 0.012, g.DISC_Y[d] + 0.012)) for d in g.INNER_DISCS], axis=0)
    disc_intensity = (disc - marrow) / contrast

    body_rows = np.concatenate([np.arange(size)[span(yc - 0.04, yc + 0.04)] for yc in g.BODY_Y])
    profile = img[:, body_rows, :].mean(axis=1)
    xs = span(0.0, 0.60)
    body_size = np.clip((profile[:, xs] - soft[:, None]) / contrast[:, None], 0.0, 1.0).sum(axis=1) / size

    muscle_rows = np.concatenate([np.arange(size)[span(g.DISC_Y[d] - 0.04, g.DISC_Y[d] + 0.04)] for d in g.INNER_DISCS])
    muscle = np.median(img[:, muscle_rows, span(g.POSTERIOR_X[0], 0.78)].reshape(len(img), -1), axis=1)
    fat_profile = img[:, :, span(0.79, 1.0)].mean(axis=1)
    fat_contrast = contrast * (g.FAT - g.MUSCLE) / (g.MARROW - g.SOFT)
    fat_thickness = np.maximum(fat_profile - muscle[:, None], 0.0).sum(axis=1) / fat_contrast / size

    excess = np.stack(
        [(roi_mean((sx - 0.03, sx + 0.03), (sy - 0.03, sy + 0.03)) - marrow) / contrast for sx, sy in g.lesion_sites()],
        axis=1,
    )
    lesion_load = np.maximum(excess, 0.0).sum(axis=1)
    lesion_count = (excess > LESION_THRESHOLD).sum(axis=1).astype(np.float64)

    bridge = [
        (roi_mean((g.BRIDGE_X[0] + 0.005, g.X_ANTERIOR - 0.02), (g.DISC_Y[d] - 0.03, g.DISC_Y[d] + 0.03)) - soft)
        / contrast
        for d in g.INNER_DISCS
    ]
    bridge_score = np.maximum(np.mean(bridge, axis=0), 0.0)

    return {
        "disc_intensity": disc_intensity,
        "body_size": body_size,
        "fat_thickness": fat_thickness,
        "lesion_load": lesion_load,
        "lesion_count": lesion_count,
        "bridge_score": bridge_score,
    }


@dataclass(frozen=True)
class AssociationResult:
    association: Association
    #: Spearman rank correlation between covariate and feature (nan if either is constant).
    correlation: float

    @property
    def holds(self) -> bool:
        """The correlation has the declared sign."""
        return bool(np.isfinite(self.correlation) and np.sign(self.correlation) == self.association.sign)


def covariate_values(dataset: Dataset, covariate: str) -> np.ndarray:
    """Values of an association's covariate: a clinical column or a class indicator."""
    if covariate.startswith("label="):
        name = covariate.split("=", 1)[1]
        names = dataset.schema.class_names
        index = names.index(name) if name in names else _CLASS_INDEX[name]
        return (dataset.labels == index).astype(np.float64)
    if dataset.clinical is None or covariate not in dataset.schema.column_names:
        raise DataError(dataset.source or "data set", f"no clinical column '{covariate}'", "the phantom's columns")
    return dataset.clinical[:, dataset.schema.column_names.index(covariate)].astype(np.float64)


def measure_associations(dataset: Dataset) -> list[AssociationResult]:
    """Spearman correlation of every declared association that applies to ``dataset``."""
    if dataset.images is None:
        raise DataError(dataset.source or "data set", "no images", "a phantom data set with images")
    features = phantom_image_features(dataset.images)
    results = []
    for assoc in PHANTOM_ASSOCIATIONS:
        if dataset.schema.num_classes < assoc.min_classes:
            continue
        r = spearman(covariate_values(dataset, assoc.covariate), features[assoc.feature])
        results.append(AssociationResult(assoc, r))
    return results


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation with average ranks for ties; nan if either input is constant."""
    ra, rb = _ranks(a), _ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def _ranks(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    order = np.argsort(v, kind="stable")
    ranks = np.empty(v.size)
    ranks[order] = np.arange(v.size, dtype=np.float64)
    # average the ranks of ties
    _, inverse, counts = np.unique(v, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]
