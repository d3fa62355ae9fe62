"""Matplotlib figures of the report, returned as base64 PNG data URIs (Agg backend, no display).

Each function takes plain arrays/dicts and returns ``data:image/png;base64,...`` so the HTML page
embeds every figure and works offline. No global matplotlib state is changed beyond selecting the
Agg backend for figures created here (``matplotlib.figure.Figure`` is used directly, never pyplot).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)

import numpy as np  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from fedsynth.imaging import display_image  # noqa: E402

REAL_COLOR = "#1f77b4"
SYN_COLOR = "#d62728"
HOLD_COLOR = "#2ca02c"
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def to_data_uri(fig: Figure, dpi: int = 90) -> str:
    """Render a figure to a PNG data URI."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _fig(width: float, height: float, ncols: int = 1, nrows: int = 1, layout: str | None = None) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width, height), layout=layout)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def bar_chart(labels: Sequence[str], series: dict[str, Sequence[float | None]], *, title: str, ylabel: str) -> str:
    """Grouped bars: one group per label, one bar per series (None plotted as missing)."""
    fig, axes = _fig(max(4.0, 0.9 * len(labels) * max(1, len(series)) + 1.5), 3.0)
    ax = axes[0, 0]
    width = 0.8 / max(1, len(series))
    x = np.arange(len(labels))
    for i, (name, values) in enumerate(series.items()):
        vals = np.array([np.nan if v is None else float(v) for v in values])
        ax.bar(x + (i - (len(series) - 1) / 2) * width, vals, width, label=name, color=PALETTE[i % len(PALETTE)])
    ax.set_xticks(x, labels)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if len(series) > 1:
        ax.legend(fontsize=8)
    ax.axhline(0, color="k", lw=0.5)
    return to_data_uri(fig)


def training_curves(metrics: list[dict[str, Any]]) -> str | None:
    """One panel per numeric metric of metrics.jsonl: a line per hospital (and the server)."""
    keys: list[str] = []
    for m in metrics:
        for k, v in m.items():
            if k in ("kind", "round", "hospital") or isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            if k not in keys:
                keys.append(k)
    keys = keys[:12]
    if not keys:
        return None
    ncols = min(3, len(keys))
    nrows = int(np.ceil(len(keys) / ncols))
    fig, axes = _fig(4.0 * ncols, 2.6 * nrows, ncols, nrows)
    for i, key in enumerate(keys):
        ax = axes[i // ncols, i % ncols]
        series: dict[str, list[tuple[float, float]]] = {}
        for m in metrics:
            if key in m and isinstance(m[key], (int, float)) and "round" in m:
                who = f"hospital {m.get('hospital')}" if m.get("kind") == "hospital" else str(m.get("kind", "?"))
                series.setdefault(who, []).append((float(m["round"]), float(m[key])))
        for j, (who, pts) in enumerate(sorted(series.items())):
            pts.sort()
            ax.plot(
                [p[0] for p in pts],
                [p[1] for p in pts],
                marker=".",
                label=who,
                color=PALETTE[j % len(PALETTE)],
            )
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("round", fontsize=8)
        if i == 0:
            ax.legend(fontsize=7)
    for i in range(len(keys), nrows * ncols):
        axes[i // ncols, i % ncols].axis("off")
    fig.tight_layout()
    return to_data_uri(fig)


def histograms(
    samples: dict[str, np.ndarray], *, title: str, xlabel: str, vline: float | None = None, bins: int = 40
) -> str:
    """Overlaid density histograms of several 1-D samples on common bins."""
    fig, axes = _fig(5.5, 3.0)
    ax = axes[0, 0]
    finite = [np.asarray(v, dtype=np.float64)[np.isfinite(v)] for v in samples.values()]
    lo = min((v.min() for v in finite if v.size), default=0.0)
    hi = max((v.max() for v in finite if v.size), default=1.0)
    if vline is not None:
        lo, hi = min(lo, vline), max(hi, vline)
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    colors = [SYN_COLOR, HOLD_COLOR, REAL_COLOR, *PALETTE]
    for i, (name, v) in enumerate(zip(samples, finite, strict=True)):
        ax.hist(
            v,
            bins=edges,
            density=True,
            alpha=0.5,
            label=f"{name} (n={v.size})",
            color=colors[i % len(colors)],
        )
    if vline is not None:
        ax.axvline(vline, color="k", ls="--", lw=1)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    return to_data_uri(fig)


def image_pairs(
    top: np.ndarray, bottom: np.ndarray, captions: Sequence[str], *, top_label: str, bottom_label: str
) -> str:
    """Columns of image pairs: ``top[i]`` above ``bottom[i]``, caption under each column."""
    n = top.shape[0]
    fig, axes = _fig(1.5 * max(n, 1), 3.4, max(n, 1), 2)
    for i in range(n):
        for row, imgs in enumerate((top, bottom)):
            ax = axes[row, i]
            img, cmap = display_image(imgs[i])
            ax.imshow(img, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[1, i].set_xlabel(captions[i], fontsize=8)
    axes[0, 0].set_ylabel(top_label, fontsize=8)
    axes[1, 0].set_ylabel(bottom_label, fontsize=8)
    fig.tight_layout()
    return to_data_uri(fig)


def image_grid(images: np.ndarray, labels: np.ndarray, class_names: Sequence[str], *, title: str) -> str:
    """One row per class, up to the number of images given per class."""
    rows = [np.flatnonzero(labels == c) for c in range(len(class_names))]
    ncols = max(1, max((r.size for r in rows), default=1))
    fig, axes = _fig(1.2 * ncols, 1.25 * len(class_names) + 0.4, ncols, len(class_names))
    for c, idx in enumerate(rows):
        for j in range(ncols):
            ax = axes[c, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j < idx.size:
                img, cmap = display_image(images[idx[j]])
                ax.imshow(img, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
            else:
                ax.axis("off")
        axes[c, 0].set_ylabel(class_names[c], fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return to_data_uri(fig)


def side_by_side_figure(
    real: np.ndarray,
    real_labels: np.ndarray,
    synthetic: np.ndarray,
    synthetic_labels: np.ndarray,
    class_names: Sequence[str],
    means: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    per_class: int = 6,
) -> Figure:
    """Per class, one row: the class's mean real image and real samples, then the mean synthetic
    image and synthetic samples. ``means`` (real, synthetic), each (K, C, H, W), are the class
    means over whole data sets; without them, the means of the images given."""
    ncols = 2 * (per_class + 1)
    nrows = len(class_names)
    fig, axes = _fig(0.95 * ncols + 0.6, 1.1 * nrows + 0.6, ncols, nrows)
    for c, name in enumerate(class_names):
        sets = ((real, real_labels, "real"), (synthetic, synthetic_labels, "synthetic"))
        for half, (images, labels, role) in enumerate(sets):
            idx = np.flatnonzero(labels == c)
            mean = means[half][c] if means is not None else (images[idx].mean(axis=0) if idx.size else None)
            panels = [(mean, f"{role} mean")]
            panels += [(images[i], role) for i in idx[:per_class]]
            for j in range(per_class + 1):
                ax = axes[c, half * (per_class + 1) + j]
                ax.set_xticks([])
                ax.set_yticks([])
                image, title = panels[j] if j < len(panels) else (None, "")
                if image is None:
                    ax.axis("off")
                    continue
                shown, cmap = display_image(image)
                ax.imshow(shown, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
                if c == 0 and j <= 1:
                    ax.set_title(title, fontsize=7)
                if j == 0:
                    for spine in ax.spines.values():
                        spine.set_edgecolor(REAL_COLOR if half == 0 else SYN_COLOR)
                        spine.set_linewidth(2)
        axes[c, 0].set_ylabel(name, fontsize=8)
    fig.suptitle("real (left) and synthetic (right) per class: class mean, then samples", fontsize=9)
    fig.tight_layout()
    return fig


def side_by_side_of(arrays: dict[str, np.ndarray], class_names: Sequence[str]) -> Figure:
    """The side-by-side figure from the report's arrays (sample grids and class mean images)."""
    return side_by_side_figure(
        arrays["grid_real_images"],
        arrays["grid_real_labels"],
        arrays["grid_synthetic_images"],
        arrays["grid_synthetic_labels"],
        class_names,
        (arrays["class_mean_real"], arrays["class_mean_synthetic"]),
    )


def save_png(fig: Figure, path: Any, dpi: int = 110) -> None:
    """Write a figure to a PNG file."""
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=dpi, bbox_inches="tight")


def roc_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], *, title: str) -> str:
    """ROC curves of membership-inference attacks from (member scores, non-member scores)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    fig, axes = _fig(4.0, 3.6)
    ax = axes[0, 0]
    for i, (name, (members, nonmembers)) in enumerate(curves.items()):
        y = np.concatenate([np.ones(members.size), np.zeros(nonmembers.size)])
        s = np.concatenate([members, nonmembers])
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y, s):.3f})", color=PALETTE[i % len(PALETTE)])
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("false-positive rate (non-members flagged)")
    ax.set_ylabel("true-positive rate (members found)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    return to_data_uri(fig)


def scatter_views(
    real: np.ndarray,
    synthetic: np.ndarray,
    real_hospital: np.ndarray,
    real_labels: np.ndarray,
    syn_labels: np.ndarray,
    class_names: Sequence[str],
    hospital_names: Sequence[str],
    *,
    title: str,
) -> str:
    """Three panels: real by hospital + synthetic; real vs synthetic per class; synthetic density."""
    fig, axes = _fig(13.0, 4.0, 3, 1)
    ax = axes[0, 0]
    for h, name in enumerate(hospital_names):
        pts = real[real_hospital == h]
        ax.scatter(pts[:, 0], pts[:, 1], s=6, alpha=0.5, color=PALETTE[h % len(PALETTE)], label=f"hospital {name}")
    ax.scatter(synthetic[:, 0], synthetic[:, 1], s=8, marker="x", lw=0.6, color="k", alpha=0.5, label="synthetic")
    ax.set_title("real by hospital, synthetic (x)", fontsize=9)
    ax.legend(fontsize=7, markerscale=2)
    ax = axes[0, 1]
    for c, name in enumerate(class_names):
        color = PALETTE[c % len(PALETTE)]
        r = real[real_labels == c]
        s = synthetic[syn_labels == c]
        ax.scatter(r[:, 0], r[:, 1], s=6, alpha=0.35, color=color, label=f"real {name}")
        ax.scatter(s[:, 0], s[:, 1], s=10, marker="x", lw=0.7, alpha=0.7, color=color, label=f"synthetic {name}")
    ax.set_title("per class: real (dots) vs synthetic (x)", fontsize=9)
    ax.legend(fontsize=7, markerscale=2)
    ax = axes[0, 2]
    ax.scatter(real[:, 0], real[:, 1], s=5, alpha=0.35, color=REAL_COLOR, label="real (train)")
    ax.scatter(synthetic[:, 0], synthetic[:, 1], s=5, alpha=0.35, color=SYN_COLOR, label="synthetic")
    ax.set_title("real vs synthetic", fontsize=9)
    ax.legend(fontsize=7, markerscale=2)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return to_data_uri(fig)


def heatmaps(mats: dict[str, np.ndarray], names: Sequence[str], *, title: str) -> str:
    """Side-by-side correlation heatmaps (values in [-1, 1])."""
    k = len(mats)
    size = max(3.2, 0.35 * len(names) + 1.5)
    fig, axes = _fig(size * k + 1.0, size, k, 1, layout="constrained")
    im = None
    for i, (name, mat) in enumerate(mats.items()):
        ax = axes[0, i]
        im = ax.imshow(np.asarray(mat), vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
        ax.set_yticks(range(len(names)), names if i == 0 else [], fontsize=7)
        ax.set_title(name, fontsize=9)
    if im is not None:
        fig.colorbar(im, ax=[axes[0, i] for i in range(k)], shrink=0.7)
    fig.suptitle(title, fontsize=10)
    return to_data_uri(fig)


def marginal_panels(
    real: np.ndarray,
    synthetic: np.ndarray,
    columns: Sequence[dict[str, Any]],
    bounds: Sequence[tuple[float, float]],
) -> str:
    """Per column, real vs synthetic: numeric histograms over the public bounds or category frequencies."""
    n = len(columns)
    ncols = min(3, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = _fig(3.8 * ncols, 2.5 * nrows, ncols, nrows)
    for j, col in enumerate(columns):
        ax = axes[j // ncols, j % ncols]
        if col["kind"] == "numeric":
            lo, hi = bounds[j]
            edges = np.linspace(lo, hi, 31)
            ax.hist(
                np.clip(real[:, j], lo, hi),
                bins=edges,
                density=True,
                alpha=0.5,
                color=REAL_COLOR,
                label="real",
            )
            ax.hist(
                np.clip(synthetic[:, j], lo, hi),
                bins=edges,
                density=True,
                alpha=0.5,
                color=SYN_COLOR,
                label="synthetic",
            )
            ax.set_title(f"{col['column']}  (W1 {col['distance']:.3f})", fontsize=9)
        else:
            x = np.arange(len(col["categories"]))
            ax.bar(x - 0.2, col["real_freq"], 0.4, color=REAL_COLOR, label="real")
            ax.bar(x + 0.2, col["synthetic_freq"], 0.4, color=SYN_COLOR, label="synthetic")
            ax.set_xticks(x, col["categories"], fontsize=8)
            ax.set_title(f"{col['column']}  (TV {col['distance']:.3f})", fontsize=9)
        if j == 0:
            ax.legend(fontsize=7)
    for j in range(n, nrows * ncols):
        axes[j // ncols, j % ncols].axis("off")
    fig.tight_layout()
    return to_data_uri(fig)


def association_scatter(pairs: Sequence[dict[str, Any]], *, title: str) -> str:
    """Real vs synthetic association strength, one point per (clinical variable, image feature)."""
    fig, axes = _fig(4.2, 4.0)
    ax = axes[0, 0]
    r = np.array([p["real"] for p in pairs], dtype=np.float64)
    s = np.array([p["synthetic"] for p in pairs], dtype=np.float64)
    ax.scatter(r, s, s=14, color=SYN_COLOR, alpha=0.7)
    ax.plot([-1, 1], [-1, 1], "k--", lw=0.8)
    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(0, color="grey", lw=0.5)
    ax.set_xlim(-1, 1)
    ax.set_ylim(-1, 1)
    ax.set_xlabel("Spearman r, real (training) data")
    ax.set_ylabel("Spearman r, synthetic data")
    ax.set_title(title, fontsize=9)
    return to_data_uri(fig)


def compare_scatter(
    x: Sequence[float | None],
    y: Sequence[float | None],
    labels: Sequence[str],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
) -> str:
    """Runs as labelled points; x None (not private) is drawn at the right edge as 'inf'."""
    fig, axes = _fig(4.6, 3.6)
    ax = axes[0, 0]
    xs = [v for v in x if v is not None]
    x_inf = (max(xs) * 2.0 if xs else 1.0) if xs else 1.0
    for i, (xv, yv, lab) in enumerate(zip(x, y, labels, strict=True)):
        if yv is None:
            continue
        px = x_inf if xv is None else xv
        ax.scatter([px], [yv], color=PALETTE[i % len(PALETTE)], marker="s" if xv is None else "o", s=36)
        ax.annotate(lab, (px, yv), fontsize=7, xytext=(3, 3), textcoords="offset points")
    if any(v is None for v in x):
        ax.axvline(x_inf, color="grey", ls=":", lw=0.8)
        ax.text(x_inf, ax.get_ylim()[1], " not private", fontsize=7, va="top")
    if xs and min(xs) > 0 and max(xs) / min(xs) > 20:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    return to_data_uri(fig)
