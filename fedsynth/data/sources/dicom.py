"""A folder of DICOM files (searched recursively), read with pydicom.

Every regular file in the folder must be a readable single-frame DICOM image (except the files
named by ``data.label_csv`` / ``data.schema_file``, if they lie inside it). Problems of single files
(not DICOM, undecodable pixels, an image over ``data.max_image_side``, missing or empty fields,
no label, a patient id that another file shares) are collected for every file and reported at
once as a table (file, field, problem). With ``data.dicom_skip_refused = true`` the refused files
are left out instead, and a note lists them and says how many were skipped; files sharing a
patient id are all refused (which one is the patient's record cannot be told).

Each file is read in turn and its image resized at once to ``data.image_size`` (see
``dicom_scan.py`` for pixel windowing and field conversion); a note says how many images were
resized from which sizes. The file count is checked against ``data.max_records`` and the memory
estimate against ``data.max_memory_mb`` before the first file is read, and again with the largest
image read so far; each image's Rows/Columns are checked against ``data.max_image_side`` before
its pixels are decoded.

Clinical columns are the header keywords in ``data.dicom_fields``. Labels come from the header
keyword ``data.dicom_label_field`` or from ``data.label_csv``, a CSV mapping ``data.file_column``
(path relative to ``data.path``) to ``data.label_column``.

Patient ids are the PatientID header; they must be unique (one image per patient: select one
slice/series per patient before loading).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydicom.datadict import tag_for_keyword

from fedsynth.data.config import DataConfig
from fedsynth.data.guards import check_memory, check_record_count, records_bytes, working_bytes
from fedsynth.data.load_report import LoadReport, MemoryEstimate
from fedsynth.data.problems import FileProblem, FileProblemsError, problem_table
from fedsynth.data.records import Dataset
from fedsynth.data.sources.clinical import build_clinical
from fedsynth.data.sources.common import assemble, check_unique_ids, declared_columns
from fedsynth.data.sources.csv_table import CsvTable, read_csv
from fedsynth.data.sources.dicom_scan import Scan, read_scan
from fedsynth.data.sources.images import resize_note, stack_images
from fedsynth.data.sources.labels import encode_labels
from fedsynth.errors import ConfigError, DataError

REFUSED_EXPECTED = (
    "every file a readable single-frame DICOM image with a unique PatientID, the fields of "
    "data.dicom_fields and a label; fix or remove the files listed, or set data.dicom_skip_refused = true "
    "to train on the others"
)


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
    check_record_count(root.name, len(paths), cfg)
    largest = 0
    memory = _memory(len(paths), largest, cfg)
    check_memory(root.name, memory, cfg)
    label_table = _label_table(cfg, rel) if cfg.label_csv else None

    scans: list[Scan] = []
    problems: list[FileProblem] = []
    for path, r in zip(paths, rel):
        result = read_scan(path, r, cfg, set(label_table[1]) if label_table else None)
        if isinstance(result, Scan):
            scans.append(result)
            largest = max(largest, result.pixels)
            memory = _memory(len(paths), largest, cfg)
            check_memory(f"{root.name} ({r})", memory, cfg)
        else:
            problems.extend(result)
    problems.extend(_shared_ids(scans))
    refused = {p.file for p in problems}
    notes: list[str] = []
    if refused:
        problems.sort(key=lambda p: rel.index(p.file))
        if not cfg.dicom_skip_refused or len(refused) == len(paths):
            expected = REFUSED_EXPECTED if not cfg.dicom_skip_refused else "at least one file that is not refused"
            raise FileProblemsError(root.name, problems, len(paths), expected)
        notes.append(
            f"{root.name}: skipped {len(refused)} of {len(paths)} DICOM files refused for these problems "
            f"(data.dicom_skip_refused):\n{problem_table(problems)}"
        )
        scans = [s for s in scans if s.rel not in refused]
    kept = [s.rel for s in scans]

    images = stack_images([s.image for s in scans], cfg.color, cfg.image_size, lambda i: kept[i])
    ids = np.array([s.patient_id for s in scans])
    check_unique_ids(ids, lambda i: f"{kept[i]}, field PatientID")
    cells = {kw: [s.cells[kw] for s in scans] for kw in cfg.dicom_fields}
    table = build_clinical(cells, len(scans), root.name, lambda i, kw: f"{kept[i]}, field {kw}", declared_columns(cfg))

    if cfg.dicom_label_field:
        kw = cfg.dicom_label_field
        raw = [s.label or "" for s in scans]
        labels, class_names = encode_labels(raw, lambda i: f"{kept[i]}, field {kw}", cfg.class_names, root.name)
    else:
        assert label_table is not None
        raw, locate = _labels_from_csv(cfg, label_table, kept)
        labels, class_names = encode_labels(raw, locate, cfg.class_names, root.name)
    notes.extend(filter(None, [resize_note(root.name, [s.source_size for s in scans], cfg.image_size)]))
    return assemble(
        labels=labels,
        class_names=class_names,
        class_names_declared=bool(cfg.class_names),
        patient_ids=ids,
        images=images,
        table=table,
        source=root.name,
        report=LoadReport(notes=tuple(notes), memory=memory),
    )


def _memory(files: int, largest_pixels: int, cfg: DataConfig) -> MemoryEstimate:
    """Records (3 channels at most), every image resized (float64) and the working set of the
    largest image decoded so far (``largest_pixels`` = rows x columns x samples)."""
    size = cfg.image_size
    return MemoryEstimate(
        source_bytes=0,
        working_bytes=working_bytes(1, largest_pixels, 1, 1, size) + files * size * size * 3 * 8,
        records_bytes=records_bytes(files, 3, size, len(cfg.dicom_fields)),
    )


def _shared_ids(scans: list[Scan]) -> list[FileProblem]:
    """A problem for every file whose PatientID another file has too (all of them are refused)."""
    files_of: dict[str, list[str]] = {}
    for s in scans:
        files_of.setdefault(s.patient_id, []).append(s.rel)
    out = []
    for pid, files in files_of.items():
        if len(files) > 1:
            for f in files:
                others = ", ".join(o for o in files if o != f)
                out.append(
                    FileProblem(
                        f, "PatientID", f"patient id {pid!r} also in {others} (expected one record per patient)"
                    )
                )
    return out


def _label_table(cfg: DataConfig, rel: list[str]) -> tuple[CsvTable, dict[str, int]]:
    """The label CSV and the row of each file it names; errors in the CSV itself name its row."""
    table = read_csv(cfg.label_csv, "label CSV (data.label_csv)")
    files = table.require(cfg.file_column, "DICOM file paths relative to data.path (data.file_column)")
    table.require(cfg.label_column, "labels (data.label_column)")
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
    return table, row_of


def _labels_from_csv(
    cfg: DataConfig, label_table: tuple[CsvTable, dict[str, int]], kept: list[str]
) -> tuple[list[str], Callable[[int], str]]:
    table, row_of = label_table
    raw = table.columns[cfg.label_column]
    rows = [row_of[r] for r in kept]
    return [raw[k] for k in rows], (lambda i: table.where(rows[i], cfg.label_column))
