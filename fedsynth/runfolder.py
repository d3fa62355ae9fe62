"""The run folder: the one place that writes the contract files other tools read.

Layout (checked by ``shared/checks/run-contract``)::

    DIR/config.toml            resolved configuration
    DIR/schema.json            data schema (columns, bounds and where they come from, classes)
    DIR/metrics.jsonl          one object per hospital per round ("kind": "hospital") and per round
                               for the server ("kind": "server")
    DIR/privacy.json           per hospital: delta, epsilon (from the full history), history
    DIR/summary.json           final metrics: tstr, trtr, privacy summary
    DIR/model/                 final global checkpoint (weights.npz + model.json)
    DIR/synthetic/samples.npz  images, clinical, labels; samples.png: a grid per class
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
from fedsynth.privacy.ledger import PrivacyLedger
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

    def hospital_state_dir(self, hospital_id: int) -> Path:
        """Where a simulated hospital keeps its state (a real site keeps it on its own disk)."""
        return self.path / "hospitals" / f"hospital-{hospital_id}"

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

    def write_privacy(
        self, ledgers: dict[int, PrivacyLedger], config: RunConfig, schema: Schema, plans: dict[int, dict]
    ) -> dict:
        """privacy.json: epsilon of every hospital recomputed from its full history."""
        hospitals = {}
        for hid in sorted(ledgers):
            ledger = ledgers[hid]
            hospitals[str(hid)] = {
                "delta": ledger.delta,
                "epsilon": ledger.epsilon() if ledger.private else None,
                "accountant": ledger.accountant,
                "private": ledger.private,
                "target_epsilon": config.privacy.target_epsilon if config.privacy.enabled else None,
                "epsilon_budget": config.privacy.budget if config.privacy.enabled else None,
                **plans.get(hid, {}),
                "history": [e.to_dict() for e in ledger.events],
            }
        private = config.privacy.enabled and all(h["private"] for h in hospitals.values())
        data = {
            "private": private,
            "label": "differentially private (DP-SGD)" if private else "NON-PRIVATE BASELINE (no DP guarantee)",
            "mechanism": "DP-SGD with Poisson sampling on every network that touches real records "
            "(autoencoder, discriminator); the generator is post-processing",
            "conditioning_labels": "sampled uniformly (no access to real label counts)",
            "tabular_bounds": schema.bounds_source
            if schema.bounds_source == "public"
            else "data: numeric bounds fitted on raw data, NOT covered by the DP guarantee",
            "hospitals": hospitals,
        }
        write_json(self.path / "privacy.json", data)
        return data

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
