"""Cross-modal association fidelity: known answers on the phantom and on generic data."""

from __future__ import annotations

import numpy as np
import pytest

from fedsynth.data.phantom import make_phantom
from fedsynth.data.records import ColumnSpec, Dataset, Schema
from fedsynth.evaluation.associations import association_fidelity, is_phantom_schema, spearman


@pytest.fixture(scope="module")
def phantom() -> Dataset:
    return make_phantom(num_records=300, num_classes=2, image_size=32, seed=0)


def _decoupled(ds: Dataset, seed: int) -> Dataset:
    """Same images, same table rows, but rows paired with the wrong images."""
    perm = np.random.default_rng(seed).permutation(len(ds))
    return Dataset(
        schema=ds.schema,
        labels=ds.labels[perm],
        patient_ids=ds.patient_ids,
        images=ds.images,
        clinical=None if ds.clinical is None else ds.clinical[perm],
    )


def test_phantom_identical_data_keeps_every_known_association(phantom: Dataset) -> None:
    assert is_phantom_schema(phantom)
    res = association_fidelity(phantom, phantom)
    assert res["mode"] == "phantom"
    assert res["mean_abs_diff"] == pytest.approx(0.0, abs=1e-12)
    assert res["sign_agreement"] == 1.0
    assert res["kept_share"] == 1.0
    assert all(k["real_holds"] for k in res["known"])
    assert {k["variable"] for k in res["known"]} >= {"age", "sex", "bmi", "label=active"}


def test_phantom_decoupled_modalities_lose_the_associations(phantom: Dataset) -> None:
    res = association_fidelity(phantom, _decoupled(phantom, 1))
    assert res["kept_share"] <= 0.2
    assert res["mean_abs_diff"] > 0.05


def test_generic_features_for_other_schemas() -> None:
    rng = np.random.default_rng(2)
    n = 300
    dose = rng.uniform(0, 10, n)
    images = np.clip(0.1 + 0.08 * dose[:, None, None, None] + rng.normal(0, 0.02, (n, 1, 8, 8)), 0, 1)
    schema = Schema(columns=(ColumnSpec("dose", "numeric", 0.0, 10.0),), class_names=("a", "b"), image_shape=(1, 8, 8))
    ds = Dataset(
        schema=schema,
        labels=(dose > 5).astype(np.int64),
        patient_ids=np.arange(n).astype(str),
        images=images.astype(np.float32),
        clinical=dose[:, None].astype(np.float32),
    )
    same = association_fidelity(ds, ds)
    assert same["mode"] == "generic" and "known" not in same
    assert same["sign_agreement"] == 1.0
    pair = next(p for p in same["pairs"] if p["variable"] == "dose" and p["feature"] == "mean_intensity")
    assert pair["real"] > 0.95
    broken = association_fidelity(ds, _decoupled(ds, 3))
    pair = next(p for p in broken["pairs"] if p["variable"] == "dose" and p["feature"] == "mean_intensity")
    assert abs(pair["synthetic"]) < 0.2


def test_needs_both_modalities(phantom: Dataset) -> None:
    schema = Schema(columns=(), class_names=("a", "b"), image_shape=phantom.schema.image_shape)
    image_only = Dataset(schema=schema, labels=phantom.labels, patient_ids=phantom.patient_ids, images=phantom.images)
    assert association_fidelity(image_only, image_only)["available"] is False


def test_spearman_constant_is_zero() -> None:
    assert spearman(np.ones(5), np.arange(5.0)) == 0.0
    assert spearman(np.arange(5.0), np.arange(5.0) ** 3) == pytest.approx(1.0)
