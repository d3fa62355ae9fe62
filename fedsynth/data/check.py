"""``check_data``: validate a data configuration and say what a run would train on, without training.

It builds the federation exactly as a run does (``load_federation``: every loader check and size
guard runs, and the result is cached, so a run that follows in the same process does not load the
data twice) and summarizes it: per hospital and for the held-out test split the record and label
counts and the memory the records take; the image shape, the clinical columns with their kinds and
bounds, the loader's notes, and warnings about what will make the run's scores unreliable (a
test split under ``guards.MIN_TEST_RECORDS_PER_CLASS`` records per class). A refused input raises the
loader's ``DataError``, which names the file, field and row.

``fedsynth check-data`` prints this summary, and ``fedsynth simulate`` runs the same check before
the simulation engine starts, so a bad input fails in about a second instead of after Ray started.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from fedsynth.data.config import DataConfig
from fedsynth.data.federated import load_federation
from fedsynth.data.guards import check_memory, small_test_warning
from fedsynth.data.load_report import MemoryEstimate
from fedsynth.data.records import Dataset, Schema


@dataclass(frozen=True)
class SplitSummary:
    """One hospital's records or the test split: counts and the bytes its records take."""

    name: str
    records: int
    class_counts: tuple[int, ...]
    memory_bytes: int


@dataclass(frozen=True)
class DataCheck:
    """What a run with this data configuration would train and score on."""

    source: str
    schema: Schema
    #: The hospitals (in order), then the test split.
    splits: tuple[SplitSummary, ...]
    memory: MemoryEstimate
    limit_mb: int
    notes: tuple[str, ...]
    warnings: tuple[str, ...]
    seconds: float

    @property
    def hospitals(self) -> tuple[SplitSummary, ...]:
        return self.splits[:-1]

    @property
    def test(self) -> SplitSummary:
        return self.splits[-1]


def check_data(cfg: DataConfig, num_hospitals: int, seed: int) -> DataCheck:
    """Load and check the federation of ``cfg``; raises DataError/ConfigError for a refused input."""
    started = time.perf_counter()
    fed = load_federation(cfg, num_hospitals, seed)
    splits = tuple(
        [_summary(f"hospital {h}", ds, fed.schema) for h, ds in enumerate(fed.hospitals)]
        + [_summary("test", fed.test, fed.schema)]
    )
    held = sum(s.memory_bytes for s in splits)
    loaded = fed.report.memory
    memory = MemoryEstimate(
        source_bytes=loaded.source_bytes if loaded else 0,
        working_bytes=loaded.working_bytes if loaded else 0,
        records_bytes=held,
    )
    check_memory(cfg.source if not cfg.path else cfg.path, memory, cfg)
    return DataCheck(
        source=_describe_source(cfg),
        schema=fed.schema,
        splits=splits,
        memory=memory,
        limit_mb=cfg.max_memory_mb,
        notes=(*fed.report.notes, *_schema_notes(fed.schema)),
        warnings=tuple(filter(None, [small_test_warning(splits[-1].class_counts, fed.schema.class_names)])),
        seconds=time.perf_counter() - started,
    )


def dataset_bytes(ds: Dataset) -> int:
    """Bytes the arrays of ``ds`` take in memory."""
    arrays = (ds.labels, ds.patient_ids, ds.images, ds.clinical)
    return int(sum(a.nbytes for a in arrays if a is not None))


def _summary(name: str, ds: Dataset, schema: Schema) -> SplitSummary:
    counts = np.bincount(ds.labels, minlength=schema.num_classes)
    return SplitSummary(name, len(ds), tuple(int(c) for c in counts), dataset_bytes(ds))


def _describe_source(cfg: DataConfig) -> str:
    if cfg.source == "phantom":
        return f"phantom ({cfg.phantom_records} records, {cfg.phantom_classes} classes)"
    if cfg.source == "breast_cancer":
        return "breast_cancer (scikit-learn)"
    return f"{cfg.source} {cfg.path}"


def _schema_notes(schema: Schema) -> list[str]:
    """The parts of the schema inferred from the data (not DP), as notes."""
    return [
        f"schema: {part} (declare them in data.schema_file / data.class_names to keep them public)"
        for part in schema.inferred_from_data()
    ]
