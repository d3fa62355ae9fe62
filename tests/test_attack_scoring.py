"""Scoring of reconstructions: batched SSIM equals skimage's, vector distances, RERO, CDF and plots."""

from __future__ import annotations

import json

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from fedsynth.attacks.scoring import (
    AttackScore,
    cdf,
    exact_recoveries,
    image_distances,
    minmax,
    rero,
    save_cdf_plot,
    save_pair_grid,
    score,
    ssim_matrix,
    ssim_window,
    vector_distances,
)


def skimage_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Reference: skimage on min-max normalized (C, H, W) images, Wang et al.'s settings."""
    a, b = minmax(a[None])[0], minmax(b[None])[0]
    return float(
        structural_similarity(
            a,
            b,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
            channel_axis=0,
            win_size=ssim_window(*a.shape[1:]),
        )
    )


@pytest.mark.parametrize("shape", [(1, 32, 32), (3, 14, 12), (1, 8, 8), (2, 5, 9)])
def test_ssim_equals_skimage(shape: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(0)
    x = rng.random((4, *shape))
    y = rng.random((5, *shape))
    y[0] = x[1] + 0.05 * rng.standard_normal(shape)  # a close pair as well as unrelated ones
    y[1] = 3.0  # a constant image
    ours = ssim_matrix(x, y)
    ref = np.array([[skimage_ssim(a, b) for b in y] for a in x])
    assert np.all(np.isfinite(ours))
    assert np.abs(ours - ref).max() < 1e-6


def test_identical_images_have_distance_zero_and_are_matched() -> None:
    rng = np.random.default_rng(1)
    x = rng.random((6, 16, 16))
    recon = (5.0 * x[::-1] + 2.0).reshape(6, -1)  # flat rows, affine change of brightness and contrast
    dist, idx = image_distances(x, recon)
    assert dist.max() < 1e-9
    assert idx.tolist() == [5, 4, 3, 2, 1, 0]


def test_image_distance_edge_cases() -> None:
    rng = np.random.default_rng(2)
    x = rng.random((3, 1, 12, 12))
    dist, idx = image_distances(x, np.zeros((0, 1, 12, 12)))
    assert np.all(dist == 1.0) and np.all(idx == -1)
    dist, idx = image_distances(x, np.zeros((0, 0)))  # what stack() gives for no reconstruction
    assert np.all(dist == 1.0) and np.all(idx == -1)
    # Anti-correlated images have negative SSIM; the distance is clipped to 1.
    dist, _ = image_distances(x, -x)
    assert np.all(dist <= 1.0) and np.all(dist > 0.5)
    # Constant images: finite, a constant matches a constant exactly.
    const = np.full((2, 12, 12), 7.0)
    dist, _ = image_distances(const, np.full((1, 12, 12), -1.0))
    assert np.allclose(dist, 0.0)
    dist, _ = image_distances(x[:, 0], np.full((1, 12, 12), 0.3))
    assert np.all(np.isfinite(dist)) and np.all(dist > 0.9)
    # Noise is far from the images.
    dist, _ = image_distances(x, rng.random((10, 1, 12, 12)))
    assert np.all(dist > 0.5)
    assert ssim_window(32, 32) == 11 and ssim_window(8, 10) == 7 and ssim_window(6, 6) == 5


def test_vector_distances() -> None:
    true = np.array([[0.0, 0.0], [10.0, 1.0]])
    recon = np.array([[10.0, 0.0], [0.0, 0.5]])
    scale = np.array([10.0, 1.0])
    dist, idx = vector_distances(true, recon, scale)
    assert idx.tolist() == [1, 0]
    assert dist == pytest.approx([0.5 / np.sqrt(2), 1.0 / np.sqrt(2)])
    dist, _ = vector_distances(true, true + 1e-6, 1.0)
    assert dist.max() < 1e-5
    dist, idx = vector_distances(true, np.zeros((0, 2)), scale)
    assert np.all(dist == 1.0) and np.all(idx == -1)
    with pytest.raises(ValueError):
        vector_distances(true, recon, np.array([1.0, 0.0]))
    with pytest.raises(ValueError):
        vector_distances(true, np.zeros((1, 3)), 1.0)


def test_rero_exact_score_and_cdf() -> None:
    d = np.array([0.0, 5e-4, 0.05, 0.2, 0.29, 0.5, 1.0, 0.1])
    assert rero(d, 0.1) == pytest.approx(3 / 8)
    assert rero(d, 0.3) == pytest.approx(6 / 8)
    assert rero(np.array([]), 0.1) == 0.0
    assert exact_recoveries(d) == 2
    assert exact_recoveries(d, tol=0.1) == 3
    s = score(d)
    assert isinstance(s, AttackScore)
    assert (s.rero_01, s.rero_03, s.exact) == (pytest.approx(3 / 8), pytest.approx(6 / 8), 2)
    payload = json.loads(json.dumps(s.to_dict()))
    assert payload["n"] == 8 and payload["exact"] == 2 and len(payload["distances"]) == 8
    xs, share = cdf(d)
    assert np.all(np.diff(xs) >= 0) and share[-1] == 1.0 and share[0] == pytest.approx(1 / 8)


def test_plots_are_written(tmp_path) -> None:
    rng = np.random.default_rng(3)
    gray = rng.random((5, 1, 10, 10))
    closest = np.array([0, 2, -1, 1, 0])
    grid = save_pair_grid(gray, gray[:3] + 0.1, closest, tmp_path / "sub" / "pairs.png", max_pairs=4)
    rgb = rng.random((3, 3, 8, 8))
    grid_rgb = save_pair_grid(rgb, rgb.reshape(3, -1), np.arange(3), tmp_path / "rgb.png", distances=np.zeros(3))
    curves = {"no DP": np.array([0.0, 0.0, 0.4]), "DP": rng.random(20), "empty": np.array([])}
    plot = save_cdf_plot(curves, tmp_path / "cdf.png", "imprint attack")
    for path in (grid, grid_rgb, plot):
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
