"""An image folder with a CSV manifest.

The manifest (``data.manifest``, default ``<path>/manifest.csv``) has one row per record:
``data.file_column`` (image path relative to ``data.path``), ``data.label_column``, optionally
``data.patient_id_column``, and any further columns as clinical columns (none: image-only data).
The manifest defines the records: images in the folder that it does not list are not loaded.
Without a patient id column, each row is taken to be a different patient, named by its file.

Images are read with scikit-image (PNG, JPEG, TIFF, ...), converted to one colour mode and
resized to ``data.image_size`` (see ``images.py``). Each image is resized as soon as it is read, so
one full-size image is in memory at a time; its size is checked against ``data.max_image_side``
from the file header before it is decoded, and a note says how many images were resized from
which sizes. The manifest's row count is checked against ``data.max_records`` and the memory
estimate against ``data.max_memory_mb`` before any image is read.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.io import imread

from fedsynth.data.config import DataConfig
from fedsynth.data.guards import check_image_side, check_memory, check_record_count, records_bytes, working_bytes
from fedsynth.data.load_report import LoadReport, MemoryEstimate
from fedsynth.data.records import Dataset
from fedsynth.data.sources.clinical import build_clinical
from fedsynth.data.sources.common import assemble, check_unique_ids, declared_columns
from fedsynth.data.sources.csv_table import read_csv
from fedsynth.data.sources.images import channels_last, fit_image, resize_note, stack_images, to_unit_range
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

    wheres = [f"{files[i]} ({manifest.where(i, cfg.file_column)})" for i in range(len(manifest))]
    memory = _preflight([root / f for f in files], wheres, manifest.name, cfg, len(manifest.columns) - 2)
    loaded, sizes = [], []
    for i in range(len(manifest)):
        img = _read_image(root, files[i], manifest.where(i, cfg.file_column), cfg)
        sizes.append((int(img.shape[0]), int(img.shape[1])))
        loaded.append(fit_image(img, cfg.image_size))
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
        report=LoadReport(notes=tuple(filter(None, [resize_note(root.name, sizes, cfg.image_size)])), memory=memory),
    )


def _preflight(paths: list[Path], wheres: list[str], manifest: str, cfg: DataConfig, columns: int) -> MemoryEstimate:
    """Record count, image sizes (from the file headers) and the memory estimate, before any image
    is decoded. The working set is that of the largest image (of ``data.max_image_side`` where a
    header cannot be read) plus every image resized (float64, before the colour mode is fixed); the
    records are counted with 3 channels, the most the colour mode can give."""
    check_record_count(manifest, len(paths), cfg)
    largest = 0
    for path, where in zip(paths, wheres):
        size = _header_size(path) if path.is_file() else None
        if size is not None:
            check_image_side(where, size[0], size[1], cfg)
        largest = max(largest, size[0] * size[1] if size is not None else cfg.max_image_side**2)
    n, size = len(paths), cfg.image_size
    estimate = MemoryEstimate(
        source_bytes=0,
        working_bytes=working_bytes(1, largest, 1, 3, size) + n * size * size * 3 * 8,
        records_bytes=records_bytes(n, 3, size, max(columns, 0)),
    )
    check_memory(manifest, estimate, cfg)
    return estimate


def _read_image(root: Path, name: str, where: str, cfg: DataConfig) -> np.ndarray:
    """One image, channels-last float in [0, 1] (its size checked again once decoded)."""
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
    check_image_side(f"{name} ({where})", img.shape[0], img.shape[1], cfg)
    return to_unit_range(img, f"{name} ({where})")


def _header_size(path: Path) -> tuple[int, int] | None:
    """(height, width) from the image file's header without decoding its pixels; None when
    Pillow cannot read the header (the size is then checked after decoding)."""
    try:
        with Image.open(path) as img:
            width, height = img.size
    except Exception:  # noqa: BLE001 - any header failure defers the check to the decoded image
        return None
    return int(height), int(width)
