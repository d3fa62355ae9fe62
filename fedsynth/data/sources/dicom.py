"""A folder of DICOM files (searched recursively), read with pydicom.

Every regular file in the folder must be a readable single-frame DICOM image (except the files
named by ``data.label_csv`` / ``data.schema_file``, if they lie inside it); anything else is an
error naming the file, never skipped.

Pixels: the modality rescale (RescaleSlope / RescaleIntercept) is applied, then the first VOI
window (WindowCenter / WindowWidth) maps to [0, 1] with clipping; without a window the image's own
min/max is used. MONOCHROME1 is inverted so that high values are bright. Colour images (3 samples)
are scaled by their bit depth. Images are then resized to ``data.image_size`` (see ``images.py``).

Clinical columns are the header keywords in ``data.dicom_fields``: age strings (VR AS, e.g.
"045Y", "006M") become years; numeric VRs become numbers; other values are categorical strings.
Labels come from the header keyword ``data.dicom_label_field`` or from ``data.label_csv``, a CSV
mapping ``data.file_column`` (path relative to ``data.path``) to ``data.label_column``.

Patient ids are the PatientID header; they must be unique (one image per patient: select one
slice/series per patient before loading).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset as DicomDataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue

from fedsynth.data.config import DataConfig
from fedsynth.data.records import Dataset
from fedsynth.data.sources.clinical import build_clinical
from fedsynth.data.sources.common import assemble, check_unique_ids, declared_columns
from fedsynth.data.sources.csv_table import read_csv
from fedsynth.data.sources.images import stack_images
from fedsynth.data.sources.labels import encode_labels
from fedsynth.errors import ConfigError, DataError

NUMERIC_VRS = frozenset({"DS", "IS", "FL", "FD", "US", "SS", "UL", "SL", "UV", "SV"})
_AGE = re.compile(r"(\d{1,3})\s*([DWMY])")
_AGE_UNIT_YEARS = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0}


def load_dicom(cfg: DataConfig) -> Dataset:
    root = Path(cfg.path)
    if not root.is_dir():
        raise DataError(str(root), "folder not found", "a folder of DICOM files (data.path)")
    for keyword in (*cfg.dicom_fields, *([cfg.dicom_label_field] if cfg.dicom_label_field else [])):
        if tag_for_keyword(keyword) is None:
            raise ConfigError(f"data.dicom_fields / data.dicom_label_field: {keyword!r} (expected a DICOM keyword)")
    exclude = {Path(p).resolve() for p in (cfg.label_csv, cfg.schema_file) if p}
    paths = sorted(p for p in root.rglob("*") if p.is_file() and p.resolve() not in exclude)
    if not paths:
        raise DataError(str(root), "no files", "DICOM files")
    rel = [p.relative_to(root).as_posix() for p in paths]

    headers = [_read(p, r) for p, r in zip(paths, rel)]
    pixels = [_pixels(ds, r) for ds, r in zip(headers, rel)]
    images = stack_images(pixels, cfg.color, cfg.image_size, lambda i: rel[i])

    ids = np.array([_required(ds, "PatientID", r) for ds, r in zip(headers, rel)])
    check_unique_ids(ids, lambda i: f"{rel[i]}, field PatientID")

    cells = {kw: [_field(ds, kw, r) for ds, r in zip(headers, rel)] for kw in cfg.dicom_fields}
    table = build_clinical(cells, len(paths), root.name, lambda i, kw: f"{rel[i]}, field {kw}", declared_columns(cfg))

    if cfg.dicom_label_field:
        kw = cfg.dicom_label_field
        raw = [_required(ds, kw, r) for ds, r in zip(headers, rel)]
        labels, class_names = encode_labels(raw, lambda i: f"{rel[i]}, field {kw}", cfg.class_names, root.name)
    else:
        raw, locate = _labels_from_csv(cfg, rel)
        labels, class_names = encode_labels(raw, locate, cfg.class_names, root.name)
    return assemble(
        labels=labels,
        class_names=class_names,
        class_names_declared=bool(cfg.class_names),
        patient_ids=ids,
        images=images,
        table=table,
        source=root.name,
    )


def _read(path: Path, rel: str) -> DicomDataset:
    try:
        return pydicom.dcmread(path)
    except InvalidDicomError as exc:
        raise DataError(rel, "not a DICOM file", "only DICOM files in the DICOM folder (data.path)") from exc
    except Exception as exc:  # noqa: BLE001 - any parser failure means the file is unusable
        raise DataError(rel, f"cannot be read as DICOM: {exc}", "a readable DICOM file") from exc


def _pixels(ds: DicomDataset, rel: str) -> np.ndarray:
    """Channels-last float image in [0, 1]."""
    if "PixelData" not in ds:
        raise DataError(rel, "no pixel data", "a DICOM image")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames != 1:
        raise DataError(rel, f"{frames} frames", "a single-frame image (one slice per file)")
    try:
        arr = np.asarray(ds.pixel_array)
    except Exception as exc:  # noqa: BLE001 - decoder errors vary by transfer syntax
        raise DataError(rel, f"pixel data cannot be decoded: {exc}", "pixel data pydicom can decode") from exc
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples == 3 and arr.ndim == 3 and arr.shape[2] == 3:
        bits = int(ds.get("BitsStored", 8) or 8)
        return np.clip(arr.astype(np.float64) / (2**bits - 1), 0.0, 1.0)
    if arr.ndim != 2:
        raise DataError(rel, f"pixel array has shape {arr.shape}", "a 2-D grayscale or (H, W, 3) colour image")
    x = arr.astype(np.float64)
    x = x * float(ds.get("RescaleSlope", 1) or 1) + float(ds.get("RescaleIntercept", 0) or 0)
    center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    if center is not None and width is not None and width > 0:
        lo, hi = center - width / 2, center + width / 2
    else:
        lo, hi = float(x.min()), float(x.max())
    x = np.clip((x - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(x)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        x = 1.0 - x
    if not np.isfinite(x).all():
        raise DataError(rel, "image contains NaN or Inf", "finite pixel values")
    return x[:, :, None]


def _first(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple, MultiValue)):
        value = value[0] if len(value) else None
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _required(ds: DicomDataset, keyword: str, rel: str) -> str:
    value = ds.get(keyword)
    text = "" if value is None else str(value).strip()
    if not text:
        raise DataError(f"{rel}, field {keyword}", "missing or empty", f"a {keyword} value in every file")
    return text


def _field(ds: DicomDataset, keyword: str, rel: str) -> str:
    """A header value as a string cell: ages in years, numbers as numbers, others as text."""
    where = f"{rel}, field {keyword}"
    value = ds.get(keyword)
    if value is None or str(value).strip() == "":
        raise DataError(where, "missing or empty", f"a {keyword} value in every file")
    if isinstance(value, MultiValue):
        raise DataError(where, f"{len(value)} values {list(value)}", "a single value")
    vr = dictionary_VR(tag_for_keyword(keyword))
    if vr == "AS":
        match = _AGE.fullmatch(str(value).strip().upper())
        if not match:
            raise DataError(where, f"age {str(value)!r}", "a DICOM age string such as '045Y' or '006M'")
        return repr(int(match.group(1)) * _AGE_UNIT_YEARS[match.group(2)])
    if vr in NUMERIC_VRS:
        try:
            return repr(float(value))
        except (TypeError, ValueError) as exc:
            raise DataError(where, f"value {str(value)!r}", "a number") from exc
    return str(value).strip()


def _labels_from_csv(cfg: DataConfig, rel: list[str]) -> tuple[list[str], Callable[[int], str]]:
    table = read_csv(cfg.label_csv, "label CSV (data.label_csv)")
    files = table.require(cfg.file_column, "DICOM file paths relative to data.path (data.file_column)")
    raw = table.require(cfg.label_column, "labels (data.label_column)")
    row_of: dict[str, int] = {}
    known = set(rel)
    for i, name in enumerate(files):
        key = Path(name).as_posix()
        if key in row_of:
            raise DataError(
                table.where(i, cfg.file_column),
                f"file {name!r} repeats row {row_of[key] + 2}",
                "one row per file",
            )
        if key not in known:
            raise DataError(
                table.where(i, cfg.file_column),
                f"file {name!r} is not in {cfg.path}",
                "an existing DICOM file",
            )
        row_of[key] = i
    rows = []
    for r in rel:
        if r not in row_of:
            raise DataError(r, f"no label in {table.name}", f"a row for every DICOM file in {table.name}")
        rows.append(row_of[r])
    return [raw[k] for k in rows], (lambda i: table.where(rows[i], cfg.label_column))
