"""The phantom: determinism, shapes, speed, learnability per modality, built-in associations."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import matthews_corrcoef
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fedsynth.data import DataConfig, load_federation, make_phantom, measure_associations, phantom_image_features
from fedsynth.data.phantom import (
    FEATURE_NAMES,
    PHANTOM_ASSOCIATIONS,
    draw_scanner,
    phantom_dataset,
    sample_cohort,
)


@pytest.fixture(scope="module")
def fed2():
    return load_federation(DataConfig(), 3, 0)


@pytest.fixture(scope="module")
def fed3():
    return load_federation(DataConfig(phantom_classes=3, phantom_records=1200), 3, 0)


def _train(fed):
    return (
        np.concatenate([h.images for h in fed.hospitals]),
        np.concatenate([h.clinical for h in fed.hospitals]),
        np.concatenate([h.labels for h in fed.hospitals]),
    )


def _pool2(images: np.ndarray) -> np.ndarray:
    n, _, s, _ = images.shape
    return images.reshape(n, s // 2, 2, s // 2, 2).mean(axis=(2, 4)).reshape(n, -1)


def test_deterministic_per_seed():
    a = make_phantom(200, 2, 32, seed=3)
    b = make_phantom(200, 2, 32, seed=3)
    c = make_phantom(200, 2, 32, seed=4)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.clinical, b.clinical)
    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.patient_ids, b.patient_ids)
    assert not np.array_equal(a.images, c.images)


def test_shapes_schema_and_ranges():
    ds = make_phantom(300, 3, 48, seed=0)
    assert ds.images.shape == (300, 1, 48, 48) and ds.images.dtype == np.float32
    assert 0.0 <= ds.images.min() and ds.images.max() <= 1.0
    assert ds.clinical.shape == (300, 6)
    schema = ds.schema
    assert schema.column_names == ["age", "sex", "bmi", "disease_duration_years", "crp_mg_l", "smoker"]
    assert schema.class_names == ("inactive", "active", "structural")
    assert schema.bounds_source == "public"
    for j, col in enumerate(schema.columns):
        if col.kind == "numeric":
            assert col.low <= ds.clinical[:, j].min() and ds.clinical[:, j].max() <= col.high
    counts = ds.class_counts()
    assert counts.min() > 0.2 * counts.sum()  # roughly balanced classes
    assert len(set(ds.patient_ids.tolist())) == 300


def test_renders_fast():
    cohort = sample_cohort(1800, 2, np.random.default_rng(0))
    start = time.perf_counter()
    phantom_dataset(cohort, np.arange(1800), draw_scanner(0, 0, 0.3), np.random.default_rng(1), 32, 2, "t")
    assert time.perf_counter() - start < 3.0


def test_hospitals_have_own_scanner(fed2):
    s0, s1 = draw_scanner(0, 0, 0.3), draw_scanner(0, 1, 0.3)
    assert s0 == draw_scanner(0, 0, 0.3) and s0 != s1
    assert draw_scanner(0, 5, 0.0) == draw_scanner(1, 2, 0.0)  # no shift: reference scanner
    air = [h.images[:, 0, :, -1].mean() for h in fed2.hospitals]  # background beyond the skin
    assert np.ptp(air) > 0.005


def test_label_learnable_from_image_alone(fed2):
    images, _, labels = _train(fed2)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=300)).fit(_pool2(images), labels)
    mcc = matthews_corrcoef(fed2.test.labels, model.predict(_pool2(fed2.test.images)))
    assert mcc > 0.6, mcc


def test_label_learnable_from_table_alone(fed2):
    _, table, labels = _train(fed2)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(table, labels)
    mcc = matthews_corrcoef(fed2.test.labels, model.predict(fed2.test.clinical))
    assert mcc > 0.55, mcc


def test_three_classes_learnable_from_measured_image_features(fed3):
    images, _, labels = _train(fed3)

    def feats(x):
        f = phantom_image_features(x)
        return np.stack([f[k] for k in FEATURE_NAMES], axis=1)

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(feats(images), labels)
    mcc = matthews_corrcoef(fed3.test.labels, model.predict(feats(fed3.test.images)))
    assert mcc > 0.5, mcc


@pytest.mark.parametrize("which", ["fed2", "fed3"])
def test_declared_associations_hold(which, request):
    fed = request.getfixturevalue(which)
    for ds in (*fed.hospitals, fed.test):
        results = measure_associations(ds)
        expected = [a for a in PHANTOM_ASSOCIATIONS if ds.schema.num_classes >= a.min_classes]
        assert [r.association for r in results] == expected
        for r in results:
            assert r.holds and abs(r.correlation) > 0.3, (ds.source, r)


def test_associations_absent_when_image_is_unrelated(fed2):
    ds = fed2.test.subset(np.arange(len(fed2.test)))
    ds.images = ds.images[np.random.default_rng(0).permutation(len(ds))]  # break the pairing
    assert max(abs(r.correlation) for r in measure_associations(ds)) < 0.2


def test_features_at_other_sizes_and_layouts():
    ds = make_phantom(400, 2, 64, seed=1)
    f64 = phantom_image_features(ds.images)
    f_hw = phantom_image_features(ds.images[:, 0])
    assert set(f64) == set(FEATURE_NAMES)
    assert all(np.allclose(f64[k], f_hw[k]) for k in FEATURE_NAMES)
    assert all(r.holds for r in measure_associations(ds))


def test_federation_test_split_uses_hospital_scanners(fed2):
    # test records are rendered with the hospitals' scanners, so their background level matches
    # one of the hospitals' levels
    levels = np.array([h.images[:, 0, :, -1].mean() for h in fed2.hospitals])
    test_level = fed2.test.images[:, 0, :, -1].mean()
    assert levels.min() - 0.01 <= test_level <= levels.max() + 0.01
