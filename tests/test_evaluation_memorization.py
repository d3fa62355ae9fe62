"""Known-answer tests for the maximum-Pearson-correlation memorization metric."""

from __future__ import annotations

import numpy as np
import pytest

from fedsynth.evaluation import memorization
from fedsynth.evaluation.memorization import max_correlation, memorization_metrics


def _images(n: int, seed: int, size: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 1, size, size)).astype(np.float32)


def test_identical_images_have_max_correlation_one() -> None:
    train = _images(50, 0)
    best, arg = max_correlation(train, train)
    np.testing.assert_allclose(best, 1.0, atol=1e-5)
    np.testing.assert_array_equal(arg, np.arange(50))


def test_correlation_ignores_brightness_and_contrast() -> None:
    train = _images(20, 1)
    rescaled = 0.5 * train[[3, 7]] + 0.2
    best, arg = max_correlation(rescaled, train)
    np.testing.assert_allclose(best, 1.0, atol=1e-5)
    assert arg.tolist() == [3, 7]


def test_independent_images_are_far_below_threshold() -> None:
    best, _ = max_correlation(_images(100, 2), _images(200, 3))
    assert best.max() < 0.5


@pytest.mark.parametrize("copied", [0, 13, 40])
def test_share_above_equals_copied_share(copied: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memorization, "CHUNK", 7)  # exercise chunk boundaries
    train = _images(120, 4)
    fresh = _images(100 - copied, 5)
    synthetic = np.concatenate([fresh, train[:copied]])
    res = memorization_metrics(synthetic, train, _images(60, 6), top_k=5)
    assert res["share_above"] == pytest.approx(copied / 100)
    assert res["n_above"] == copied
    assert res["holdout_share_above"] == 0.0
    if copied:
        assert all(p["correlation"] > 0.999 for p in res["top_pairs"])
        assert {p["train"] for p in res["top_pairs"]} <= set(range(copied))
        # copies all exceed the held-out 99th percentile; a few fresh images may too, by chance
        assert copied / 100 <= res["exceeds_holdout_p99"] <= copied / 100 + 0.1


def test_constant_images_count_as_zero() -> None:
    synthetic = np.concatenate([np.full((2, 1, 16, 16), 0.5, np.float32), _images(3, 7)])
    res = memorization_metrics(synthetic, _images(10, 8))
    assert res["n_constant"] == 2
    assert res["values"]["synthetic"][:2].tolist() == [0.0, 0.0]


def test_template_removes_shared_structure() -> None:
    """Images = common template + individual detail: raw correlations are high, residual ones are not."""
    rng = np.random.default_rng(9)
    template = rng.random((1, 1, 16, 16)).astype(np.float32)

    def patients(n: int) -> np.ndarray:
        return (0.9 * template + 0.1 * rng.random((n, 1, 16, 16))).astype(np.float32)

    train, holdout = patients(100), patients(50)
    synthetic = np.concatenate([patients(40), train[:10]])
    raw = memorization_metrics(synthetic, train, holdout)
    resid = memorization_metrics(synthetic, train, holdout, template=train.mean(axis=0, keepdims=True))
    assert raw["holdout_share_above"] > 0.9  # new patients look like copies on raw correlation
    assert resid["holdout_share_above"] == 0.0
    assert resid["share_above"] == pytest.approx(10 / 50)
    assert resid["excess_share_above"] == pytest.approx(10 / 50)
