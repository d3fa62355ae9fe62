"""MedMNIST-format ``.npz`` files, with an optional clinical CSV.

The file holds ``<split>_images`` / ``<split>_labels`` for the splits train, val and test, or
plain ``images`` / ``labels`` (see ``npz_layout.py`` for which splits are required and how
``data.npz_splits`` selects them). Images are uint8 (N, H, W) or (N, H, W, 3) (floats in [0, 1] are
accepted too); labels are (N,) or (N, 1) integers.

The splits used are pooled, in the order train, val, test (or that of ``data.npz_splits``):
fedsynth draws its own held-out test split and hospital partitions from the pool, so the file's
split is not used. Shapes, the record count and the memory estimate are checked against the size
guards from the array headers, before any image is read; images are converted in chunks of at
most 64 MB of float64 pixels, and a note says when they are resized.

Patient ids come from an array ``patient_ids`` (pooled order over every split the file holds) or
``<split>_patient_ids``; without one, records are named "<split>_<row>" and each record is taken to
be a different patient.

Clinical CSV (``data.clinical_csv``):

- ``join_on = "index"``: data row i belongs to pooled record i (the CSV needs exactly one row per
  image). A ``data.patient_id_column`` in the CSV, if present, supplies the patient ids (and must
  agree with the npz's ids where both exist).
- ``join_on = "patient_id"``: the CSV's ``data.patient_id_column`` is matched to the npz's patient
  ids, which must then exist. Every image needs exactly one row and every row an image.

All other CSV columns are clinical columns (see ``clinical.py`` for kinds and bounds).
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fedsynth.data.config import DataConfig
from fedsynth.data.guards import (
    check_image_side,
    check_memory,
    check_record_count,
    output_channels_bound,
    records_bytes,
    working_bytes,
)
from fedsynth.data.load_report import MB, LoadReport, MemoryEstimate
from fedsynth.data.records import Dataset
from fedsynth.data.sources.clinical import ClinicalTable, build_clinical
from fedsynth.data.sources.common import assemble, check_unique_ids, declared_columns
from fedsynth.data.sources.csv_table import read_csv
from fedsynth.data.sources.images import convert, output_channels, resize_batch, resize_note
from fedsynth.data.sources.labels import encode_labels
from fedsynth.data.sources.npz_layout import ArrayInfo, Layout, Part, read_headers, resolve_layout
from fedsynth.errors import DataError

#: Most images converted at once, and most float64 bytes of source pixels per conversion chunk.
_CHUNK = 2048
_CHUNK_BYTES = 64 * MB


def load_npz(cfg: DataConfig) -> Dataset:
    path = Path(cfg.path)
    if not path.is_file():
        raise DataError(str(path), "file not found", "a MedMNIST-format .npz file (data.path)")
    name = path.name
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise DataError(str(path), "a single .npy array, not an .npz archive", "a NumPy .npz archive")
            infos = read_headers(npz, name)
            layout = resolve_layout(infos, name, cfg.npz_splits)
            memory = _preflight(infos, layout, name, cfg)
            arrays = {k: npz[k] for k in layout.used}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(str(path), f"cannot be read as .npz: {exc}", "a NumPy .npz archive") from exc
    parts = list(layout.parts)
    total = layout.total

    def locate(i: int) -> str:
        part = next(p for p in parts if p.start <= i < p.start + p.n)
        return f"{name}, array '{part.key}images', row {i - part.start}"

    images = _images(arrays, parts, name, cfg)
    raw_labels = np.concatenate([_labels(arrays, p, name) for p in parts])
    labels, class_names = encode_labels(
        raw_labels, lambda i: locate(i).replace("images'", "labels'"), cfg.class_names, name
    )
    npz_ids = _ids(arrays, layout, name)
    if npz_ids is not None:
        check_unique_ids(npz_ids, locate)
    default_ids = np.array([f"{p.key or 'row_'}{i}" for p in parts for i in range(p.n)])

    if cfg.clinical_csv:
        ids, table = _join_clinical(cfg, npz_ids, default_ids, name, locate)
    else:
        ids = npz_ids if npz_ids is not None else default_ids
        table = ClinicalTable(columns=(), values=None, fitted=False)
    check_unique_ids(ids, locate)
    shape = infos[f"{parts[0].key}images"].shape
    sizes = [(int(shape[1]), int(shape[2]))] * total
    pooled = ", ".join(f"{p.key[:-1] or 'images'} {p.n}" for p in parts)
    notes = [
        f"{name}: pooled {total} records ({pooled}); fedsynth draws its own held-out test split from them",
        *layout.notes,
        *filter(None, [resize_note(name, sizes, cfg.image_size)]),
    ]
    return assemble(
        labels=labels,
        class_names=class_names,
        class_names_declared=bool(cfg.class_names),
        patient_ids=ids,
        images=images,
        table=table,
        source=name,
        report=LoadReport(notes=tuple(notes), memory=memory),
    )


def _preflight(infos: dict[str, ArrayInfo], layout: Layout, name: str, cfg: DataConfig) -> MemoryEstimate:
    """Check image shapes, sizes, the record count and the memory estimate from the headers alone."""
    shapes = {}
    for p in layout.parts:
        info = infos[f"{p.key}images"]
        if len(info.shape) == 4 and info.shape[3] in (1, 3):
            shapes[p.key] = info.shape[1:]
        elif len(info.shape) == 3:
            shapes[p.key] = (*info.shape[1:], 1)
        else:
            raise DataError(f"{name}, array '{info.key}'", f"shape {info.shape}", "(N, H, W) or (N, H, W, 3) images")
        check_image_side(f"{name}, array '{info.key}'", shapes[p.key][0], shapes[p.key][1], cfg)
    if len(set(shapes.values())) > 1:
        raise DataError(name, f"image arrays have different shapes {shapes}", "one image shape for all splits")
    check_record_count(name, layout.total, cfg)
    h, w, c = next(iter(shapes.values()))
    chunk = min(_chunk_size(h, w, c), max(p.n for p in layout.parts))
    estimate = MemoryEstimate(
        source_bytes=sum(infos[k].nbytes for k in layout.used),
        working_bytes=working_bytes(chunk, h, w, c, cfg.image_size),
        records_bytes=records_bytes(layout.total, output_channels_bound(cfg.color, c), cfg.image_size, 0),
    )
    check_memory(name, estimate, cfg)
    return estimate


def _chunk_size(h: int, w: int, c: int) -> int:
    """Images converted at once: at most ``_CHUNK``, and at most ``_CHUNK_BYTES`` of float64 pixels."""
    return max(1, min(_CHUNK, _CHUNK_BYTES // (h * w * c * 8)))


def _images(arrays: dict[str, np.ndarray], parts: list[Part], name: str, cfg: DataConfig) -> np.ndarray:
    """The parts' images (shapes already checked) as (N, C, S, S) float32, converted chunk by chunk."""
    any_color = any(
        arrays[f"{p.key}images"].ndim == 4
        and arrays[f"{p.key}images"].shape[3] == 3
        and _has_color(arrays[f"{p.key}images"])
        for p in parts
    )
    channels = output_channels(cfg.color, any_color)
    out = []
    for p in parts:
        arr = arrays[f"{p.key}images"]
        if arr.ndim == 3:
            arr = arr[..., None]
        step = _chunk_size(*arr.shape[1:])
        for s in range(0, p.n, step):
            chunk = _unit_range(arr[s : s + step], f"{name}, array '{p.key}images'", s)
            out.append(resize_batch(convert(chunk, channels), cfg.image_size))
    return np.concatenate(out)


def _has_color(arr: np.ndarray) -> bool:
    return not (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2]))


def _unit_range(chunk: np.ndarray, where: str, offset: int) -> np.ndarray:
    kind = chunk.dtype.kind
    if kind == "u":
        return chunk.astype(np.float64) / np.iinfo(chunk.dtype).max
    if kind == "b":
        return chunk.astype(np.float64)
    if kind == "f":
        flat = chunk.reshape(len(chunk), -1)
        bad = np.flatnonzero(~np.isfinite(flat).all(axis=1))
        if bad.size:
            raise DataError(f"{where}, row {offset + int(bad[0])}", "image contains NaN or Inf", "finite pixels")
        bad = np.flatnonzero((flat.min(axis=1) < 0) | (flat.max(axis=1) > 1))
        if bad.size:
            raise DataError(
                f"{where}, row {offset + int(bad[0])}",
                "float pixels outside [0, 1]",
                "uint8 or floats in [0, 1]",
            )
        return chunk.astype(np.float64)
    raise DataError(where, f"pixel dtype {chunk.dtype}", "uint8 (or uint16, or floats in [0, 1]) pixels")


def _labels(arrays: dict[str, np.ndarray], p: Part, name: str) -> np.ndarray:
    key = f"{p.key}labels"
    if key not in arrays:
        raise DataError(name, f"missing array '{key}'", f"labels for '{p.key}images'")
    lab = arrays[key]
    if lab.ndim == 2 and lab.shape[1] == 1:
        lab = lab[:, 0]
    if lab.ndim != 1 or lab.shape[0] != p.n:
        raise DataError(f"{name}, array '{key}'", f"shape {lab.shape}", f"({p.n},) or ({p.n}, 1) class indices")
    if lab.dtype.kind not in "iuf":
        raise DataError(f"{name}, array '{key}'", f"dtype {lab.dtype}", "integer class indices")
    return lab


def _ids(arrays: dict[str, np.ndarray], layout: Layout, name: str) -> np.ndarray | None:
    """Patient ids of the pooled parts: from the pooled ``patient_ids`` array (every split the file
    holds, in the order train, val, test) or from every used split's ``<split>_patient_ids``."""
    parts = layout.parts
    if "patient_ids" in arrays:
        ids = arrays["patient_ids"]
        if ids.shape != (layout.pooled_total,):
            raise DataError(
                f"{name}, array 'patient_ids'", f"shape {ids.shape}", f"({layout.pooled_total},), pooled order"
            )
        ids = ids.astype(str)
        return np.concatenate([ids[layout.pooled_offsets[p.key] : layout.pooled_offsets[p.key] + p.n] for p in parts])
    per_split = [f"{p.key}patient_ids" for p in parts]
    present = [k for k in per_split if k in arrays]
    if not present:
        return None
    if len(present) != len(per_split):
        missing = sorted(set(per_split) - set(present))
        raise DataError(name, f"missing arrays {missing}", "patient ids for every split or none")
    out = []
    for p, key in zip(parts, per_split):
        if arrays[key].shape != (p.n,):
            raise DataError(f"{name}, array '{key}'", f"shape {arrays[key].shape}", f"({p.n},)")
        out.append(arrays[key].astype(str))
    return np.concatenate(out)


def _join_clinical(
    cfg: DataConfig,
    npz_ids: np.ndarray | None,
    default_ids: np.ndarray,
    name: str,
    locate: Callable[[int], str],
) -> tuple[np.ndarray, ClinicalTable]:
    total = default_ids.size
    csv = read_csv(cfg.clinical_csv, "clinical CSV (data.clinical_csv)")
    id_col = cfg.patient_id_column
    cells = {h: v for h, v in csv.columns.items() if h != id_col}
    if cfg.join_on == "index":
        if len(csv) != total:
            raise DataError(
                csv.name,
                f"{len(csv)} data rows for {total} images in {name}",
                f"{total} rows, in the order train, val, test",
            )
        ids = npz_ids
        if id_col in csv.columns:
            csv_ids = np.array(csv.columns[id_col])
            check_unique_ids(csv_ids, lambda i: csv.where(i, id_col))
            if npz_ids is not None:
                bad = np.flatnonzero(csv_ids != npz_ids)
                if bad.size:
                    i = int(bad[0])
                    raise DataError(
                        csv.where(i, id_col),
                        f"patient id {csv_ids[i]!r} but {locate(i)} has {npz_ids[i]!r}",
                        "the same patient ids in the same order (or data.join_on = 'patient_id')",
                    )
            ids = csv_ids
        if ids is None:
            ids = default_ids
        order = np.arange(total)
    else:
        if npz_ids is None:
            raise DataError(
                name,
                "no patient ids",
                "an array 'patient_ids' (or '<split>_patient_ids') for data.join_on = 'patient_id'",
            )
        csv_ids = csv.require(id_col, "patient ids for data.join_on = 'patient_id'")
        row_of: dict[str, int] = {}
        for i, pid in enumerate(csv_ids):
            if pid in row_of:
                raise DataError(
                    csv.where(i, id_col),
                    f"patient id {pid!r} repeats row {row_of[pid] + 2}",
                    "one row per patient",
                )
            row_of[pid] = i
        wanted = set(npz_ids.tolist())
        for i, pid in enumerate(csv_ids):
            if pid not in wanted:
                raise DataError(csv.where(i, id_col), f"patient id {pid!r} has no image in {name}", "a row per image")
        order = np.empty(total, dtype=np.int64)
        for i, pid in enumerate(npz_ids.tolist()):
            if pid not in row_of:
                raise DataError(
                    locate(i), f"patient id {pid!r} has no row in {csv.name}", "clinical data for every image"
                )
            order[i] = row_of[pid]
        ids = npz_ids
    reordered = {h: [v[k] for k in order] for h, v in cells.items()}
    table = build_clinical(
        reordered,
        total,
        csv.name,
        lambda i, col: csv.where(int(order[i]), col),
        declared_columns(cfg),
    )
    return ids, table
