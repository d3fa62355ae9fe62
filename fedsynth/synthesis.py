"""Stage 3 at the end of a run: draw labelled synthetic records from the final generator.

Conditioning labels are balanced across classes (no real label counts are used), so exporting
synthetic data spends no privacy beyond what training spent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fedsynth.data.records import Dataset, Schema
from fedsynth.models.generator import MultimodalGenerator


def balanced_labels(num: int, num_classes: int) -> np.ndarray:
    """``num`` labels cycling through the classes (equal counts up to one)."""
    return (np.arange(num) % num_classes).astype(np.int64)


def synthesize(model: MultimodalGenerator, num: int, seed: int, batch: int = 512) -> Dataset:
    """``num`` synthetic records with balanced conditioning labels."""
    schema: Schema = model.schema
    labels = balanced_labels(num, schema.num_classes)
    rng = torch.Generator().manual_seed(seed)
    images, clinical = [], []
    model.eval()
    for start in range(0, num, batch):
        imgs, rows = model.sample(torch.as_tensor(labels[start : start + batch]), generator=rng)
        if imgs is not None:
            images.append(imgs.clamp(0, 1).cpu().numpy().astype(np.float32))
        if rows is not None:
            clinical.append(rows.cpu().numpy().astype(np.float32))
    return Dataset(
        schema=schema,
        labels=labels,
        patient_ids=np.array([f"synthetic-{i}" for i in range(num)]),
        images=np.concatenate(images) if images else None,
        clinical=np.concatenate(clinical) if clinical else None,
        source="synthetic",
    )


def save_class_grid(data: Dataset, path: Path, per_class: int = 8) -> None:
    """PNG with one row of images per class (or, for table-only data, a table of rows per class)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = data.schema.class_names
    if data.images is not None:
        fig, axes = plt.subplots(len(classes), per_class, figsize=(per_class * 1.1, len(classes) * 1.25), squeeze=False)
        for c, name in enumerate(classes):
            idx = np.flatnonzero(data.labels == c)[:per_class]
            for j in range(per_class):
                ax = axes[c][j]
                ax.axis("off")
                if j < len(idx):
                    img = data.images[idx[j]]
                    ax.imshow(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0), cmap="gray", vmin=0, vmax=1)
            axes[c][0].set_title(str(name), fontsize=8, loc="left")
    else:
        assert data.clinical is not None
        fig, axes = plt.subplots(len(classes), 1, figsize=(10, 1.2 * len(classes) + 0.5), squeeze=False)
        cols = data.schema.column_names[:8]
        for c, name in enumerate(classes):
            ax = axes[c][0]
            ax.axis("off")
            rows = data.clinical[data.labels == c][:4, : len(cols)]
            if len(rows):
                ax.table(cellText=[[f"{v:.3g}" for v in r] for r in rows], colLabels=cols, loc="center", fontsize=6)
            ax.set_title(str(name), fontsize=8, loc="left")
    fig.suptitle("synthetic samples per class", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
