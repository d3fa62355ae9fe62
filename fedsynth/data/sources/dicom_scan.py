"""One DICOM file read into one record: header fields, label and pixels, with every problem named.

:func:`read_scan` reads a file, checks its image size against ``data.max_image_side`` from the
header (Rows/Columns) before the pixels are decoded, decodes and windows the pixels, resizes them
at once to ``data.image_size`` (so one full-size image is in memory at a time), and reads the
clinical fields, patient id and label. It does not stop at the first problem: it returns every
problem of the file (field by field) for the loader's table.

Pixels: the modality rescale (RescaleSlope / RescaleIntercept) is applied, then the first VOI
window (WindowCenter / WindowWidth) maps to [0, 1] with clipping; without a window the image's own
min/max is used. MONOCHROME1 is inverted so that high values are bright. Colour images (3 samples)
are scaled by their bit depth. Fields: age strings (VR AS, e.g. "045Y", "006M") become years;
numeric VRs become numbers; other values are categorical strings.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import pydicom
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset as DicomDataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue

from fedsynth.data.config import DataConfig
from fedsynth.data.problems import FileProblem, FileProblemError
from fedsynth.data.sources.images import fit_image

NUMERIC_VRS = frozenset({"DS", "IS", "FL", "FD", "US", "SS", "UL", "SL", "UV", "SV"})
_AGE = re.compile(r"(\d{1,3})\s*([DWMY])")
_AGE_UNIT_YEARS = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0}

T = TypeVar("T")

#: The field name the problem table uses for the file as a whole and for the label.
FILE_FIELD = "(file)"
LABEL_FIELD = "(label)"


@dataclass(frozen=True)
class Scan:
    """What one DICOM file contributes: its record's parts, before the folder is assembled."""

    rel: str
    patient_id: str
    #: Clinical cells (``data.dicom_fields`` -> value as a string).
    cells: dict[str, str]
    #: The raw label (header value), or None when it comes from ``data.label_csv``.
    label: str | None
    #: The image resized to (image_size, image_size, C), float64 in [0, 1].
    image: np.ndarray
    #: (Rows, Columns) before resizing.
    source_size: tuple[int, int]
    #: Rows x Columns x samples per pixel: the size of the decoded image.
    pixels: int


def read_scan(path: Path, rel: str, cfg: DataConfig, labelled: set[str] | None) -> Scan | list[FileProblem]:
    """The file's record, or every problem it has. ``labelled``: the files the label CSV names
    (None when the label is the header field ``data.dicom_label_field``)."""
    try:
        ds = _read(path, rel)
    except FileProblemError as e:
        return [e.as_problem()]
    problems: list[FileProblem] = []

    def attempt(step: Callable[..., T], *args: object) -> T | None:
        try:
            return step(*args)
        except FileProblemError as e:
            problems.append(e.as_problem())
            return None

    image = attempt(_image, ds, rel, cfg)
    patient_id = attempt(_required, ds, "PatientID", rel)
    cells = {kw: attempt(_field, ds, kw, rel) for kw in cfg.dicom_fields}
    label = None
    if cfg.dicom_label_field:
        label = attempt(_required, ds, cfg.dicom_label_field, rel)
    elif labelled is not None and rel not in labelled:
        name = Path(cfg.label_csv).name
        problems.append(FileProblem(rel, LABEL_FIELD, f"no label in {name} (expected a row for every DICOM file)"))
    if problems:
        return problems
    assert image is not None and patient_id is not None
    rows, columns = int(ds.Rows), int(ds.Columns)
    return Scan(
        rel=rel,
        patient_id=patient_id,
        cells={k: v for k, v in cells.items() if v is not None},
        label=label,
        image=image,
        source_size=(rows, columns),
        pixels=rows * columns * int(ds.get("SamplesPerPixel", 1) or 1),
    )


def _read(path: Path, rel: str) -> DicomDataset:
    try:
        return pydicom.dcmread(path)
    except InvalidDicomError as exc:
        raise FileProblemError(
            rel, FILE_FIELD, "not a DICOM file", "only DICOM files in the DICOM folder (data.path)"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - any parser failure means the file is unusable
        raise FileProblemError(rel, FILE_FIELD, f"cannot be read as DICOM: {exc}", "a readable DICOM file") from exc


def _image(ds: DicomDataset, rel: str, cfg: DataConfig) -> np.ndarray:
    """The image resized to the target size; its size is checked before the pixels are decoded."""
    if "PixelData" not in ds:
        raise FileProblemError(rel, "PixelData", "no pixel data", "a DICOM image")
    rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if rows <= 0 or columns <= 0:
        raise FileProblemError(rel, "Rows/Columns", f"image of {rows} x {columns} pixels", "a positive image size")
    if max(rows, columns) > cfg.max_image_side:
        raise FileProblemError(
            rel,
            "Rows/Columns",
            f"image of {rows} x {columns} pixels",
            f"at most {cfg.max_image_side} pixels per side (data.max_image_side)",
        )
    return fit_image(_pixels(ds, rel), cfg.image_size)


def _pixels(ds: DicomDataset, rel: str) -> np.ndarray:
    """Channels-last float image in [0, 1]."""
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames != 1:
        raise FileProblemError(rel, "NumberOfFrames", f"{frames} frames", "a single-frame image (one slice per file)")
    try:
        arr = np.asarray(ds.pixel_array)
    except Exception as exc:  # noqa: BLE001 - decoder errors vary by transfer syntax
        raise FileProblemError(
            rel, "PixelData", f"pixel data cannot be decoded: {exc}", "pixel data pydicom can decode"
        ) from exc
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples == 3 and arr.ndim == 3 and arr.shape[2] == 3:
        bits = int(ds.get("BitsStored", 8) or 8)
        return np.clip(arr.astype(np.float64) / (2**bits - 1), 0.0, 1.0)
    if arr.ndim != 2:
        raise FileProblemError(
            rel, "PixelData", f"pixel array has shape {arr.shape}", "a 2-D grayscale or (H, W, 3) colour image"
        )
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
        raise FileProblemError(rel, "PixelData", "image contains NaN or Inf", "finite pixel values")
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
        raise FileProblemError(rel, keyword, "missing or empty", f"a {keyword} value in every file")
    return text


def _field(ds: DicomDataset, keyword: str, rel: str) -> str:
    """A header value as a string cell: ages in years, numbers as numbers, others as text."""
    value = ds.get(keyword)
    if value is None or str(value).strip() == "":
        raise FileProblemError(rel, keyword, "missing or empty", f"a {keyword} value in every file")
    if isinstance(value, MultiValue):
        raise FileProblemError(rel, keyword, f"{len(value)} values {list(value)}", "a single value")
    vr = dictionary_VR(tag_for_keyword(keyword))
    if vr == "AS":
        match = _AGE.fullmatch(str(value).strip().upper())
        if not match:
            raise FileProblemError(rel, keyword, f"age {str(value)!r}", "a DICOM age string such as '045Y' or '006M'")
        return repr(int(match.group(1)) * _AGE_UNIT_YEARS[match.group(2)])
    if vr in NUMERIC_VRS:
        try:
            return repr(float(value))
        except (TypeError, ValueError) as exc:
            raise FileProblemError(rel, keyword, f"value {str(value)!r}", "a number") from exc
    return str(value).strip()
