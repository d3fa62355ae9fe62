"""Feature spaces and 2-D views."""

from __future__ import annotations

import numpy as np
import pytest

from fedsynth.data.records import ColumnSpec, Dataset, Schema
from fedsynth.evaluation.embedding import embedding_view, pca_2d
from fedsynth.evaluation.features import fit_embedding, pixel_space


def _ds(n: int, seed: int, *, image: bool = True, table: bool = True) -> Dataset:
    rng = np.random.default_rng(seed)
    cols = (
        (ColumnSpec("age", "numeric", 0.0, 100.0), ColumnSpec("sex", "categorical", categories=("f", "m")))
        if table
        else ()
    )
    schema = Schema(columns=cols, class_names=("a", "b"), image_shape=(1, 20, 20) if image else None)
    return Dataset(
        schema=schema,
        labels=rng.integers(0, 2, n).astype(np.int64),
        patient_ids=np.arange(n).astype(str),
        images=rng.random((n, 1, 20, 20)).astype(np.float32) if image else None,
        clinical=np.stack([rng.uniform(20, 80, n), rng.integers(0, 2, n)], axis=1).astype(np.float32)
        if table
        else None,
    )


@pytest.mark.parametrize(("image", "table"), [(True, True), (True, False), (False, True)])
def test_embedding_space_is_fitted_on_holdout_and_deterministic(image: bool, table: bool) -> None:
    holdout, other = _ds(60, 0, image=image, table=table), _ds(30, 1, image=image, table=table)
    a = fit_embedding(holdout, seed=0)
    b = fit_embedding(holdout, seed=0)
    np.testing.assert_array_equal(a.transform(other), b.transform(other))
    z = a.transform(other)
    assert z.shape == (30, a.dim) and a.dim <= 32
    # centred on the held-out records
    np.testing.assert_allclose(a.transform(holdout).mean(axis=0), 0.0, atol=1e-4)
    assert a.describe()["fitted_on"] == "held-out real split"


def test_modalities_have_equal_total_variance() -> None:
    holdout = _ds(200, 2)
    space = fit_embedding(holdout, seed=0, dim=1000)
    from fedsynth.evaluation.features import modality_blocks

    x, n_img = modality_blocks(holdout)
    scaled = x * space.scales
    assert scaled[:, :n_img].var(axis=0).sum() == pytest.approx(1.0, rel=1e-6)
    assert scaled[:, n_img:].var(axis=0).sum() == pytest.approx(1.0, rel=1e-3)


def test_pixel_space_is_full_resolution() -> None:
    ds = _ds(5, 3)
    assert pixel_space(ds).shape == (5, 400)
    assert pixel_space(_ds(5, 3, image=False)).shape == (5, 3)


def test_views() -> None:
    rng = np.random.default_rng(4)
    real, syn = rng.normal(size=(80, 6)), rng.normal(size=(50, 6))
    r, s, var = pca_2d(real, syn, seed=0)
    assert r.shape == (80, 2) and s.shape == (50, 2) and len(var) == 2
    view = embedding_view(real, syn, seed=0, tsne=True, max_points=60)
    assert view["tsne"]["real"].shape[1] == 2
    assert view["tsne"]["real"].shape[0] + view["tsne"]["synthetic"].shape[0] == 60
    assert "tsne" not in embedding_view(real, syn, seed=0, tsne=False)
