"""Known-answer tests for per-column marginals and correlation-matrix differences."""

from __future__ import annotations

import numpy as np
import pytest

from fedsynth.data.records import ColumnSpec, Dataset, Schema
from fedsynth.evaluation.tabular import (
    column_marginals,
    correlation_difference,
    safe_corrcoef,
    tabular_fidelity,
    total_variation,
)

SCHEMA = Schema(
    columns=(
        ColumnSpec("age", "numeric", low=0.0, high=100.0),
        ColumnSpec("sex", "categorical", categories=("f", "m")),
        ColumnSpec("stage", "categorical", categories=("i", "ii", "iii")),
    ),
    class_names=("a", "b", "c"),
    image_shape=None,
)


def _table(n: int, seed: int, *, age_shift: float = 0.0) -> Dataset:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    age = np.clip(30 + 10 * labels + rng.normal(0, 5, n) + age_shift, 0, 100)
    sex = (rng.random(n) < 0.5).astype(float)
    stage = labels.astype(float)
    return Dataset(
        schema=SCHEMA,
        labels=labels.astype(np.int64),
        patient_ids=np.array([f"p{i}" for i in range(n)]),
        clinical=np.stack([age, sex, stage], axis=1).astype(np.float32),
    )


def test_identical_tables_have_zero_distances() -> None:
    ds = _table(500, 0)
    res = tabular_fidelity(ds, ds)
    assert res["available"]
    assert all(c["distance"] == pytest.approx(0.0, abs=1e-12) for c in res["columns"])
    assert res["correlation"]["mean_abs_diff"] == pytest.approx(0.0, abs=1e-12)
    assert res["correlation"]["max_abs_diff"] == pytest.approx(0.0, abs=1e-12)


def test_numeric_shift_gives_shift_over_range() -> None:
    real = np.array([[20.0], [40.0], [60.0]])
    schema = Schema(columns=(ColumnSpec("x", "numeric", 0.0, 100.0),), class_names=("a", "b"), image_shape=None)
    res = column_marginals(real, real + 10.0, schema)
    assert res[0]["distance"] == pytest.approx(0.1)
    # values beyond the public bounds are clipped before comparing
    far = column_marginals(real, real + 1000.0, schema)
    assert far[0]["distance"] == pytest.approx(np.mean([0.8, 0.6, 0.4]))


def test_total_variation_known_values() -> None:
    assert total_variation(np.array([0, 0, 1, 1]), np.array([0, 0, 1, 1]), 2) == 0.0
    assert total_variation(np.array([0, 0, 0]), np.array([1, 1]), 2) == 1.0
    assert total_variation(np.array([0, 1]), np.array([0, 0, 0, 1]), 3) == pytest.approx(0.25)


def test_broken_association_shows_in_correlation_difference() -> None:
    real = _table(800, 1)
    broken = real.subset(np.arange(len(real)))
    broken.labels = np.random.default_rng(2).permutation(broken.labels)  # label no longer drives age/stage
    res = correlation_difference(real, broken)
    assert res["columns"][:2] == ["age", "sex"]
    assert "stage=ii" in res["columns"] and "label=b" in res["columns"]
    assert res["max_abs_diff"] > 0.5
    same_marginals = tabular_fidelity(real, broken)
    assert all(c["distance"] == pytest.approx(0.0, abs=1e-12) for c in same_marginals["columns"])


def test_constant_column_is_reported_not_nan() -> None:
    x = np.stack([np.arange(10.0), np.ones(10)], axis=1)
    corr, constant = safe_corrcoef(x)
    assert constant == [1]
    assert np.isfinite(corr).all() and corr[0, 1] == 0.0 and corr[1, 1] == 1.0


def test_image_only_data_is_not_available() -> None:
    schema = Schema(columns=(), class_names=("a", "b"), image_shape=(1, 4, 4))
    ds = Dataset(
        schema=schema,
        labels=np.array([0, 1]),
        patient_ids=np.array(["a", "b"]),
        images=np.zeros((2, 1, 4, 4), np.float32),
    )
    assert tabular_fidelity(ds, ds)["available"] is False
