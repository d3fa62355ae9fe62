"""An image folder with a CSV manifest.

The manifest (``data.manifest``, default ``<path>/manifest.csv``) has one row per record:
``data.file_column`` (image path relative to ``data.path``), ``data.label_column``, optionally
``data.patient_id_column``, and any further columns as clinical columns (none: image-only data).
The manifest defines the records: images in the folder that it does not list are not loaded.
Without a patient id column, each row is taken to be a different patient, named by its file.

Images are read with scikit-image (PNG, JPEG, TIFF, ...), converted to one colour mode and
resized to ``data.image_size`` (see ``images.py``).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from skimage.io import imread

from fedsynth.data.config import DataConfig
from fedsynth.data.records import Dataset
from fedsynth.data.sources.clinical import build_clinical
from fedsynth.data.sources.common import assemble, check_unique_ids, declared_columns
from fedsynth.data.sources.csv_table import read_csv
from fedsynth.data.sources.images import channels_last, stack_images, to_unit_range
from fedsynth.data.sources.labels import encode_labels
from fedsynth.errors import DataError


def load_folder(cfg: DataConfig) -> Dataset:
    root = Path(cfg.path)
    if not root.is_dir():
        raise DataError(str(root), "folder not found", "an image folder (data.path)")
    manifest = read_csv(Path(cfg.manifest) if cfg.manifest else root / "manifest.csv", "image manifest")
    files = manifest.require(cfg.file_column, "image file names (data.file_column)")
    raw_labels = manifest.require(cfg.label_column, "labels (data.label_column)")

    def locate(i: int) -> str:
        return manifest.where(i)

    loaded = [_read_image(root, files[i], manifest.where(i, cfg.file_column)) for i in range(len(manifest))]
    images = stack_images(loaded, cfg.color, cfg.image_size, lambda i: f"{files[i]} ({locate(i)})")
    labels, class_names = encode_labels(
        raw_labels, lambda i: manifest.where(i, cfg.label_column), cfg.class_names, manifest.name
    )
    if cfg.patient_id_column in manifest.columns:
        ids = np.array(manifest.columns[cfg.patient_id_column])
        check_unique_ids(ids, lambda i: manifest.where(i, cfg.patient_id_column))
    else:
        ids = np.array(files)
        check_unique_ids(ids, lambda i: manifest.where(i, cfg.file_column))
    skip = {cfg.file_column, cfg.label_column, cfg.patient_id_column}
    cells = {h: v for h, v in manifest.columns.items() if h not in skip}
    table = build_clinical(cells, len(manifest), manifest.name, manifest.where, declared_columns(cfg))
    return assemble(
        labels=labels,
        class_names=class_names,
        class_names_declared=bool(cfg.class_names),
        patient_ids=ids,
        images=images,
        table=table,
        source=f"{root.name}/{manifest.name}",
    )


def _read_image(root: Path, name: str, where: str) -> np.ndarray:
    path = root / name
    if not name or not path.is_file():
        raise DataError(where, f"image file {name!r} not found in {root}", "an existing image file")
    try:
        with warnings.catch_warnings():
            # imageio probes its plugins on unreadable files and warns about deprecated ones
            warnings.simplefilter("ignore", DeprecationWarning)
            img = np.asarray(imread(path))
    except Exception as exc:  # noqa: BLE001 - any reader failure means the file is unusable
        raise DataError(f"{name} ({where})", f"cannot be read as an image: {exc}", "a PNG, JPEG or TIFF image") from exc
    if img.dtype == object or img.ndim not in (2, 3):
        raise DataError(f"{name} ({where})", f"image has shape {img.shape}", "a single 2-D image (H, W[, C])")
    img = channels_last(img, f"{name} ({where})")
    return to_unit_range(img, f"{name} ({where})")
