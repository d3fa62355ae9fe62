"""Known-answer tests for fedsynth.evaluation.utility (TSTR / TRTR classifiers)."""

from __future__ import annotations

import numpy as np
import pytest

from fedsynth.data.records import ColumnSpec, Dataset, Schema
from fedsynth.evaluation import utility
from fedsynth.evaluation.utility import pool_images, record_features, train_on_test_on


def _schema(num_classes: int = 2, image: tuple[int, int, int] | None = (1, 8, 8), table: bool = True) -> Schema:
    columns = (
        (
            ColumnSpec("age", "numeric", low=0.0, high=100.0),
            ColumnSpec("sex", "categorical", categories=("f", "m")),
        )
        if table
        else ()
    )
    return Schema(columns=columns, class_names=tuple(f"c{i}" for i in range(num_classes)), image_shape=image)


def _dataset(labels: np.ndarray, rng: np.random.Generator, *, signal: float, num_classes: int = 2) -> Dataset:
    """Records whose image brightness and age depend on the label with strength ``signal``."""
    n = labels.size
    schema = _schema(num_classes)
    shift = labels / max(num_classes - 1, 1)
    images = np.clip(0.5 + signal * (shift[:, None, None, None] - 0.5) + rng.normal(0, 0.1, (n, 1, 8, 8)), 0, 1)
    age = np.clip(50 + signal * 60 * (shift - 0.5) + rng.normal(0, 5, n), 0, 100)
    sex = rng.integers(0, 2, n)
    return Dataset(
        schema=schema,
        labels=labels.astype(np.int64),
        patient_ids=np.array([f"p{i}" for i in range(n)]),
        images=images.astype(np.float32),
        clinical=np.stack([age, sex], axis=1).astype(np.float32),
    )


def _labels(n: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.arange(n) % num_classes).astype(np.int64)


# ---------------------------------------------------------------------------------------------- features


def test_pool_images_averages_blocks_and_keeps_small_images() -> None:
    img = np.arange(32 * 32, dtype=np.float32).reshape(1, 1, 32, 32)
    pooled = pool_images(img)
    assert pooled.shape == (1, 1, 16, 16)
    assert pooled[0, 0, 0, 0] == pytest.approx(img[0, 0, :2, :2].mean())
    assert pooled[0, 0, 15, 15] == pytest.approx(img[0, 0, 30:, 30:].mean())
    small = np.random.default_rng(0).random((2, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(pool_images(small), small, rtol=1e-6)
    odd = np.ones((1, 1, 20, 20), dtype=np.float32)
    np.testing.assert_allclose(pool_images(odd), np.ones((1, 1, 16, 16)), rtol=1e-6)


def test_record_features_scales_with_public_bounds_and_one_hot() -> None:
    schema = _schema(image=None)
    ds = Dataset(
        schema=schema,
        labels=np.array([0, 1, 0]),
        patient_ids=np.array(["a", "b", "c"]),
        clinical=np.array([[25.0, 0], [150.0, 1], [-5.0, 1]], dtype=np.float32),
    )
    feats = record_features(ds)
    np.testing.assert_allclose(feats, [[0.25, 1, 0], [1.0, 0, 1], [0.0, 0, 1]])
    img_ds = _dataset(np.array([0, 1]), np.random.default_rng(0), signal=1.0)
    assert record_features(img_ds).shape == (2, 64 + 3)


# ----------------------------------------------------------------------------------------- known answers


def test_separable_data_gives_mcc_near_one() -> None:
    rng = np.random.default_rng(1)
    train = _dataset(_labels(300, 2, rng), rng, signal=1.0)
    test = _dataset(_labels(200, 2, rng), rng, signal=1.0)
    res = train_on_test_on(train, test, seed=0)
    assert res["mcc"] > 0.95
    assert res["auroc"] > 0.99
    assert res["balanced_accuracy"] > 0.97
    assert res["selected_on"] == "validation split of the training data"
    assert res["n_train"] == 300 and res["n_test"] == 200
    assert set(res["per_family"]) == {"logistic", "random_forest"}
    for fam in res["per_family"].values():
        assert fam["mcc"] > 0.9 and "params" in fam


def test_shuffled_training_labels_give_mcc_near_zero() -> None:
    rng = np.random.default_rng(2)
    train = _dataset(_labels(600, 2, rng), rng, signal=1.0)
    train.labels = rng.permutation(train.labels)
    test = _dataset(_labels(600, 2, rng), rng, signal=1.0)
    # Labels unrelated to the features on both sides. (With informative test labels, a chance
    # correlation of the shuffled training labels with the strong signal direction is amplified
    # into any test MCC between -1 and 1: that is not what this test is about.)
    test.labels = rng.permutation(test.labels)
    res = train_on_test_on(train, test, seed=0)
    assert abs(res["mcc"]) < 0.15
    assert abs(res["auroc"] - 0.5) < 0.1


def test_multiclass_macro_auroc() -> None:
    rng = np.random.default_rng(3)
    train = _dataset(_labels(400, 4, rng), rng, signal=1.0, num_classes=4)
    test = _dataset(_labels(200, 4, rng), rng, signal=1.0, num_classes=4)
    res = train_on_test_on(train, test, seed=1)
    assert res["mcc"] > 0.8 and res["auroc"] > 0.95


def test_selection_never_looks_at_test_labels() -> None:
    """Changing every test label changes the scores but not the selected classifier."""
    rng = np.random.default_rng(4)
    train = _dataset(_labels(300, 2, rng), rng, signal=0.3)
    test = _dataset(_labels(200, 2, rng), rng, signal=0.3)
    flipped = test.subset(np.arange(len(test)))
    flipped.labels = 1 - flipped.labels
    a = train_on_test_on(train, test, seed=0)
    b = train_on_test_on(train, flipped, seed=0)
    assert a["classifier"] == b["classifier"]
    assert a["validation_mcc"] == b["validation_mcc"]
    for fam in a["per_family"]:
        assert a["per_family"][fam]["params"] == b["per_family"][fam]["params"]
        assert (
            a["per_family"][fam]["validation_mcc_per_candidate"] == b["per_family"][fam]["validation_mcc_per_candidate"]
        )
    assert a["mcc"] == pytest.approx(-b["mcc"], abs=1e-9)


def test_selection_scorer_only_sees_training_validation_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    """Instrumented MCC: every call before the final test scoring gets training labels only."""
    rng = np.random.default_rng(5)
    train = _dataset(_labels(200, 2, rng), rng, signal=0.5)
    test = _dataset(_labels(101, 2, rng), rng, signal=0.5)  # odd size: distinguishable from val splits
    calls: list[int] = []
    real = utility.matthews_corrcoef

    def spy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
        calls.append(len(y_true))
        return real(y_true, y_pred)

    monkeypatch.setattr(utility, "matthews_corrcoef", spy)
    train_on_test_on(train, test, seed=0, families=("logistic",))
    n_val = 50
    # three validation fits, then exactly one scoring on the test data, at the very end
    assert calls == [n_val, n_val, n_val, len(test)]


def test_deterministic_per_seed() -> None:
    rng = np.random.default_rng(6)
    train = _dataset(_labels(200, 2, rng), rng, signal=0.4)
    test = _dataset(_labels(100, 2, rng), rng, signal=0.4)
    assert train_on_test_on(train, test, seed=3) == train_on_test_on(train, test, seed=3)


def test_scores_do_not_depend_on_the_order_of_the_training_records() -> None:
    from fedsynth.data.config import DataConfig
    from fedsynth.data.sources.breast_cancer import load_breast_cancer

    table = load_breast_cancer(DataConfig(source="breast_cancer"))
    rng = np.random.default_rng(8)
    order = rng.permutation(len(table))
    train, test = table.subset(order[:300]), table.subset(order[300:])
    first = train_on_test_on(train, test, seed=1)
    for _ in range(3):
        shuffled = train_on_test_on(train.subset(rng.permutation(len(train))), test, seed=1)
        assert shuffled["mcc"] == first["mcc"]
        assert shuffled["per_family"] == first["per_family"]


# ------------------------------------------------------------------------------------- degenerate inputs


def test_class_missing_from_training_is_explained() -> None:
    rng = np.random.default_rng(7)
    train = _dataset(rng.permutation(np.arange(200) % 2), rng, signal=1.0, num_classes=3)
    test = _dataset(_labels(150, 3, rng), rng, signal=1.0, num_classes=3)
    res = train_on_test_on(train, test, seed=0)
    assert res["train_class_counts"][2] == 0
    assert any("absent from the training data" in n for n in res["notes"])
    assert res["auroc"] is not None and 0.0 <= res["auroc"] <= 1.0
    assert res["mcc"] is not None


def test_class_missing_from_test_gives_macro_over_present() -> None:
    rng = np.random.default_rng(8)
    train = _dataset(_labels(300, 3, rng), rng, signal=1.0, num_classes=3)
    test = _dataset(rng.permutation(np.arange(100) % 2), rng, signal=1.0, num_classes=3)
    res = train_on_test_on(train, test, seed=0)
    assert res["auroc"] is not None
    assert any("absent: [2]" in n for n in res["notes"])


def test_single_class_training_data_reports_constant_predictor() -> None:
    rng = np.random.default_rng(9)
    train = _dataset(np.zeros(50, dtype=np.int64), rng, signal=1.0)
    test = _dataset(_labels(40, 2, rng), rng, signal=1.0)
    res = train_on_test_on(train, test, seed=0)
    assert res["auroc"] is None
    assert res["mcc"] == 0.0
    assert res["balanced_accuracy"] == pytest.approx(0.5)
    assert "constant" in res["classifier"]
    assert any("only class 0" in n for n in res["notes"])


def test_tiny_training_data_falls_back_to_defaults() -> None:
    rng = np.random.default_rng(10)
    train = _dataset(np.array([0, 1, 0, 1, 1]), rng, signal=1.0)
    test = _dataset(_labels(40, 2, rng), rng, signal=1.0)
    res = train_on_test_on(train, test, seed=0)
    assert res["family"] == "logistic"
    assert res["params"] == {"C": 1.0}
    assert any("too small to select" in n for n in res["notes"])
    assert any("fewer than 5" in n for n in res["notes"])


def test_single_record_class_stays_in_fit_part() -> None:
    labels = np.array([0] * 20 + [1] * 20 + [2])
    fit, val = utility.stratified_split(labels, 0.25, seed=0)
    assert 40 in fit and 40 not in val
    assert set(np.unique(labels[val])) == {0, 1}
    assert np.intersect1d(fit, val).size == 0 and fit.size + val.size == labels.size


def test_unknown_family_is_rejected() -> None:
    rng = np.random.default_rng(11)
    ds = _dataset(_labels(20, 2, rng), rng, signal=1.0)
    with pytest.raises(ValueError, match="unknown classifier family"):
        train_on_test_on(ds, ds, seed=0, families=("svm",))
