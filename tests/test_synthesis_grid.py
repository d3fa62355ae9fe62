"""The class grid a run writes beside its synthetic records (synthetic/samples.png)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from fedsynth.data.records import ColumnSpec, Dataset, Schema
from fedsynth.synthesis import save_class_grid


def _dataset(images: np.ndarray | None, clinical: np.ndarray | None, labels: np.ndarray) -> Dataset:
    columns = (ColumnSpec("age", "numeric", 0.0, 100.0),) if clinical is not None else ()
    shape = None if images is None else tuple(images.shape[1:])
    schema = Schema(columns=columns, class_names=("healthy", "lesion"), image_shape=shape)
    ids = np.array([f"r{i}" for i in range(len(labels))])
    return Dataset(schema=schema, labels=labels, patient_ids=ids, images=images, clinical=clinical)


def test_each_class_row_shows_that_classes_images_pixel_for_pixel(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = np.array([0, 1, 1, 0, 1])
    images = rng.random((5, 1, 16, 16)).astype(np.float32)
    path = tmp_path / "grid.png"
    save_class_grid(_dataset(images, None, labels), path, per_class=3)
    grid = np.asarray(Image.open(path))
    # Layout: 96-pixel label strip, then tiles of 64 x 64 (16 x 16 scaled by 4) with 4-pixel gaps,
    # below an 18-pixel title; row c holds class c's images in record order.
    assert grid.shape == (18 + 2 * (64 + 4), 96 + 3 * (64 + 4))
    for c in (0, 1):
        for j, index in enumerate(np.flatnonzero(labels == c)):
            top, left = 18 + c * 68, 96 + j * 68
            tile = grid[top : top + 64 : 4, left : left + 64 : 4]
            np.testing.assert_array_equal(tile, np.round(images[index, 0] * 255).astype(np.uint8))
    # Class 0 has two images: its third cell stays blank.
    assert (grid[18 : 18 + 64, 96 + 2 * 68 : 96 + 2 * 68 + 64] == 255).all()


def test_colour_images_and_table_only_data_are_drawn_too(tmp_path: Path) -> None:
    labels = np.array([0, 1])
    colour = np.zeros((2, 3, 8, 8), dtype=np.float32)
    colour[:, 0] = 1.0  # red
    save_class_grid(_dataset(colour, None, labels), tmp_path / "colour.png")
    grid = np.asarray(Image.open(tmp_path / "colour.png"))
    assert grid.shape[2] == 3 and tuple(grid[18, 96]) == (255, 0, 0)
    save_class_grid(_dataset(None, np.array([[40.0], [60.0]], dtype=np.float32), labels), tmp_path / "table.png")
    assert Image.open(tmp_path / "table.png").size[0] > 0
