"""Cross-modal association fidelity: do clinical values and image content still go together?

A generator can reproduce every marginal and still pair images with the wrong patients' tables.
This module measures the associations between the clinical table (and the label) and image
features, in the real and in the synthetic data, and compares them.

Association = Spearman rank correlation (robust to monotone rescaling, defined for binary codes),
between each clinical variable (numeric columns as values, binary categoricals as codes,
multi-category columns and multi-class labels as one indicator per category) and each image feature.

Image features:

- Phantom data (the schema's columns are the phantom's): the phantom's own anatomical
  measurements (``fedsynth.data.phantom.phantom_image_features``) and its known associations
  (``PHANTOM_ASSOCIATIONS``), e.g. age -> disc intensity. A known association is *kept* when the
  synthetic correlation has the expected sign and at least half the strength of the real one.
- Any other data: generic image features (mean intensity, intensity spread, share of bright pixels,
  edge energy); the comparison is real vs synthetic correlation, pair by pair.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.stats import rankdata

from fedsynth.data.records import Dataset

#: A real association weaker than this is "no association" (not counted in sign agreement).
MIN_REAL_ASSOCIATION = 0.1
#: A kept association keeps at least this share of the real strength.
KEPT_STRENGTH = 0.5


def generic_image_features(images: np.ndarray) -> dict[str, np.ndarray]:
    """Data-independent scalar features of (N, C, H, W) images in [0, 1]."""
    gray = images.mean(axis=1)
    flat = gray.reshape(gray.shape[0], -1)
    gy = np.abs(np.diff(gray, axis=1)).mean(axis=(1, 2)) if gray.shape[1] > 1 else np.zeros(gray.shape[0])
    gx = np.abs(np.diff(gray, axis=2)).mean(axis=(1, 2)) if gray.shape[2] > 1 else np.zeros(gray.shape[0])
    return {
        "mean_intensity": flat.mean(axis=1),
        "intensity_std": flat.std(axis=1),
        "bright_fraction": (flat > 0.7).mean(axis=1),
        "edge_energy": gx + gy,
    }


def clinical_variables(ds: Dataset) -> dict[str, np.ndarray]:
    """The clinical and label variables that enter the association table (see module docstring)."""
    out: dict[str, np.ndarray] = {}
    if ds.clinical is not None:
        for j, col in enumerate(ds.schema.columns):
            v = ds.clinical[:, j].astype(np.float64)
            if col.kind == "numeric" or len(col.categories) == 2:
                out[col.name] = v
            else:
                for c, cat in enumerate(col.categories):
                    out[f"{col.name}={cat}"] = (np.round(v) == c).astype(np.float64)
    if ds.schema.num_classes == 2:
        out["label"] = ds.labels.astype(np.float64)
    else:
        for c, name in enumerate(ds.schema.class_names):
            out[f"label={name}"] = (ds.labels == c).astype(np.float64)
    return out


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation; 0 when either variable is constant."""
    rx, ry = rankdata(x), rankdata(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = np.sqrt((rx**2).sum() * (ry**2).sum())
    return float((rx * ry).sum() / denom) if denom > 0 else 0.0


def association_table(
    ds: Dataset, feature_fn: Callable[[np.ndarray], dict[str, np.ndarray]]
) -> dict[tuple[str, str], float]:
    """Spearman correlation of every (clinical variable, image feature) pair."""
    assert ds.images is not None
    feats = feature_fn(ds.images)
    variables = clinical_variables(ds)
    return {(v, f): spearman(vx, fx) for v, vx in variables.items() for f, fx in feats.items()}


def is_phantom_schema(ds: Dataset) -> bool:
    """True when the data set has images and the phantom's columns (then the true associations are known)."""
    try:
        from fedsynth.data.phantom import PHANTOM_COLUMNS
    except ImportError:
        return False
    return ds.images is not None and ds.schema.column_names == [c.name for c in PHANTOM_COLUMNS]


def known_associations(real: Dataset, synthetic: Dataset) -> list[dict[str, Any]]:
    """The phantom's declared associations, measured in real and synthetic data, with ``kept`` flags.

    kept = the synthetic correlation has the declared sign and at least :data:`KEPT_STRENGTH` of
    the real correlation's strength. Associations that need more classes than the data have are
    left out.
    """
    from fedsynth.data.phantom import PHANTOM_ASSOCIATIONS, covariate_values, phantom_image_features

    assert real.images is not None and synthetic.images is not None
    f_real = phantom_image_features(real.images)
    f_syn = phantom_image_features(synthetic.images)
    out: list[dict[str, Any]] = []
    for assoc in PHANTOM_ASSOCIATIONS:
        if real.schema.num_classes < assoc.min_classes:
            continue
        r = spearman(covariate_values(real, assoc.covariate), f_real[assoc.feature])
        s = spearman(covariate_values(synthetic, assoc.covariate), f_syn[assoc.feature])
        out.append(
            {
                "variable": assoc.covariate,
                "feature": assoc.feature,
                "sign": int(assoc.sign),
                "mechanism": assoc.mechanism,
                "real": r,
                "synthetic": s,
                "real_holds": bool(np.sign(r) == assoc.sign),
                "kept": bool(np.sign(s) == assoc.sign and abs(s) >= KEPT_STRENGTH * abs(r)),
            }
        )
    return out


def association_fidelity(real: Dataset, synthetic: Dataset) -> dict[str, Any]:
    """Compare clinical <-> image associations in real and synthetic data (see module docstring).

    Returns ``available`` (False without both modalities), ``mode`` ("phantom" or "generic"),
    ``features``, ``pairs`` (variable, feature, real, synthetic, abs_diff), ``mean_abs_diff``,
    ``sign_agreement`` (share of pairs with |real| >= 0.1 whose synthetic correlation has the same
    sign) and, on phantom data, ``known`` (the declared associations with ``kept`` flags) and
    ``kept_share``.
    """
    if real.images is None or real.clinical is None or synthetic.images is None:
        return {"available": False, "reason": "needs both an image and a clinical table"}
    phantom = is_phantom_schema(real)
    mode = "phantom" if phantom else "generic"
    feature_fn = generic_image_features
    if phantom:
        from fedsynth.data.phantom import phantom_image_features

        feature_fn = phantom_image_features
    t_real = association_table(real, feature_fn)
    t_syn = association_table(synthetic, feature_fn)
    pairs = [
        {
            "variable": v,
            "feature": f,
            "real": r,
            "synthetic": t_syn[(v, f)],
            "abs_diff": abs(r - t_syn[(v, f)]),
        }
        for (v, f), r in t_real.items()
    ]
    strong = [p for p in pairs if abs(p["real"]) >= MIN_REAL_ASSOCIATION]
    result: dict[str, Any] = {
        "available": True,
        "mode": mode,
        "method": "Spearman rank correlation between clinical variables and image features",
        "features": sorted({p["feature"] for p in pairs}),
        "pairs": pairs,
        "mean_abs_diff": float(np.mean([p["abs_diff"] for p in pairs])) if pairs else None,
        "sign_agreement": (
            float(np.mean([np.sign(p["synthetic"]) == np.sign(p["real"]) for p in strong])) if strong else None
        ),
        "n_strong_real": len(strong),
    }
    if phantom:
        known = known_associations(real, synthetic)
        result["known"] = known
        result["kept_share"] = float(np.mean([k["kept"] for k in known])) if known else None
    return result
