"""Known-answer tests for nearest neighbours, Frechet distance and precision/recall/density/coverage."""

from __future__ import annotations

import numpy as np
import pytest

from fedsynth.evaluation import neighbours
from fedsynth.evaluation.fidelity import fidelity_metrics, frechet_distance, prdc
from fedsynth.evaluation.neighbours import knn, nn_distance, pairwise_distances


def _brute(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))


def test_knn_matches_brute_force_across_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(37, 5)), rng.normal(size=(23, 5))
    monkeypatch.setattr(neighbours, "CHUNK_ENTRIES", 50)  # forces many chunks
    d, idx = knn(a, b, 3)
    full = _brute(a, b)
    np.testing.assert_allclose(d, np.sort(full, axis=1)[:, :3], atol=1e-9)
    np.testing.assert_array_equal(idx[:, 0], np.argmin(full, axis=1))
    np.testing.assert_allclose(pairwise_distances(a, b), full, atol=1e-9)


def test_knn_exclude_self() -> None:
    x = np.array([[0.0], [1.0], [3.0]])
    d, idx = knn(x, x, 1, exclude_self=True)
    np.testing.assert_allclose(d[:, 0], [1.0, 1.0, 2.0])
    np.testing.assert_array_equal(idx[:, 0], [1, 0, 1])
    assert nn_distance(x, x).tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError):
        knn(x, x, 3, exclude_self=True)


def test_frechet_identical_is_zero_and_gaussian_closed_forms() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4000, 4))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)
    # mean shift: |mu|^2 (with covariances equal exactly: shift the same sample)
    assert frechet_distance(x, x + np.array([1.0, 2.0, 0.0, 0.0])) == pytest.approx(5.0, rel=1e-6)
    # scale by 2: covariance C -> 4C gives tr(C + 4C - 2 * 2C) = tr(C); the mean mu -> 2mu adds |mu|^2
    expected = np.trace(np.cov(x, rowvar=False)) + np.sum(x.mean(axis=0) ** 2)
    assert frechet_distance(x, 2.0 * x) == pytest.approx(expected, rel=1e-6)
    # two samples of the same distribution: small
    y = rng.normal(size=(4000, 4))
    assert frechet_distance(x, y) < 0.02


def test_frechet_grows_with_shift_and_needs_two_records() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(500, 3))
    values = [frechet_distance(x, x + s) for s in (0.0, 1.0, 3.0)]
    assert values[0] < values[1] < values[2]
    with pytest.raises(ValueError):
        frechet_distance(x[:1], x)


def test_prdc_identical_data() -> None:
    x = np.random.default_rng(3).normal(size=(300, 4))
    res = prdc(x, x.copy())
    assert res["precision"] == 1.0 and res["recall"] == 1.0 and res["coverage"] == 1.0
    assert 0.8 < res["density"] < 1.5


def test_prdc_disjoint_data() -> None:
    x = np.random.default_rng(4).normal(size=(300, 4))
    res = prdc(x, x + 100.0)
    assert res == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0, "k": 5}


def test_prdc_half_collapsed_synthetic() -> None:
    """Half the synthetic points are real points, half far away: precision 1/2; a collapse lowers recall."""
    rng = np.random.default_rng(5)
    real = rng.normal(size=(400, 3))
    synthetic = np.concatenate([real[:200], real[:200] + 50.0])
    res = prdc(real, synthetic)
    assert res["precision"] == pytest.approx(0.5)
    collapsed = np.repeat(real[:1], 400, axis=0) + rng.normal(0, 1e-3, (400, 3))
    res_c = prdc(real, collapsed)
    assert res_c["recall"] < 0.1 and res_c["coverage"] < 0.1


def test_fidelity_metrics_subsamples() -> None:
    rng = np.random.default_rng(6)
    real, syn = rng.normal(size=(500, 3)), rng.normal(size=(450, 3))
    res = fidelity_metrics(real, syn, seed=0, max_rows=200)
    assert res["n_real"] == 200 and res["n_synthetic"] == 200
    assert res["precision"] > 0.8 and res["recall"] > 0.8
