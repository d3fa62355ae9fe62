"""Reading a run folder for evaluation: the real data (re-derived), the synthetic data and the logs.

The real records are not stored in the run folder: they are re-derived deterministically from the
run's configuration with ``fedsynth.data.load_federation(cfg.data, num_hospitals, seed)``, exactly
as the run did. Training data = the hospitals' records pooled (keeping which hospital each record
came from); holdout = the federation's held-out real test split, which no hospital trained on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from fedsynth.data.records import Dataset, Schema
from fedsynth.errors import DataError


class RealData(Protocol):
    """What ``load_federation`` returns (``fedsynth.data.FederatedData``)."""

    hospitals: list[Dataset]
    test: Dataset
    schema: Schema


@dataclass
class RunData:
    """Everything the evaluation of one run needs."""

    run_dir: Path
    seed: int
    schema: Schema
    train: Dataset
    #: Hospital index (0..N-1) of every training record.
    hospital_of: np.ndarray
    hospital_names: list[str]
    holdout: Dataset
    synthetic: Dataset
    privacy: dict[str, Any] | None
    summary: dict[str, Any] | None
    metrics: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)


def pool(datasets: list[Dataset]) -> tuple[Dataset, np.ndarray]:
    """All records of ``datasets`` in one data set, and the index of the data set each came from."""
    pooled = Dataset.concat(list(datasets), "training data (all hospitals)")
    origin = np.concatenate([np.full(len(d), i, dtype=np.int64) for i, d in enumerate(datasets)])
    return pooled, origin


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(str(path), f"not valid JSON ({e})", "a JSON object") from e


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """metrics.jsonl as a list of objects (empty when the file is missing); bad lines are named."""
    if not path.exists():
        return []
    out = []
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise DataError(f"{path}, line {i}", f"not valid JSON ({e})", "one JSON object per line") from e
    return out


def load_synthetic(path: Path, schema: Schema) -> Dataset:
    """synthetic/samples.npz as a Dataset of ``schema`` (validated: a bad row raises DataError)."""
    if not path.exists():
        raise DataError(str(path), "file not found", "the run's synthetic samples (synthetic/samples.npz)")
    with np.load(path, allow_pickle=False) as z:
        if "labels" not in z:
            raise DataError(str(path), "no 'labels' array", "arrays labels[, images][, clinical]")
        labels = z["labels"].astype(np.int64)
        images = z["images"].astype(np.float32) if schema.has_image and "images" in z else None
        clinical = z["clinical"].astype(np.float32) if schema.has_table and "clinical" in z else None
    ids = np.array([f"S{i:06d}" for i in range(labels.size)])
    return Dataset(schema=schema, labels=labels, patient_ids=ids, images=images, clinical=clinical, source=str(path))


def load_real(run_dir: Path) -> tuple[RealData, int]:
    """Re-derive the run's real data from its config.toml; returns (federation, seed)."""
    from fedsynth.config import load_config
    from fedsynth.data import load_federation

    cfg = load_config(run_dir / "config.toml")
    return load_federation(cfg.data, cfg.federation.num_hospitals, cfg.seed), int(cfg.seed)


def load_run(run_dir: Path, *, real: RealData | None = None, seed: int | None = None) -> RunData:
    """Read a run folder. ``real``/``seed`` replace re-deriving the real data (tests, custom data)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(str(run_dir), "not a directory", "a run folder written by fedsynth simulate")
    notes: list[str] = []
    if real is None:
        real, cfg_seed = load_real(run_dir)
        seed = cfg_seed if seed is None else seed
    if seed is None:
        seed = 0
    schema = real.schema
    schema_json = _read_json(run_dir / "schema.json")
    if schema_json is not None and Schema.from_dict(schema_json) != schema:
        notes.append("schema.json differs from the schema of the re-derived real data; the latter is used")
    train, origin = pool(list(real.hospitals))
    names = [str(i) for i in range(len(real.hospitals))]
    return RunData(
        run_dir=run_dir,
        seed=int(seed),
        schema=schema,
        train=train,
        hospital_of=origin,
        hospital_names=names,
        holdout=real.test,
        synthetic=load_synthetic(run_dir / "synthetic" / "samples.npz", schema),
        privacy=_read_json(run_dir / "privacy.json"),
        summary=_read_json(run_dir / "summary.json"),
        metrics=read_metrics(run_dir / "metrics.jsonl"),
        notes=notes,
    )
