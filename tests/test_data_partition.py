"""Partitioners and the held-out test split: determinism, completeness, skew, errors."""

from __future__ import annotations

import numpy as np
import pytest

from fedsynth.data import partition, split_test
from fedsynth.errors import ConfigError, DataError

SCHEMES = ("iid", "dirichlet", "quantity")


def _labels(n: int = 1200, classes: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, classes, n)


def _label_skew(parts: list[np.ndarray], labels: np.ndarray) -> float:
    """Mean total-variation distance of hospital label distributions from the pool's."""
    k = labels.max() + 1
    pool = np.bincount(labels, minlength=k) / labels.size
    tvs = [0.5 * np.abs(np.bincount(labels[p], minlength=k) / p.size - pool).sum() for p in parts]
    return float(np.mean(tvs))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_record_assigned_exactly_once(scheme):
    labels = _labels()
    parts = partition(labels, 7, scheme, np.random.default_rng(1), alpha=0.3, skew=1.0, min_size=10)
    assert len(parts) == 7
    allidx = np.concatenate(parts)
    assert allidx.size == labels.size
    assert np.array_equal(np.sort(allidx), np.arange(labels.size))
    assert all(p.dtype == np.int64 and np.all(np.diff(p) > 0) for p in parts)
    assert min(p.size for p in parts) >= 10


@pytest.mark.parametrize("scheme", SCHEMES)
def test_deterministic_per_seed(scheme):
    labels = _labels()
    a = partition(labels, 5, scheme, np.random.default_rng(42), alpha=0.5)
    b = partition(labels, 5, scheme, np.random.default_rng(42), alpha=0.5)
    c = partition(labels, 5, scheme, np.random.default_rng(43), alpha=0.5)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_dirichlet_skews_labels():
    labels = _labels(3000)
    iid = partition(labels, 8, "iid", np.random.default_rng(0))
    skewed = partition(labels, 8, "dirichlet", np.random.default_rng(0), alpha=0.1, min_size=5)
    mild = partition(labels, 8, "dirichlet", np.random.default_rng(0), alpha=100.0, min_size=5)
    assert _label_skew(iid, labels) < 0.05
    assert _label_skew(skewed, labels) > 0.3
    assert _label_skew(mild, labels) < 0.1


def test_quantity_skews_sizes():
    labels = _labels(3000)
    equal = [p.size for p in partition(labels, 8, "iid", np.random.default_rng(0))]
    skewed = [p.size for p in partition(labels, 8, "quantity", np.random.default_rng(0), skew=1.5, min_size=20)]
    flat = [p.size for p in partition(labels, 8, "quantity", np.random.default_rng(0), skew=0.0)]
    assert max(equal) - min(equal) <= 1 and max(flat) - min(flat) <= 1
    assert np.std(skewed) / np.mean(skewed) > 0.5
    assert min(skewed) >= 20
    # label mix stays close to the pool's
    parts = partition(labels, 4, "quantity", np.random.default_rng(0), skew=1.0, min_size=100)
    assert _label_skew(parts, labels) < 0.1


def test_split_test_stratified_and_disjoint():
    labels = np.repeat([0, 1, 2], [500, 300, 7])
    train, test = split_test(labels, 0.2, np.random.default_rng(0))
    assert np.intersect1d(train, test).size == 0
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(labels.size))
    assert np.bincount(labels[test]).tolist() == [100, 60, 1]
    again = split_test(labels, 0.2, np.random.default_rng(0))
    assert np.array_equal(again[1], test)


def test_split_test_keeps_singleton_class_in_train():
    labels = np.array([0, 0, 0, 0, 1])
    train, test = split_test(labels, 0.5, np.random.default_rng(0))
    assert 4 in train.tolist() and test.size == 2


def test_too_small_dirichlet_partition_names_hospital():
    labels = _labels(60, classes=2)
    with pytest.raises(DataError) as err:
        partition(labels, 6, "dirichlet", np.random.default_rng(0), alpha=0.01, min_size=8)
    msg = str(err.value)
    assert "hospital" in msg and "at least 8 records" in msg and "dirichlet_alpha" in msg


def test_too_few_records_for_hospitals():
    with pytest.raises(DataError) as err:
        partition(_labels(30), 4, "iid", np.random.default_rng(0), min_size=10)
    assert "4 hospitals" in str(err.value) and "fewer hospitals" in str(err.value)


def test_empty_partition_is_an_error():
    # more hospitals than records: some hospital would be empty
    with pytest.raises(DataError) as err:
        partition(np.array([0, 1, 0]), 5, "iid", np.random.default_rng(0))
    assert "5 hospitals" in str(err.value)


def test_bad_arguments():
    with pytest.raises(ConfigError, match="data.partition"):
        partition(_labels(), 2, "random", np.random.default_rng(0))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="num_hospitals"):
        partition(_labels(), 0, "iid", np.random.default_rng(0))
    with pytest.raises(DataError, match="1-D integers"):
        partition(np.zeros((3, 2), dtype=int), 2, "iid", np.random.default_rng(0))


def test_empty_subset_is_a_valid_dataset() -> None:
    import numpy as np

    from fedsynth.data.phantom import make_phantom

    data = make_phantom(40, 2, 32, seed=0)
    empty = data.subset(np.array([], dtype=np.int64))
    assert len(empty) == 0 and empty.images.shape == (0, 1, 32, 32)
