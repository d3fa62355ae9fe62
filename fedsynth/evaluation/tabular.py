"""Per-column fidelity of the clinical table and of the correlations between columns.

Marginals, column by column:

- numeric: the 1-Wasserstein (earth mover's) distance between the real and the synthetic values
  after scaling both with the column's *public* bounds to [0, 1] (clipped). 0 = identical
  distributions, 1 = all mass moved from one bound to the other; 0.1 means "on average a tenth of
  the column's range apart". Means and standard deviations (in original units) are reported too.
- categorical: the total variation distance between the category frequencies,
  ``0.5 * sum_c |p_real(c) - p_synth(c)|`` (0 = same frequencies, 1 = disjoint categories).

Correlations: the Pearson correlation matrix over the table's columns plus the class label, real vs
synthetic. Numeric columns enter as values, binary categoricals as their code, categoricals with
more than two categories (and a label with more than two classes) as one indicator per category.
A constant column has no correlation: its entries are set to 0 and listed in ``constant``.
The summary is the mean and max absolute difference over the off-diagonal entries.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import wasserstein_distance

from fedsynth.data.records import Dataset, Schema


def scaled_numeric(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Values scaled to [0, 1] with the public bounds, clipped."""
    return np.clip((np.asarray(values, dtype=np.float64) - low) / (high - low), 0.0, 1.0)


def total_variation(p_codes: np.ndarray, q_codes: np.ndarray, num_categories: int) -> float:
    """Total variation distance between the category frequencies of two code arrays."""
    p = np.bincount(np.round(p_codes).astype(np.int64), minlength=num_categories)[:num_categories]
    q = np.bincount(np.round(q_codes).astype(np.int64), minlength=num_categories)[:num_categories]
    if p.sum() == 0 or q.sum() == 0:
        return float("nan")
    return float(0.5 * np.abs(p / p.sum() - q / q.sum()).sum())


def column_marginals(real: np.ndarray, synthetic: np.ndarray, schema: Schema) -> list[dict]:
    """One entry per column: name, kind, metric name and value, plus summary statistics."""
    out: list[dict] = []
    for j, col in enumerate(schema.columns):
        r, s = real[:, j].astype(np.float64), synthetic[:, j].astype(np.float64)
        if col.kind == "numeric":
            assert col.low is not None and col.high is not None
            dist = float(
                wasserstein_distance(scaled_numeric(r, col.low, col.high), scaled_numeric(s, col.low, col.high))
            )
            out.append(
                {
                    "column": col.name,
                    "kind": "numeric",
                    "metric": "wasserstein_scaled",
                    "distance": dist,
                    "real_mean": float(r.mean()),
                    "synthetic_mean": float(s.mean()),
                    "real_std": float(r.std()),
                    "synthetic_std": float(s.std()),
                }
            )
        else:
            k = len(col.categories)
            pr = np.bincount(np.round(r).astype(np.int64), minlength=k)[:k] / max(1, r.size)
            ps = np.bincount(np.round(s).astype(np.int64), minlength=k)[:k] / max(1, s.size)
            out.append(
                {
                    "column": col.name,
                    "kind": "categorical",
                    "metric": "total_variation",
                    "distance": total_variation(r, s, k),
                    "categories": list(col.categories),
                    "real_freq": pr.tolist(),
                    "synthetic_freq": ps.tolist(),
                }
            )
    return out


def correlation_columns(ds: Dataset) -> tuple[list[str], np.ndarray]:
    """Names and values of the variables entering the correlation matrix (see module docstring)."""
    names: list[str] = []
    cols: list[np.ndarray] = []
    schema = ds.schema
    if ds.clinical is not None:
        for j, col in enumerate(schema.columns):
            v = ds.clinical[:, j].astype(np.float64)
            if col.kind == "numeric" or len(col.categories) == 2:
                names.append(col.name)
                cols.append(v)
            else:
                for c, cat in enumerate(col.categories):
                    names.append(f"{col.name}={cat}")
                    cols.append((np.round(v) == c).astype(np.float64))
    if schema.num_classes == 2:
        names.append("label")
        cols.append(ds.labels.astype(np.float64))
    else:
        for c, cname in enumerate(schema.class_names):
            names.append(f"label={cname}")
            cols.append((ds.labels == c).astype(np.float64))
    return names, np.stack(cols, axis=1) if cols else np.zeros((len(ds), 0))


def safe_corrcoef(x: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Pearson correlation matrix of the columns of ``x``; constant columns get 0 (and are returned)."""
    x = np.asarray(x, dtype=np.float64)
    xc = x - x.mean(axis=0)
    norm = np.sqrt((xc**2).sum(axis=0))
    constant = [int(i) for i in np.flatnonzero(norm < 1e-12)]
    norm[norm < 1e-12] = np.inf
    z = xc / norm
    corr = z.T @ z
    np.fill_diagonal(corr, 1.0)
    return np.clip(corr, -1.0, 1.0), constant


def correlation_difference(real: Dataset, synthetic: Dataset) -> dict:
    """Correlation matrices (table columns + label) real vs synthetic and their difference."""
    names, xr = correlation_columns(real)
    _, xs = correlation_columns(synthetic)
    cr, const_r = safe_corrcoef(xr)
    cs, const_s = safe_corrcoef(xs)
    diff = np.abs(cr - cs)
    off = ~np.eye(len(names), dtype=bool)
    return {
        "columns": names,
        "real": cr.tolist(),
        "synthetic": cs.tolist(),
        "mean_abs_diff": float(diff[off].mean()) if off.any() else 0.0,
        "max_abs_diff": float(diff[off].max()) if off.any() else 0.0,
        "constant_real": [names[i] for i in const_r],
        "constant_synthetic": [names[i] for i in const_s],
    }


def tabular_fidelity(real: Dataset, synthetic: Dataset) -> dict:
    """Per-column marginal distances and correlation-matrix difference (None parts for image-only data)."""
    if real.clinical is None or synthetic.clinical is None:
        return {"available": False, "reason": "the data set has no clinical table"}
    marg = column_marginals(real.clinical, synthetic.clinical, real.schema)
    numeric = [m["distance"] for m in marg if m["kind"] == "numeric"]
    categorical = [m["distance"] for m in marg if m["kind"] == "categorical"]
    return {
        "available": True,
        "columns": marg,
        "mean_wasserstein_numeric": float(np.mean(numeric)) if numeric else None,
        "mean_tv_categorical": float(np.mean(categorical)) if categorical else None,
        "correlation": correlation_difference(real, synthetic),
    }
