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
    """PNG with one row of images per class (or, for table-only data, a table of rows per class).

    Images are tiled directly with Pillow (each scaled by a whole factor to at least 64 pixels,
    the class name on the left): a run ends with this grid, and drawing it through matplotlib's
    pyplot cost seconds of imports alone."""
    if data.images is None:
        _save_table_grid(data, path)
        return
    from PIL import Image, ImageDraw

    classes = data.schema.class_names
    channels, height, width = data.images.shape[1:]
    scale = max(1, -(-64 // max(height, width)))
    cell_h, cell_w, pad, label_w, title_h = height * scale, width * scale, 4, 96, 18
    mode = "L" if channels == 1 else "RGB"
    canvas = Image.new(
        mode,
        (label_w + per_class * (cell_w + pad), title_h + len(classes) * (cell_h + pad)),
        "white",
    )
    draw = ImageDraw.Draw(canvas)
    draw.text((pad, 2), "synthetic samples per class", fill="black")
    for c, name in enumerate(classes):
        top = title_h + c * (cell_h + pad)
        draw.text((pad, top + cell_h // 2 - 5), str(name)[:14], fill="black")
        for j, index in enumerate(np.flatnonzero(data.labels == c)[:per_class]):
            pixels = np.clip(data.images[index], 0.0, 1.0)
            pixels = pixels[0] if channels == 1 else pixels[:3].transpose(1, 2, 0)
            tile = Image.fromarray(np.round(pixels * 255).astype(np.uint8))
            canvas.paste(tile.resize((cell_w, cell_h), Image.NEAREST), (label_w + j * (cell_w + pad), top))
    canvas.save(path)


def _save_table_grid(data: Dataset, path: Path) -> None:
    """Table-only data: the first rows of each class as a table (matplotlib)."""
    from matplotlib.figure import Figure

    assert data.clinical is not None
    classes = data.schema.class_names
    fig = Figure(figsize=(10, 1.2 * len(classes) + 0.5))
    axes = fig.subplots(len(classes), 1, squeeze=False)
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
