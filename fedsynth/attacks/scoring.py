"""How close an attack's reconstructions come to the true records: per-record distances, RERO, plots.

For every true record the distance to its *closest* reconstruction is reported (the attacker does not
know which reconstruction belongs to whom, but a reconstruction that matches anybody leaks that person).

* **Images**: ``1 - SSIM`` with the Gaussian window of Wang et al. ("Image Quality Assessment: From Error
  Visibility to Structural Similarity"): 11 x 11, sigma 1.5, population covariances, ``K1 = 0.01``,
  ``K2 = 0.03``, data range 1, the mean taken over the pixels at least 5 px from the border and over the
  channels. This is ``skimage.metrics.structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1.0)``, computed here batched over all pairs (skimage's
  per-pair call is far too slow for hundreds x hundreds of images); the tests check the two agree. Every
  image (true and reconstructed) is min-max normalized to [0, 1] over all its pixels and channels first,
  so a reconstruction is not penalized for a brightness or contrast change; a constant image becomes
  all 0.5 (no contrast, mid-range), and SSIM stays finite because ``C1, C2 > 0``. Images smaller than
  11 px on a side use the largest odd window that fits (``win_size`` in skimage: the Gaussian filter is
  unchanged, with reflected borders, and only the border strip left out of the mean shrinks). SSIM below
  0 (anti-correlated structure) counts as 0, so distances lie in [0, 1] and 1.0 means no similarity.
* **Vectors** (clinical rows, latent codes): ``||(x - r) / scale||_2 / sqrt(d)`` with a per-feature
  ``scale`` chosen by the caller (public ranges for tables, the standard deviation of the true records
  for latents). With range scaling and values inside the ranges the distance is at most 1.

With no reconstruction at all every record gets distance 1.0 and index -1.

Summaries follow "Robbing the Fed: Directly Obtaining Private Data in Federated Learning with Modified
Models": RERO(eta), the share of records with distance below ``eta`` (0.1 and 0.3 here), and the number of
exact recoveries (distance below ``1e-3``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)

import numpy as np  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from scipy.ndimage import gaussian_filter1d  # noqa: E402

from fedsynth.imaging import display_image  # noqa: E402

#: SSIM parameters of Wang et al. (and skimage with ``gaussian_weights=True``).
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
SSIM_WINDOW = 11
SSIM_K1 = 0.01
SSIM_K2 = 0.03
#: RERO thresholds reported by :func:`score`.
ETAS = (0.1, 0.3)
#: Distance below which a record counts as exactly recovered.
EXACT_TOL = 1e-3
#: Distance given to every record when there is no reconstruction.
NO_MATCH = 1.0
#: Pairwise elements (pairs x pixels) per chunk: small enough to stay in cache, large enough for BLAS.
CHUNK_ELEMENTS = 1 << 20


def _as_images(x: np.ndarray, name: str) -> np.ndarray:
    """(N, C, H, W) or (N, H, W) -> float64 (N, C, H, W)."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4:
        raise ValueError(f"{name} must be (N, C, H, W) or (N, H, W) images, got shape {np.shape(x)}")
    return arr


def minmax(images: np.ndarray) -> np.ndarray:
    """Each image (first axis) scaled to [0, 1] over all its values; constant images become all 0.5."""
    arr = np.asarray(images, dtype=np.float64)
    flat = arr.reshape(arr.shape[0], -1)
    lo = flat.min(axis=1, keepdims=True) if flat.size else np.zeros((arr.shape[0], 1))
    hi = flat.max(axis=1, keepdims=True) if flat.size else np.zeros((arr.shape[0], 1))
    span = hi - lo
    constant = span <= 1e-12 * np.maximum(1.0, np.maximum(np.abs(lo), np.abs(hi)))
    out = np.where(constant, 0.5, (flat - lo) / np.where(constant, 1.0, span))
    return out.reshape(arr.shape)


def ssim_window(height: int, width: int) -> int:
    """Side of the SSIM window: 11, or the largest odd size that fits a smaller image."""
    side = min(height, width, SSIM_WINDOW)
    if side < 1:
        raise ValueError("images must have at least one pixel")
    return side if side % 2 == 1 else side - 1


def _filter_matrix(length: int, pad: int) -> np.ndarray:
    """The 1-D Gaussian filter (reflected borders, as scipy.ndimage) as a matrix, cropped to the kept rows."""
    full = gaussian_filter1d(np.eye(length), SSIM_SIGMA, axis=0, mode="reflect", truncate=SSIM_TRUNCATE)
    return full[pad : length - pad]


class _Filter:
    """Separable Gaussian local means over the cropped region, applied to stacks of (…, H, W) images."""

    def __init__(self, height: int, width: int) -> None:
        pad = (ssim_window(height, width) - 1) // 2
        self.rows = _filter_matrix(height, pad)  # (h, H)
        self.cols_t = np.ascontiguousarray(_filter_matrix(width, pad).T)  # (W, w)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        t = x @ self.cols_t  # (..., H, w)
        return np.matmul(self.rows, t)  # (..., h, w)


def ssim_matrix(true: np.ndarray, reconstructions: np.ndarray, *, normalize: bool = True) -> np.ndarray:
    """SSIM of every true image with every reconstruction, ``(N, M)``, channel-averaged.

    Images are (N, C, H, W) or (N, H, W) with matching trailing shapes; with ``normalize`` each is min-max
    normalized first (see the module docstring). Raw SSIM values in [-1, 1] (no clipping).
    """
    x = _as_images(true, "true")
    y = _as_images(reconstructions, "reconstructions")
    if x.shape[1:] != y.shape[1:]:
        raise ValueError(f"image shapes differ: {x.shape[1:]} vs {y.shape[1:]}")
    if normalize:
        x, y = minmax(x), minmax(y)
    n, m = x.shape[0], y.shape[0]
    if n == 0 or m == 0:
        return np.zeros((n, m))
    _, c, height, width = x.shape
    filt = _Filter(height, width)
    c1, c2 = SSIM_K1**2, SSIM_K2**2  # data range 1
    mx, my = filt(x), filt(y)  # (N, C, h, w), (M, C, h, w)
    vx, vy = filt(x * x) - mx * mx, filt(y * y) - my * my
    # S = (2 mx my + C1)(2 cov + C2) / ((mx^2 + my^2 + C1)(vx + vy + C2)); per-image parts precomputed,
    # the pairwise arrays updated in place (small chunks stay in cache: memory traffic dominates).
    lum_x, lum_y = mx * mx, (my * my + c1)[None]
    var_x, var_y = vx, (vy + c2)[None]
    two_my = (2.0 * my)[None]
    out = np.empty((n, m))
    step = max(1, CHUNK_ELEMENTS // (m * x[0].size))
    for a in range(0, n, step):
        b = min(n, a + step)
        s = filt(x[a:b, None] * y[None])  # local E[xy], (b-a, M, C, h, w)
        two_mxy = mx[a:b, None] * two_my
        s *= 2.0
        s -= two_mxy
        s += c2  # 2 cov + C2
        two_mxy += c1  # 2 mx my + C1
        s *= two_mxy
        den = lum_x[a:b, None] + lum_y
        den *= var_x[a:b, None] + var_y
        s /= den
        out[a:b] = s.mean(axis=(2, 3, 4))
    return out


def _reshape_like(recon: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Flat (M, D) reconstructions reshaped to the true images' trailing shape."""
    recon = np.asarray(recon, dtype=np.float64)
    per = true.shape[1:]
    if recon.ndim == 2 and true.ndim > 2 and recon.shape[1] == int(np.prod(per)):
        return recon.reshape((recon.shape[0], *per))
    if recon.size == 0:
        return np.zeros((0, *per))
    return recon


def image_distances(true: np.ndarray, reconstructions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per true image, ``1 - SSIM`` to its closest reconstruction (clipped to [0, 1]) and that one's index.

    Reconstructions may also be flat ``(M, C*H*W)`` rows (as :func:`fedsynth.attacks.imprint.invert`
    returns them). No reconstructions: distance 1.0 and index -1 for everybody.
    """
    x = _as_images(true, "true")
    y = _as_images(_reshape_like(reconstructions, np.asarray(true)), "reconstructions")
    if y.shape[0] == 0:
        return np.full(x.shape[0], NO_MATCH), np.full(x.shape[0], -1, dtype=np.int64)
    sim = ssim_matrix(x, y)
    best = np.argmax(sim, axis=1)
    dist = np.clip(1.0 - sim[np.arange(x.shape[0]), best], 0.0, 1.0)
    return dist, best.astype(np.int64)


def vector_distances(
    true: np.ndarray, reconstructions: np.ndarray, scale: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray]:
    """Per true row, ``||(x - r) / scale|| / sqrt(d)`` to its closest reconstruction, and that one's index.

    ``scale`` is a positive scalar or one value per feature. No reconstructions: distance 1.0 and index -1.
    """
    x = np.asarray(true, dtype=np.float64)
    x = x.reshape(x.shape[0], -1)
    d = x.shape[1]
    y = np.asarray(reconstructions, dtype=np.float64)
    y = y.reshape(0, d) if y.size == 0 else y.reshape(y.shape[0], -1)
    if y.shape[1] != d:
        raise ValueError(f"reconstructions have {y.shape[1]} features, true records {d}")
    s = np.broadcast_to(np.asarray(scale, dtype=np.float64), (d,))
    if not np.all(s > 0) or not np.all(np.isfinite(s)):
        raise ValueError("scale must be positive and finite for every feature")
    n, m = x.shape[0], y.shape[0]
    if m == 0:
        return np.full(n, NO_MATCH), np.full(n, -1, dtype=np.int64)
    xs, ys = x / s, y / s
    dist = np.empty(n)
    idx = np.empty(n, dtype=np.int64)
    step = max(1, CHUNK_ELEMENTS // max(1, m * d))
    for a in range(0, n, step):
        b = min(n, a + step)
        sq = ((xs[a:b, None, :] - ys[None]) ** 2).sum(axis=2)
        best = np.argmin(sq, axis=1)
        idx[a:b] = best
        dist[a:b] = np.sqrt(sq[np.arange(b - a), best] / max(d, 1))
    return dist, idx


def rero(distances: np.ndarray, eta: float) -> float:
    """Share of records whose distance is below ``eta`` (0 for no records)."""
    d = np.asarray(distances, dtype=np.float64)
    return float(np.mean(d < eta)) if d.size else 0.0


def exact_recoveries(distances: np.ndarray, tol: float = EXACT_TOL) -> int:
    """Number of records recovered exactly (distance below ``tol``)."""
    return int(np.sum(np.asarray(distances, dtype=np.float64) < tol))


@dataclass(frozen=True, eq=False)
class AttackScore:
    """Summary of one attack: per-record distances, RERO at 0.1 and 0.3, and exact recoveries."""

    distances: np.ndarray
    rero_01: float
    rero_03: float
    exact: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (with the per-record distances, so CDFs can be redrawn)."""
        d = np.asarray(self.distances, dtype=np.float64)
        return {
            "n": int(d.size),
            "rero_01": self.rero_01,
            "rero_03": self.rero_03,
            "exact": self.exact,
            "median_distance": float(np.median(d)) if d.size else None,
            "distances": [float(v) for v in d],
        }


def score(distances: np.ndarray) -> AttackScore:
    """RERO(0.1), RERO(0.3) and exact recoveries of per-record distances."""
    d = np.asarray(distances, dtype=np.float64).ravel()
    return AttackScore(
        distances=d, rero_01=rero(d, ETAS[0]), rero_03=rero(d, ETAS[1]), exact=exact_recoveries(d, EXACT_TOL)
    )


def cdf(distances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Empirical CDF: the sorted distances and the share of records at or below each."""
    d = np.sort(np.asarray(distances, dtype=np.float64).ravel())
    return d, np.arange(1, d.size + 1) / max(d.size, 1)


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=90, bbox_inches="tight")
    return path


def save_pair_grid(
    true: np.ndarray,
    reconstructions: np.ndarray,
    closest: np.ndarray,
    path: Path,
    max_pairs: int = 16,
    distances: np.ndarray | None = None,
) -> Path:
    """PNG of the first ``max_pairs`` true images (top row) over their closest reconstructions (bottom row).

    Every image is min-max normalized for display. Column titles give the distance (computed with
    :func:`image_distances` semantics when ``distances`` is not passed); a record without a reconstruction
    (index -1) gets an empty bottom cell.
    """
    x = _as_images(true, "true")
    y = _as_images(_reshape_like(reconstructions, np.asarray(true)), "reconstructions")
    idx = np.asarray(closest, dtype=np.int64).ravel()
    k = max(1, min(max_pairs, x.shape[0]))
    shown = x[:k]
    if distances is None:
        dist = np.full(k, NO_MATCH)
        for j in range(k):
            if 0 <= idx[j] < y.shape[0]:
                dist[j] = float(np.clip(1.0 - ssim_matrix(shown[j : j + 1], y[idx[j] : idx[j] + 1])[0, 0], 0, 1))
    else:
        dist = np.asarray(distances, dtype=np.float64).ravel()[:k]
    fig = Figure(figsize=(1.3 * k + 0.5, 3.0))
    axes = fig.subplots(2, k, squeeze=False)
    for j in range(k):
        img, cmap = display_image(minmax(shown[j : j + 1])[0])
        axes[0, j].imshow(img, cmap=cmap, vmin=0, vmax=1)
        axes[0, j].set_title(f"d={dist[j]:.3f}", fontsize=8)
        if 0 <= idx[j] < y.shape[0]:
            rimg, rcmap = display_image(minmax(y[idx[j] : idx[j] + 1])[0])
            axes[1, j].imshow(rimg, cmap=rcmap, vmin=0, vmax=1)
        for ax in axes[:, j]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("true", fontsize=8)
    axes[1, 0].set_ylabel("closest\nreconstruction", fontsize=8)
    fig.suptitle("True records and their closest reconstructions (d = 1 - SSIM)", fontsize=9)
    return _save(fig, path)


def save_cdf_plot(curves: dict[str, np.ndarray], path: Path, title: str) -> Path:
    """PNG of the empirical CDF of per-record distances, one line per setting, with the RERO thresholds."""
    fig = Figure(figsize=(5.0, 3.5))
    ax = fig.subplots()
    for name, distances in curves.items():
        d, share = cdf(distances)
        if d.size:
            ax.step(np.concatenate([[0.0], d]), np.concatenate([[0.0], share]), where="post", label=name)
    for eta in ETAS:
        ax.axvline(eta, color="gray", linestyle=":", linewidth=0.8)
    ax.set_xlabel("distance to the closest reconstruction")
    ax.set_ylabel("share of records")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(left=0)
    ax.set_title(title, fontsize=10)
    if curves:
        ax.legend(fontsize=8)
    return _save(fig, path)
