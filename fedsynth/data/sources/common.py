"""Pieces shared by the user-data loaders: schema file, unique ids, assembling the Dataset."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fedsynth.data.config import DataConfig
from fedsynth.data.load_report import LoadReport
from fedsynth.data.records import ColumnSpec, Dataset, Schema
from fedsynth.data.sources.clinical import ClinicalTable, load_schema_file
from fedsynth.errors import DataError


def declared_columns(cfg: DataConfig) -> tuple[ColumnSpec, ...] | None:
    """Columns declared in ``cfg.schema_file``, or None without one."""
    return load_schema_file(cfg.schema_file) if cfg.schema_file else None


def check_unique_ids(ids: np.ndarray, locate: Callable[[int], str]) -> None:
    """Raise DataError naming the first two records that share a patient id.

    One record per patient: differential privacy protects patients, so a patient must not
    appear twice (e.g. in two hospitals, or in training and test data).
    """
    first: dict[str, int] = {}
    for i, pid in enumerate(ids.tolist()):
        if not pid:
            raise DataError(locate(i), "empty patient id", "a non-empty patient id")
        if pid in first:
            raise DataError(
                locate(i),
                f"patient id {pid!r} already used by {locate(first[pid])}",
                "one record per patient (unique patient ids)",
            )
        first[pid] = i


def assemble(
    *,
    labels: np.ndarray,
    class_names: tuple[str, ...],
    class_names_declared: bool,
    patient_ids: np.ndarray,
    images: np.ndarray | None,
    table: ClinicalTable,
    source: str,
    report: LoadReport,
) -> Dataset:
    """Build the pooled Dataset; bounds_source is "data" if anything was fitted on the data, and
    class_names_source is "data" when the class names were not declared in ``data.class_names``.
    ``report`` holds the loader's notes and memory estimate."""
    schema = Schema(
        columns=table.columns,
        class_names=class_names,
        image_shape=None if images is None else tuple(int(s) for s in images.shape[1:]),  # type: ignore[arg-type]
        bounds_source="data" if table.fitted else "public",
        class_names_source="declared" if class_names_declared else "data",
    )
    return Dataset(
        schema=schema,
        labels=labels.astype(np.int64),
        patient_ids=np.asarray(patient_ids, dtype=str),
        images=images,
        clinical=table.values,
        source=source,
        report=report,
    )
