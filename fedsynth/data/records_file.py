"""A data set on disk in fedsynth's own format: one ``.npz`` holding the records and their schema.

This is how a simulated hospital's records reach its site: the simulation writes each hospital's
partition to its own file and the hospital reads only that file (never the pooled data). Keys:
``labels`` (int64), ``patient_ids`` (str), optional ``images`` (float32 N x C x H x W in [0, 1]) and
``clinical`` (float32 N x columns), and ``schema`` (the schema as a JSON string). Loading checks
every key and the records against the schema, and names the file and key of any problem.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

from fedsynth.data.records import Dataset, Schema
from fedsynth.errors import DataError

REQUIRED = ("labels", "patient_ids", "schema")


def save_records(dataset: Dataset, path: str | Path) -> Path:
    """Write ``dataset`` to ``path`` atomically (a reader never sees a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {
        "labels": np.asarray(dataset.labels, dtype=np.int64),
        "patient_ids": np.asarray(dataset.patient_ids, dtype=str),
        "schema": np.array(json.dumps(dataset.schema.to_dict())),
    }
    if dataset.images is not None:
        arrays["images"] = dataset.images
    if dataset.clinical is not None:
        arrays["clinical"] = dataset.clinical
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return path


def load_records(path: str | Path, source: str | None = None) -> Dataset:
    """Read a records file written by :func:`save_records`; every problem names the file and key."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise DataError(where, "file not found", "a fedsynth records file (.npz)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DataError(where, f"cannot be read as .npz ({e})", "a fedsynth records file") from e
    missing = [k for k in REQUIRED if k not in arrays]
    if missing:
        raise DataError(where, f"no key {missing[0]!r}", f"keys {list(REQUIRED)} plus images and/or clinical")
    try:
        schema = Schema.from_dict(json.loads(str(arrays["schema"])))
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise DataError(f"{where}, key 'schema'", f"not a valid schema ({e})", "the schema as JSON") from e
    if arrays["labels"].size == 0:
        raise DataError(f"{where}, key 'labels'", "no records", "at least one record")
    return Dataset(
        schema=schema,
        labels=arrays["labels"].astype(np.int64),
        patient_ids=arrays["patient_ids"].astype(str),
        images=arrays.get("images"),
        clinical=arrays.get("clinical"),
        source=source or where,
    )
