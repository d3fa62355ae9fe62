"""load_federation: determinism across processes, unique ids, read-only cache; breast_cancer."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from fedsynth.data import DataConfig, FederatedData, clear_federation_cache, load_federation, load_source
from fedsynth.errors import ConfigError, DataError

SMALL = DataConfig(phantom_records=300, partition="dirichlet", dirichlet_alpha=1.0)


def _fingerprint(fed: FederatedData) -> list[float]:
    out = []
    for ds in (*fed.hospitals, fed.test):
        out += [len(ds), float(ds.images.sum()), float(ds.clinical.sum()), int(ds.labels.sum())]
    return out


def test_deterministic_and_cached():
    clear_federation_cache()
    a = load_federation(SMALL, 3, 7)
    assert load_federation(SMALL, 3, 7) is a  # cached per process
    clear_federation_cache()
    b = load_federation(SMALL, 3, 7)
    assert b is not a
    for x, y in zip((*a.hospitals, a.test), (*b.hospitals, b.test)):
        assert np.array_equal(x.images, y.images) and np.array_equal(x.clinical, y.clinical)
        assert np.array_equal(x.labels, y.labels) and np.array_equal(x.patient_ids, y.patient_ids)
    c = load_federation(SMALL, 3, 8)
    assert _fingerprint(c) != _fingerprint(a)


def test_same_result_in_another_process():
    code = (
        "import json; from fedsynth.data import DataConfig, load_federation;"
        "fed = load_federation(DataConfig(phantom_records=300, partition='dirichlet', dirichlet_alpha=1.0), 3, 7);"
        "print(json.dumps([[len(d), float(d.images.sum()), float(d.clinical.sum()), int(d.labels.sum())]"
        " for d in (*fed.hospitals, fed.test)]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    other = [v for row in json.loads(out) for v in row]
    assert other == _fingerprint(load_federation(SMALL, 3, 7))


def test_cached_arrays_are_read_only():
    fed = load_federation(SMALL, 3, 7)
    with pytest.raises(ValueError):
        fed.hospitals[0].images[0, 0, 0, 0] = 1.0
    sub = fed.hospitals[0].subset(np.arange(3))  # subsets are private copies
    sub.images[0, 0, 0, 0] = 1.0


def test_ids_unique_across_federation_and_nothing_dropped():
    fed = load_federation(SMALL, 4, 1)
    ids = np.concatenate([h.patient_ids for h in fed.hospitals] + [fed.test.patient_ids])
    assert ids.size == 300 and np.unique(ids).size == 300
    assert [h.source for h in fed.hospitals] == [f"phantom hospital {h}" for h in range(4)]
    assert fed.test.source == "phantom test"
    assert fed.schema == fed.test.schema == fed.hospitals[0].schema
    summary = fed.summary()
    assert sum(h["records"] for h in summary["hospitals"]) + summary["test"]["records"] == 300


def test_test_split_does_not_depend_on_hospital_count():
    cfg = DataConfig(source="breast_cancer")
    a = load_federation(cfg, 2, 0).test.patient_ids
    b = load_federation(cfg, 5, 0).test.patient_ids
    assert np.array_equal(a, b)


def test_breast_cancer_source():
    ds = load_source(DataConfig(source="breast_cancer"))
    assert len(ds) == 569 and ds.clinical.shape == (569, 30) and ds.images is None
    assert ds.schema.class_names == ("malignant", "benign")
    assert ds.schema.bounds_source == "public"
    assert ds.schema.column_names[0] == "mean_radius"
    for j, col in enumerate(ds.schema.columns):
        assert col.low <= ds.clinical[:, j].min() and ds.clinical[:, j].max() <= col.high, col.name
    fed = load_federation(DataConfig(source="breast_cancer", partition="quantity"), 3, 0)
    assert fed.hospitals[0].source == "breast_cancer (scikit-learn) hospital 0"
    assert sum(len(h) for h in fed.hospitals) + len(fed.test) == 569


def test_npz_federation(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "tiny.npz"
    np.savez(path, images=rng.integers(0, 256, (60, 10, 10), dtype=np.uint8), labels=np.arange(60) % 3)
    fed = load_federation(DataConfig(source="npz", path=str(path), min_records_per_hospital=5), 3, 0)
    assert [h.source for h in fed.hospitals] == [f"tiny.npz hospital {h}" for h in range(3)]
    assert fed.test.class_counts().tolist() == [4, 4, 4]
    assert fed.schema.image_shape == (1, 32, 32)


def test_too_many_hospitals():
    with pytest.raises(DataError) as err:
        load_federation(DataConfig(phantom_records=100, min_records_per_hospital=10), 20, 0)
    assert "20 hospitals" in str(err.value)


def test_bad_arguments():
    with pytest.raises(ConfigError, match="num_hospitals"):
        load_federation(SMALL, 0, 0)
    with pytest.raises(ConfigError, match="seed"):
        load_federation(SMALL, 2, -1)
