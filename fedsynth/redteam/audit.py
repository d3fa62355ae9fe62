"""Scoring a malicious server's reconstructions against the true records (simulation only).

The malicious server (:mod:`fedsynth.attacks.server`) writes what it recovered to ``DIR/attack/``;
only the data owner can say how good that is. In a simulation the run folder also holds the
simulated hospitals' sites, so this audit reads each hospital's own records and scores, per true
record, the distance to the closest reconstruction the server got from *that* hospital's updates
(every attacked round pooled):

- ``image`` (code-shipping imprint): 1 - SSIM of min-max normalized images;
- ``table`` (weights-only, table encoder): normalized L2 of the encoded clinical row (numerics
  scaled by the schema's public bounds, categories one-hot), so 0.1 means a root-mean-square error
  of 10% of each column's public range;
- ``latent`` (weights-only, latent discriminator): normalized L2 of the latent code, per-dimension
  scale the spread of the hospital's true latents; ``latent-image``: the images the server decoded
  from those latents with the autoencoder it holds, 1 - SSIM.

Writes ``audit/attack/records.csv`` (one row per true record and target), ``scores.json``,
``cdf.png`` and ``pairs-<target>.png``: audit artefacts that show real records (the folder's
README says so), kept apart from what the server holds (``attack/``).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fedsynth.attacks.scoring import image_distances, save_cdf_plot, save_pair_grid, score, vector_distances
from fedsynth.config import load_config
from fedsynth.data.records import Dataset, Schema
from fedsynth.data.records_file import load_records
from fedsynth.evaluation.audit import ATTACK_SCORES_CONTENTS, ATTACK_SCORES_DIR, readme
from fedsynth.models.generator import MultimodalGenerator, build_generator
from fedsynth.models.table_autoencoder import TableCodec
from fedsynth.runfolder import RunFolder, write_json

PAIRS_SHOWN = 12
RECORD_COLUMNS = ["hospital", "record", "target", "distance", "closest_round"]


@dataclass
class _Recovered:
    """Everything the server recovered from one hospital for one target, pooled over rounds."""

    values: list[np.ndarray]
    images: list[np.ndarray]
    rounds: list[np.ndarray]

    def stacked(self, key: str) -> np.ndarray | None:
        parts = getattr(self, key)
        return np.concatenate(parts) if parts else None


def _recovered(attack_dir: Path) -> dict[tuple[int, str], _Recovered]:
    found: dict[tuple[int, str], _Recovered] = {}
    for path in sorted((attack_dir / "reconstructions").glob("round-*-hospital-*-*.npz")):
        _, rnd, _, hid, target = path.stem.split("-", 4)
        with np.load(path) as z:
            entry = found.setdefault((int(hid), target), _Recovered([], [], []))
            values = z["values"]
            entry.values.append(values)
            entry.rounds.append(np.full(len(values), int(rnd)))
            if "images" in z.files:
                entry.images.append(z["images"])
    return found


def _final_model(run: RunFolder, schema: Schema) -> MultimodalGenerator:
    config = load_config(run.path / "config.toml")
    model = build_generator(schema, config.model, config.seed)
    with np.load(run.path / "model" / "weights.npz") as z:
        model.load_weights({k: z[k] for k in z.files})
    return model


def _true_latents(model: MultimodalGenerator, data: Dataset) -> np.ndarray:
    with torch.no_grad():
        images = None if data.images is None else torch.as_tensor(data.images)
        clinical = None if data.clinical is None else torch.as_tensor(data.clinical)
        return model.autoencoder.encode(images, clinical).numpy().astype(np.float64)


def audit_attack(run_dir: str | Path) -> dict:
    """Score ``run_dir``'s reconstructions against its simulated hospitals' records (see the module
    docstring); returns (and writes) ``attack/scores.json``."""
    run = RunFolder(run_dir)
    attack_dir = run.path / "attack"
    out = run.path / ATTACK_SCORES_DIR
    out.mkdir(parents=True, exist_ok=True)
    (out / "README.txt").write_text(readme(dict(ATTACK_SCORES_CONTENTS), "the red-team audit (fedsynth.redteam)"))
    description = json.loads((attack_dir / "attack.json").read_text())
    schema = Schema.from_dict(run.read_json("schema.json"))
    codec = TableCodec(schema) if schema.has_table else None
    recovered = _recovered(attack_dir)
    model = _final_model(run, schema) if any(t == "latent" for _, t in recovered) else None

    rows: list[list] = []
    distances: dict[str, list[np.ndarray]] = {}
    pairs: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
    for (hid, target), entry in sorted(recovered.items()):
        data = load_records(run.sites_dir / f"hospital-{hid}" / "data.npz", source=f"hospital {hid}")
        values, rounds = entry.stacked("values"), entry.stacked("rounds")
        assert values is not None and rounds is not None
        scored: list[tuple[str, np.ndarray, np.ndarray]] = []
        if target == "image" and data.images is not None:
            recon = values.reshape(len(values), *data.images.shape[1:])
            dist, closest = image_distances(data.images, recon)
            scored.append(("image", dist, closest))
            pairs.setdefault("image", (data.images, recon, closest, dist))
        elif target == "table" and codec is not None and data.clinical is not None:
            true = codec.encode(torch.as_tensor(data.clinical)).numpy().astype(np.float64)
            dist, closest = vector_distances(true, values, np.ones(true.shape[1]))
            scored.append(("table", dist, closest))
        elif target == "latent" and model is not None:
            true = _true_latents(model, data)
            spread = true.std(axis=0) + 1e-8
            dist, closest = vector_distances(true, values, spread)
            scored.append(("latent", dist, closest))
            decoded = entry.stacked("images")
            if decoded is not None and data.images is not None:
                dist_i, closest_i = image_distances(data.images, decoded)
                scored.append(("latent-image", dist_i, closest_i))
                pairs.setdefault("latent-image", (data.images, decoded, closest_i, dist_i))
        for name, dist, closest in scored:
            distances.setdefault(name, []).append(dist)
            for i, (d, c) in enumerate(zip(dist, closest)):
                rows.append([hid, i, name, float(d), int(rounds[c]) if c >= 0 else ""])

    with (out / "records.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(RECORD_COLUMNS)
        writer.writerows(rows)
    pooled = {name: np.concatenate(parts) for name, parts in distances.items()}
    scores = {
        "threat_model": description["threat_model"],
        "bins": description["bins"],
        "targets": {name: {**score(d).to_dict(), "records": int(len(d))} for name, d in sorted(pooled.items())},
    }
    if pooled:
        save_cdf_plot(pooled, out / "cdf.png", f"Reconstruction distances ({description['threat_model']})")
    for name, (true, recon, closest, dist) in pairs.items():
        best = np.argsort(dist, kind="stable")[:PAIRS_SHOWN]  # the best recoveries of one hospital
        save_pair_grid(true[best], recon, closest[best], out / f"pairs-{name}.png", distances=dist[best])
    write_json(out / "scores.json", scores)
    return scores
