"""The run folder: the one place that writes the contract files other tools read.

Layout (checked by ``shared/checks/run-contract``)::

    DIR/config.toml            resolved configuration
    DIR/schema.json            data schema (columns, bounds and where they come from, classes)
    DIR/metrics.jsonl          one object per hospital per round ("kind": "hospital") and per round
                               for the server ("kind": "server")
    DIR/privacy.json           per hospital: delta, epsilon (from the full history), relation,
                               history; the run's guarantee in words; declared non-DP releases
    DIR/summary.json           privacy summary, communication; tstr/trtr added by the audit
    DIR/model/                 final global checkpoint (weights.npz + model.json)
    DIR/synthetic/samples.npz  images, clinical, labels; samples.png: a grid per class
    DIR/server/                server checkpoints and the run id
    DIR/sites/                 simulation only: each simulated hospital's site (its records,
                               state and ledger); SITE-PRIVATE, holds real records
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from fedsynth.config import RunConfig, save_config
from fedsynth.data.records import Dataset, Schema
from fedsynth.protocol import Arrays


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/Inf become null (browsers' JSON.parse rejects them), numpy scalars become Python."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (a reader never sees a half-written file)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_clean(data), indent=2, allow_nan=False))
    os.replace(tmp, path)


class RunFolder:
    """Writer (and reader of a few parts) of one run's folder."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def sites_dir(self) -> Path:
        """Where a simulation keeps its simulated hospitals' sites (records, state, ledgers)."""
        return self.path / "sites"

    def write_config(self, config: RunConfig) -> None:
        save_config(config, self.path / "config.toml")

    def write_schema(self, schema: Schema) -> None:
        write_json(self.path / "schema.json", schema.to_dict())

    def append_metrics(self, record: dict) -> None:
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(_clean(record), allow_nan=False) + "\n")
            f.flush()

    def set_aside_metrics(self, after_round: int) -> None:
        """On resume: move log lines of rounds after ``after_round`` (an interrupted round) to
        ``metrics.interrupted.jsonl``, so the round is logged once when it runs again and nothing
        is deleted."""
        if not self.metrics_path.exists():
            return
        keep, aside = [], []
        for line in self.metrics_path.read_text().splitlines():
            if not line.strip():
                continue
            try:
                (aside if json.loads(line).get("round", 0) > after_round else keep).append(line)
            except json.JSONDecodeError:  # a line cut by the crash
                aside.append(line)
        if aside:
            with (self.path / "metrics.interrupted.jsonl").open("a") as f:
                f.write("\n".join(aside) + "\n")
        tmp = self.metrics_path.with_suffix(".tmp")
        tmp.write_text("".join(line + "\n" for line in keep))
        os.replace(tmp, self.metrics_path)

    def read_metrics(self) -> list[dict]:
        if not self.metrics_path.exists():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]

    def write_privacy(self, document: dict) -> None:
        """privacy.json (built by :func:`fedsynth.federation.privacy_report.privacy_document`)."""
        write_json(self.path / "privacy.json", document)

    def read_json(self, name: str) -> dict:
        return json.loads((self.path / name).read_text())

    def write_summary(self, summary: dict) -> None:
        write_json(self.path / "summary.json", summary)

    def write_model(self, weights: Arrays, config: RunConfig, schema: Schema, description: str) -> None:
        model_dir = self.path / "model"
        model_dir.mkdir(exist_ok=True)
        np.savez(model_dir / "weights.npz", **weights)
        write_json(
            model_dir / "model.json",
            {"schema": schema.to_dict(), "model": {**config.model.__dict__}, "scored_model": description},
        )

    def write_synthetic(self, data: Dataset) -> Path:
        out = self.path / "synthetic"
        out.mkdir(exist_ok=True)
        arrays: dict[str, np.ndarray] = {"labels": data.labels, "patient_ids": data.patient_ids}
        if data.images is not None:
            arrays["images"] = data.images
        if data.clinical is not None:
            arrays["clinical"] = data.clinical
            arrays["clinical_columns"] = np.array(data.schema.column_names)
        np.savez_compressed(out / "samples.npz", **arrays)
        return out
