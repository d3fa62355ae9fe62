"""Downstream utility: train a classifier on one data set, test it on another.

``train_on_test_on(synthetic, real_test)`` is TSTR (train on synthetic, test on real);
``train_on_test_on(real_train, real_test)`` is TRTR, the reference it is compared with.

The protocol avoids the classic pitfall of choosing the classifier by its score on the real test
set: the training data is split into a fit part and a validation part, every candidate
(a small hyper-parameter grid per classifier family) is fitted on the fit part and scored by MCC on
the validation part, the single best candidate is refitted on the whole training data and only then
scored once on the test data. The test set never influences which classifier is reported.

Features are fixed and data-independent (:func:`record_features`): nothing is fitted on the test
data or on the real data when the classifier is trained on synthetic data.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, matthews_corrcoef, roc_auc_score
from threadpoolctl import threadpool_limits

from fedsynth.data.guards import small_test_warning
from fedsynth.data.records import Dataset, Schema

#: Largest side of the pooled image in :func:`record_features`.
MAX_POOLED_SIDE = 16
#: Share of each class of the training data held out for model selection.
VALIDATION_SHARE = 0.25
#: Fewer validation records than this (or fewer than two classes in them): no selection possible.
MIN_VALIDATION_RECORDS = 4

SELECTED_ON = "validation split of the training data"

FAMILIES = ("logistic", "random_forest")


# --------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------


def _adaptive_pool_matrix(size: int, out: int) -> np.ndarray:
    """(out, size) averaging matrix: row i averages input cells floor(i*size/out) .. ceil((i+1)*size/out)."""
    mat = np.zeros((out, size), dtype=np.float64)
    for i in range(out):
        start = (i * size) // out
        end = -((-(i + 1) * size) // out)
        mat[i, start:end] = 1.0 / (end - start)
    return mat


def pool_images(images: np.ndarray, max_side: int = MAX_POOLED_SIDE) -> np.ndarray:
    """Average-pool (N, C, H, W) images to at most ``max_side`` x ``max_side`` (adaptive bins)."""
    _, _, h, w = images.shape
    ph = _adaptive_pool_matrix(h, min(h, max_side))
    pw = _adaptive_pool_matrix(w, min(w, max_side))
    pooled = np.einsum("ih,nchw,jw->ncij", ph, images.astype(np.float64), pw, optimize=True)
    return pooled.astype(np.float32)


def clinical_features(clinical: np.ndarray, schema: Schema) -> np.ndarray:
    """Numeric columns scaled to [0, 1] with the schema's public bounds (clipped); categoricals one-hot."""
    parts: list[np.ndarray] = []
    for j, col in enumerate(schema.columns):
        values = clinical[:, j].astype(np.float64)
        if col.kind == "numeric":
            assert col.low is not None and col.high is not None
            parts.append(np.clip((values - col.low) / (col.high - col.low), 0.0, 1.0)[:, None])
        else:
            codes = np.clip(np.round(values).astype(np.int64), 0, len(col.categories) - 1)
            parts.append(np.eye(len(col.categories))[codes])
    if not parts:
        return np.zeros((clinical.shape[0], 0), dtype=np.float32)
    return np.concatenate(parts, axis=1).astype(np.float32)


def record_features(ds: Dataset) -> np.ndarray:
    """Fixed, data-independent feature vector of each record, for classifiers.

    Images are average-pooled to at most 16 x 16 and flattened (all channels); clinical numeric
    columns are scaled to [0, 1] with the schema's public bounds and clipped; categorical columns
    are one-hot encoded. The parts are concatenated (image first); either may be absent.
    Returns float32 (N, d).
    """
    parts: list[np.ndarray] = []
    if ds.images is not None:
        parts.append(pool_images(ds.images).reshape(len(ds), -1))
    if ds.clinical is not None:
        parts.append(clinical_features(ds.clinical, ds.schema))
    if not parts:
        return np.zeros((len(ds), 0), dtype=np.float32)
    return np.concatenate(parts, axis=1).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Candidates
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """One classifier family with one hyper-parameter setting."""

    family: str
    params: dict[str, Any]

    @property
    def name(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.family}({args})"

    def build(self, seed: int) -> Any:
        if self.family == "logistic":
            return LogisticRegression(C=self.params["C"], max_iter=1000)
        if self.family == "random_forest":
            return RandomForestClassifier(
                n_estimators=self.params["n_estimators"],
                max_depth=self.params["max_depth"],
                min_samples_leaf=self.params["min_samples_leaf"],
                random_state=seed,
                n_jobs=2,
            )
        raise ValueError(f"unknown classifier family {self.family!r} (expected one of {FAMILIES})")


def candidate_grid(family: str) -> list[Candidate]:
    """The small hyper-parameter grid searched for ``family``; the first entry is the default."""
    if family == "logistic":
        return [Candidate("logistic", {"C": c}) for c in (1.0, 0.1, 10.0)]
    if family == "random_forest":
        return [
            Candidate("random_forest", {"n_estimators": 100, "max_depth": d, "min_samples_leaf": 1})
            for d in (None, 4, 8)
        ]
    raise ValueError(f"unknown classifier family {family!r} (expected one of {FAMILIES})")


# --------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------


def _full_proba(model: Any, x: np.ndarray, num_classes: int) -> np.ndarray:
    """Class probabilities as an (N, num_classes) matrix; classes unseen in training get 0."""
    proba = np.zeros((x.shape[0], num_classes), dtype=np.float64)
    proba[:, np.asarray(model.classes_, dtype=np.int64)] = model.predict_proba(x)
    return proba


def macro_auroc(y: np.ndarray, proba: np.ndarray) -> tuple[float | None, str | None]:
    """AUROC: binary, or macro one-vs-rest over the classes present in ``y``.

    Returns (value, note). The value is None when fewer than two classes occur in ``y`` (AUROC is
    undefined); the note says why, or which classes were left out of the macro average.
    """
    num_classes = proba.shape[1]
    present = np.unique(y)
    if present.size < 2:
        return None, f"AUROC undefined: the test data contains only class(es) {present.tolist()}"
    if num_classes == 2:
        return float(roc_auc_score(y == 1, proba[:, 1])), None
    aucs = [float(roc_auc_score(y == c, proba[:, c])) for c in present]
    note = None
    missing = sorted(set(range(num_classes)) - set(present.tolist()))
    if missing:
        note = f"macro AUROC averaged over the classes present in the test data; absent: {missing}"
    return float(np.mean(aucs)), note


def score_predictions(y: np.ndarray, pred: np.ndarray, proba: np.ndarray) -> dict[str, Any]:
    """MCC, AUROC (see :func:`macro_auroc`) and balanced accuracy of predictions on ``y``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mcc = float(matthews_corrcoef(y, pred)) if y.size else math.nan
        bacc = float(balanced_accuracy_score(y, pred)) if y.size else math.nan
    auroc, note = macro_auroc(y, proba) if y.size else (None, "AUROC undefined: empty test data")
    return {
        "mcc": _finite_or_none(mcc),
        "auroc": auroc,
        "balanced_accuracy": _finite_or_none(bacc),
        "note": note,
    }


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def canonical_order(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows sorted by their projection on a fixed direction (then by label), so that the
    fit/validation split and every fit see the same records in the same order whatever order they
    came in: the scores of a data set do not depend on how its records happen to be ordered. A
    projection (not a digest) keeps the order stable under float round-off: two records swap only
    when their projections are closer than the perturbation."""
    direction = np.random.default_rng(0).standard_normal(x.shape[1]) if x.shape[1] else np.zeros(0)
    order = np.lexsort((y, x.astype(np.float64) @ direction))
    return x[order], y[order]


def stratified_split(labels: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (fit, validation), taking ``ceil(share * n_c)`` of each class with n_c >= 2.

    A class with a single record stays entirely in the fit part, so every class of the training
    data is seen when fitting. Deterministic per seed.
    """
    rng = np.random.default_rng(seed)
    fit: list[np.ndarray] = []
    val: list[np.ndarray] = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = math.ceil(share * idx.size) if idx.size >= 2 else 0
        val.append(idx[:n_val])
        fit.append(idx[n_val:])
    fit_idx = np.sort(np.concatenate(fit)) if fit else np.zeros(0, dtype=np.int64)
    val_idx = np.sort(np.concatenate(val)) if val else np.zeros(0, dtype=np.int64)
    return fit_idx.astype(np.int64), val_idx.astype(np.int64)


# --------------------------------------------------------------------------------------------
# Train on X, test on Y
# --------------------------------------------------------------------------------------------


def train_on_test_on(
    train: Dataset,
    test: Dataset,
    *,
    seed: int,
    families: tuple[str, ...] = FAMILIES,
) -> dict[str, Any]:
    """Select a classifier on ``train`` alone, refit it on all of ``train``, score it on ``test``.

    Protocol: ``train`` is split per class into fit (75%) and validation (25%) parts; every
    candidate of every family (:func:`candidate_grid`) is fitted on the fit part and scored by MCC
    on the validation part. Per family, the candidate with the best validation MCC (first in grid
    order on ties) is refitted on the whole of ``train`` and scored on ``test``; the overall
    ``classifier`` is the family winner with the best validation MCC. ``test`` is used only for
    the final scores.

    Returns a JSON-ready dict: ``mcc``, ``auroc`` (binary, or macro one-vs-rest over the classes
    present in ``test``; null when undefined), ``balanced_accuracy``, ``classifier``, ``params``,
    ``selected_on``, ``validation_mcc``, ``n_train``, ``n_test``, ``train_class_counts``,
    ``test_class_counts``, ``per_family`` ({family: {mcc, auroc, balanced_accuracy, params,
    classifier, validation_mcc}}), ``notes`` (why a number is null, why selection fell back to
    defaults, which classes were missing) and ``warnings`` (why the scores must not be read as a
    headline: a test split under ``MIN_TEST_RECORDS_PER_CLASS`` records in some class; empty when
    none). Deterministic per seed.

    BLAS runs single-threaded here: these problems are small, and OpenBLAS's thread start-up made
    logistic regression about 10x slower on two cores.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        return _train_on_test_on(train, test, seed=seed, families=families)


def _train_on_test_on(
    train: Dataset,
    test: Dataset,
    *,
    seed: int,
    families: tuple[str, ...],
) -> dict[str, Any]:
    """The body of :func:`train_on_test_on` (BLAS already limited to one thread)."""
    if not families:
        raise ValueError("families must name at least one classifier family")
    for family in families:
        candidate_grid(family)  # validates the name early
    num_classes = train.schema.num_classes
    x_train, y_train = canonical_order(record_features(train), train.labels.astype(np.int64))
    x_test, y_test = record_features(test), test.labels.astype(np.int64)
    notes: list[str] = []
    train_counts = np.bincount(y_train, minlength=num_classes)
    test_counts = np.bincount(y_test, minlength=num_classes)
    base: dict[str, Any] = {
        "selected_on": SELECTED_ON,
        "n_train": len(train),
        "n_test": len(test),
        "train_class_counts": train_counts.tolist(),
        "test_class_counts": test_counts.tolist(),
        "features": "record_features: images average-pooled to <=16x16, numeric columns scaled by "
        "public bounds, categorical one-hot",
        "warnings": [w for w in [small_test_warning(test_counts, train.schema.class_names)] if w],
    }
    missing_train = [int(c) for c in np.flatnonzero(train_counts == 0)]
    if missing_train:
        notes.append(f"classes {missing_train} are absent from the training data: the classifier never predicts them")
    tiny = [int(c) for c in np.flatnonzero((train_counts > 0) & (train_counts < 5))]
    if tiny:
        notes.append(f"classes {tiny} have fewer than 5 training records: their scores are unreliable")

    present = np.unique(y_train)
    if len(test) == 0:
        notes.append("the test data is empty: no score can be computed")
        return _degenerate(base, families, notes, reason="empty test data")
    if present.size < 2:
        what = "no records" if present.size == 0 else f"only class {int(present[0])}"
        notes.append(
            f"the training data contains {what}: "
            "no classifier can be fitted; the scores are those of a constant predictor and AUROC is null"
        )
        constant = int(present[0]) if present.size else 0
        pred = np.full(len(test), constant, dtype=np.int64)
        scores = score_predictions(y_test, pred, np.zeros((len(test), num_classes)))
        scores["auroc"] = None
        return _degenerate(base, families, notes, reason="one class in training data", scores=scores, constant=constant)

    fit_idx, val_idx = stratified_split(y_train, VALIDATION_SHARE, seed)
    can_select = val_idx.size >= MIN_VALIDATION_RECORDS and np.unique(y_train[val_idx]).size >= 2
    if not can_select:
        notes.append(
            f"the validation split has {val_idx.size} records / {np.unique(y_train[val_idx]).size} classes: "
            "too small to select on; each family's default hyper-parameters were used and the first "
            "family reported"
        )

    per_family: dict[str, dict[str, Any]] = {}
    winners: list[tuple[float, int, str]] = []
    for order, family in enumerate(families):
        grid = candidate_grid(family)
        best, best_val = grid[0], -math.inf
        val_scores: dict[str, float | None] = {}
        if can_select:
            for cand in grid:
                model = cand.build(seed).fit(x_train[fit_idx], y_train[fit_idx])
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    val_mcc = float(matthews_corrcoef(y_train[val_idx], model.predict(x_train[val_idx])))
                val_scores[cand.name] = val_mcc
                if val_mcc > best_val:
                    best, best_val = cand, val_mcc
        model = best.build(seed).fit(x_train, y_train)
        proba = _full_proba(model, x_test, num_classes)
        pred = np.asarray(model.classes_, dtype=np.int64)[np.argmax(model.predict_proba(x_test), axis=1)]
        scores = score_predictions(y_test, pred, proba)
        per_family[family] = {
            "mcc": scores["mcc"],
            "auroc": scores["auroc"],
            "balanced_accuracy": scores["balanced_accuracy"],
            "classifier": best.name,
            "params": dict(best.params),
            "validation_mcc": best_val if can_select else None,
            "validation_mcc_per_candidate": val_scores,
        }
        if scores["note"] and scores["note"] not in notes:
            notes.append(scores["note"])
        winners.append((best_val if can_select else -float(order), -order, family))

    chosen = max(winners)[2]
    result = dict(base)
    result.update(
        mcc=per_family[chosen]["mcc"],
        auroc=per_family[chosen]["auroc"],
        balanced_accuracy=per_family[chosen]["balanced_accuracy"],
        classifier=per_family[chosen]["classifier"],
        family=chosen,
        params=per_family[chosen]["params"],
        validation_mcc=per_family[chosen]["validation_mcc"],
        per_family=per_family,
        notes=notes,
    )
    return result


def _degenerate(
    base: dict[str, Any],
    families: tuple[str, ...],
    notes: list[str],
    *,
    reason: str,
    scores: dict[str, Any] | None = None,
    constant: int | None = None,
) -> dict[str, Any]:
    """Result when no classifier can be fitted or scored: constant predictor or all-null scores."""
    scores = scores or {"mcc": None, "auroc": None, "balanced_accuracy": None}
    name = f"constant(class={constant})" if constant is not None else f"none ({reason})"
    entry = {
        "mcc": scores["mcc"],
        "auroc": scores["auroc"],
        "balanced_accuracy": scores["balanced_accuracy"],
        "classifier": name,
        "params": {},
        "validation_mcc": None,
        "validation_mcc_per_candidate": {},
    }
    result = dict(base)
    result.update(
        mcc=entry["mcc"],
        auroc=entry["auroc"],
        balanced_accuracy=entry["balanced_accuracy"],
        classifier=name,
        family=None,
        params={},
        validation_mcc=None,
        per_family={f: dict(entry) for f in families},
        notes=notes,
    )
    return result
