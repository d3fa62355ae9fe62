"""``load_federation``: the records of every simulated hospital plus the held-out real test split.

Only the simulation and audit layer calls it (the data owner in a simulation: it writes each
hospital's partition to that hospital's own site, and scores runs against the held-out split);
the server and the hospitals never do. It may be called in several processes (a report, an
audit), so the result is a pure function of its arguments (and of the input files): all
randomness comes from ``numpy.random.default_rng([seed, stream, ...])`` with fixed stream ids.
Results are cached per process (``functools.lru_cache``); the cached arrays are made read-only so
that no caller can change another caller's data.

Order of operations: load (or, for the phantom, sample) the pool; draw the stratified test split
(depends on seed and labels only, not on the number of hospitals); partition the train split over
hospitals; for the phantom, render each hospital with its own scanner and the test split with the
hospitals' scanners (see ``fedsynth.data.phantom``). Patient ids are those of the pool, so they are
unique across the whole federation (hospitals and test split).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from fedsynth.data.config import DataConfig
from fedsynth.data.guards import check_memory, check_record_count, records_bytes
from fedsynth.data.load_report import LoadReport, MemoryEstimate
from fedsynth.data.partition import partition, split_test
from fedsynth.data.phantom import PHANTOM_COLUMNS, draw_scanner, phantom_dataset, sample_cohort
from fedsynth.data.records import Dataset, Schema
from fedsynth.data.sources import load_source
from fedsynth.errors import ConfigError, DataError

# Random stream ids under one seed.
STREAM_COHORT = 0
STREAM_TEST_SPLIT = 1
STREAM_PARTITION = 2
STREAM_HOSPITAL_NOISE = 3
STREAM_TEST_SITES = 4
STREAM_TEST_NOISE = 5


@dataclass(frozen=True)
class FederatedData:
    """Per-hospital data sets, the held-out real test split and their common schema."""

    hospitals: tuple[Dataset, ...]
    test: Dataset
    schema: Schema
    #: The loader's notes and memory estimate for the pooled data (see ``fedsynth.data.load_report``).
    report: LoadReport = field(default_factory=LoadReport)

    @property
    def num_hospitals(self) -> int:
        return len(self.hospitals)

    def summary(self) -> dict:
        """Sizes and class counts per hospital and of the test split (for run summaries)."""
        return {
            "class_names": list(self.schema.class_names),
            "bounds_source": self.schema.bounds_source,
            "hospitals": [
                {"source": h.source, "records": len(h), "class_counts": h.class_counts().tolist()}
                for h in self.hospitals
            ],
            "test": {
                "source": self.test.source,
                "records": len(self.test),
                "class_counts": self.test.class_counts().tolist(),
            },
        }


def load_federation(cfg: DataConfig, num_hospitals: int, seed: int) -> FederatedData:
    """Hospitals' partitions and the test split for this config, hospital count and seed."""
    if not isinstance(cfg, DataConfig):
        raise ConfigError(f"data: {type(cfg).__name__} (expected a DataConfig)")
    if isinstance(num_hospitals, bool) or not isinstance(num_hospitals, int) or num_hospitals < 1:
        raise ConfigError(f"num_hospitals: {num_hospitals!r} (expected an integer >= 1)")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed: {seed!r} (expected an integer >= 0)")
    return _load_cached(cfg, num_hospitals, seed)


@functools.lru_cache(maxsize=8)
def _load_cached(cfg: DataConfig, num_hospitals: int, seed: int) -> FederatedData:
    if cfg.source == "phantom":
        fed = _phantom_federation(cfg, num_hospitals, seed)
    else:
        fed = _pool_federation(cfg, num_hospitals, seed)
    for ds in (*fed.hospitals, fed.test):
        _freeze(ds)
    return fed


def clear_federation_cache() -> None:
    """Forget cached federations (e.g. after input files changed within one process)."""
    _load_cached.cache_clear()


def _rng(seed: int, stream: int, *extra: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream, *extra])


def _split_and_partition(labels: np.ndarray, cfg: DataConfig, k: int, seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Test indices, and per hospital the pool indices of its records."""
    train_idx, test_idx = split_test(labels, cfg.test_fraction, _rng(seed, STREAM_TEST_SPLIT))
    parts = partition(
        labels[train_idx],
        k,
        cfg.partition,
        _rng(seed, STREAM_PARTITION, k),
        alpha=cfg.dirichlet_alpha,
        skew=cfg.quantity_skew,
        min_size=cfg.min_records_per_hospital,
    )
    return test_idx, [train_idx[p] for p in parts]


def _pool_federation(cfg: DataConfig, k: int, seed: int) -> FederatedData:
    pool = load_source(cfg, seed)
    test_idx, parts = _split_and_partition(pool.labels, cfg, k, seed)
    hospitals = []
    for h, idx in enumerate(parts):
        ds = pool.subset(idx)
        ds.source = f"{pool.source} hospital {h}"
        hospitals.append(ds)
    test = pool.subset(test_idx)
    test.source = f"{pool.source} test"
    return FederatedData(hospitals=tuple(hospitals), test=test, schema=pool.schema, report=pool.report or LoadReport())


def phantom_memory(cfg: DataConfig) -> MemoryEstimate:
    """The phantom's memory estimate, from the configuration alone (before anything is rendered):
    the sampled cohort (covariates, labels) and the rendered records."""
    n, size = cfg.phantom_records, cfg.image_size
    return MemoryEstimate(
        source_bytes=records_bytes(n, 0, size, len(PHANTOM_COLUMNS)),
        working_bytes=0,
        records_bytes=records_bytes(n, 1, size, len(PHANTOM_COLUMNS)),
    )


def _phantom_federation(cfg: DataConfig, k: int, seed: int) -> FederatedData:
    check_record_count("phantom (data.phantom_records)", cfg.phantom_records, cfg)
    memory = phantom_memory(cfg)
    check_memory("phantom (data.phantom_records, data.image_size)", memory, cfg)
    classes = cfg.phantom_classes
    cohort = sample_cohort(cfg.phantom_records, classes, _rng(seed, STREAM_COHORT))
    test_idx, parts = _split_and_partition(cohort.labels, cfg, k, seed)
    scanners = [draw_scanner(seed, h, cfg.scanner_shift) for h in range(k)]
    hospitals = tuple(
        phantom_dataset(
            cohort,
            idx,
            scanners[h],
            _rng(seed, STREAM_HOSPITAL_NOISE, h),
            cfg.image_size,
            classes,
            source=f"phantom hospital {h}",
        )
        for h, idx in enumerate(parts)
    )
    # each test record is imaged by the scanner of a randomly chosen hospital
    site = _rng(seed, STREAM_TEST_SITES, k).integers(0, k, size=test_idx.size)
    pieces = [
        phantom_dataset(
            cohort,
            test_idx[site == h],
            scanners[h],
            _rng(seed, STREAM_TEST_NOISE, h),
            cfg.image_size,
            classes,
            "phantom test",
        )
        for h in range(k)
        if np.any(site == h)
    ]
    order = np.argsort(np.concatenate([test_idx[site == h] for h in range(k) if np.any(site == h)]), kind="stable")
    test = _concat(pieces, "phantom test").subset(order)
    return FederatedData(hospitals=hospitals, test=test, schema=hospitals[0].schema, report=LoadReport(memory=memory))


def _concat(parts: list[Dataset], source: str) -> Dataset:
    if not parts:
        raise DataError(source, "no records", "a non-empty test split")
    return Dataset.concat(parts, source)


def _freeze(ds: Dataset) -> None:
    for arr in (ds.labels, ds.patient_ids, ds.images, ds.clinical):
        if arr is not None:
            arr.setflags(write=False)
