"""The utility curve: synthetic-data quality against epsilon, federated (3 and 8 hospitals) and
centralized (one site holding every record), on the phantom and on the breast-cancer table, over
several seeds, with a peer DP table synthesizer beside it.

Every point is a real run of the same mechanism ``fedsynth simulate`` runs (the in-process engine:
the same sites, server and run folder without Flower), with secure noise, scored on its own
held-out real split against its own pooled training records (on the phantom every hospital is a
scanner, so the number of hospitals changes the images; TRTR is per setting): TSTR MCC (train
on synthetic, test on real, the report's protocol), TRTR MCC (train on real), and on the
phantom the report's precision and recall (embedding space) and the number of its 6 known
image-table-label associations kept. A seed changes the cohort (phantom), the
split (both) and the partition; the DP noise is fresh in every run.

TRTR is computed on the same split in three record orders; the spread is reported (it must be
~0: the reference does not depend on the order of the records).

Peers: ``--peers-python`` names a Python with dpmm installed (see peers.py); MST is then run
centrally on the same training split at each epsilon and scored with the same TSTR protocol.

Usage:
    python experiments/quality/sweep.py --out runs/quality [--seeds 5] [--datasets phantom,breast_cancer]
        [--epsilons 1,3,10,30,inf] [--settings 3,8,central] [--peers-python .venv-peers/bin/python]
    python experiments/quality/sweep.py --out runs/quality --table-only   # tables from results.csv

Interrupted sweeps resume: rows already in results.csv are not run again, and a run folder that
already holds a finished run is scored without running it again.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from fedsynth.config import RunConfig, load_config
from fedsynth.data.federated import load_federation
from fedsynth.data.records import Dataset
from fedsynth.evaluation import associations, fidelity, utility
from fedsynth.evaluation.features import fit_embedding
from fedsynth.evaluation.run import load_run

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = {
    "phantom": ROOT / "experiments" / "configs" / "demo.toml",
    "breast_cancer": ROOT / "experiments" / "configs" / "breast_cancer.toml",
}
FIELDS = [
    "dataset",
    "method",
    "setting",
    "epsilon",
    "seed",
    "reported_epsilon",
    "tstr_mcc",
    "trtr_mcc",
    "tstr_over_trtr",
    "trtr_order_spread",
    "precision",
    "recall",
    "associations_kept",
    "associations_total",
    "seconds",
]


def config_for(dataset: str, setting: str, epsilon: float, seed: int, out: Path) -> RunConfig:
    hospitals = 1 if setting == "central" else int(setting)
    overrides = [
        f"seed={seed}",
        f"federation.num_hospitals={hospitals}",
        f'out_dir="{out}"',
        "site_policy.lifetime_epsilon_budget=0",
        "evaluation.centralized_baseline=false",
    ]
    if math.isinf(epsilon):
        overrides += ["privacy.enabled=false", "site_policy.require_dp=false"]
    else:
        overrides += [f"privacy.target_epsilon={epsilon}"]
    return load_config(CONFIGS[dataset], overrides)


def score(syn: Dataset, train: Dataset, test: Dataset, seed: int, images: bool) -> dict:
    tstr = utility.train_on_test_on(syn, test, seed=seed)
    row = {"tstr_mcc": tstr["mcc"]}
    if images:
        space = fit_embedding(test, seed=seed)
        fid = fidelity.fidelity_metrics(space.transform(train), space.transform(syn), seed=seed)
        known = associations.association_fidelity(train, syn).get("known", [])
        row.update(
            precision=fid["precision"],
            recall=fid["recall"],
            associations_kept=sum(k["kept"] for k in known),
            associations_total=len(known),
        )
    return row


def trtr_of(train: Dataset, test: Dataset, seed: int) -> tuple[float, float]:
    """TRTR MCC, and its largest change over two other orders of the training records."""
    base = utility.train_on_test_on(train, test, seed=seed)["mcc"]
    rng = np.random.default_rng(seed)
    others = [
        utility.train_on_test_on(train.subset(rng.permutation(len(train))), test, seed=seed)["mcc"] for _ in range(2)
    ]
    return base, max(abs(o - base) for o in others)


def peer_synthetic(python: str, train: Dataset, epsilon: float, seed: int, num: int) -> Dataset:
    """MST's synthetic table (see peers.py), fitted on ``train`` with the schema's public bounds."""
    schema = train.schema
    names = schema.column_names
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with (folder / "train.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow([*names, "label"])
            for row, label in zip(train.clinical, train.labels):
                w.writerow([*row.tolist(), f"class{label}"])
        domain = {c.name: {"lower": c.low, "upper": c.high} for c in schema.columns if c.kind == "numeric"}
        domain["label"] = {"categories": [f"class{k}" for k in range(schema.num_classes)]}
        (folder / "domain.json").write_text(json.dumps(domain))
        subprocess.run(
            [
                python,
                str(Path(__file__).with_name("peers.py")),
                str(folder / "train.csv"),
                str(folder / "domain.json"),
                str(epsilon),
                "1e-5",
                str(seed),
                str(num),
                str(folder / "synthetic.csv"),
            ],
            check=True,
            capture_output=True,
        )
        with (folder / "synthetic.csv").open() as f:
            rows = list(csv.DictReader(f))
    clinical = np.array([[float(r[n]) for n in names] for r in rows], dtype=np.float32)
    labels = np.array([int(r["label"].removeprefix("class")) for r in rows], dtype=np.int64)
    return Dataset(
        schema=schema,
        labels=labels,
        patient_ids=np.array([f"mst-{i}" for i in range(len(rows))]),
        images=None,
        clinical=clinical,
        source="synthetic",
    )


def new_row(dataset: str, method: str, setting: str, epsilon: float, seed: int) -> dict:
    return {"dataset": dataset, "method": method, "setting": setting, "epsilon": epsilon, "seed": seed}


def finish(row: dict, reported: float | None, trtr: float, spread: float, started: float) -> None:
    """Add the run's reported epsilon, the TRTR reference and the time to a result row."""
    row.update(
        reported_epsilon=reported,
        trtr_mcc=trtr,
        trtr_order_spread=spread,
        tstr_over_trtr=row["tstr_mcc"] / trtr if trtr else "",
        seconds=round(time.perf_counter() - started, 1),
    )


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open() as f:
        return list(csv.DictReader(f))


def append_row(path: Path, row: dict) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            w.writeheader()
        w.writerow({k: row.get(k, "") for k in FIELDS})


def key(row: dict) -> tuple:
    return (row["dataset"], row["method"], str(row["setting"]), str(float(row["epsilon"])), str(int(row["seed"])))


def run_sweep(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.csv"
    done = {key(r) for r in read_rows(results)}
    epsilons = [float(e) for e in args.epsilons.split(",")]
    settings = [s for s in args.settings.split(",") if s]  # empty: peers only
    for dataset in args.datasets.split(","):
        for seed in range(args.seeds):
            base_cfg = config_for(dataset, "3", 10.0, seed, out / "tmp")
            fed = load_federation(base_cfg.data, 3, seed)
            train = Dataset.concat(list(fed.hospitals), "train")
            trtr, spread = None, None
            for setting in settings:
                reference = None  # TRTR of this setting's own data (phantom: hospitals are scanners)
                for eps in epsilons:
                    row = new_row(dataset, "fedsynth-gaussian", setting, eps, seed)
                    if key(row) in done:
                        continue
                    run_dir = out / "runs" / dataset / f"{setting}-eps{eps:g}-seed{seed}"
                    cfg = config_for(dataset, setting, eps, seed, run_dir)
                    started = time.perf_counter()
                    if (run_dir / "summary.json").exists():  # finished earlier: score it again
                        summary = json.loads((run_dir / "summary.json").read_text())
                    else:
                        from fedsynth.simulation.engines import simulate_in_process

                        summary = simulate_in_process(cfg)
                    run = load_run(run_dir)
                    if reference is None:
                        reference = trtr_of(run.train, run.holdout, seed)
                    row.update(score(run.synthetic, run.train, run.holdout, seed, run.train.images is not None))
                    finish(row, summary.get("max_epsilon"), *reference, started)
                    append_row(results, row)
                    print(
                        f"{dataset} {setting} eps={eps:g} seed={seed}: "
                        f"TSTR {row['tstr_mcc']:.3f} / TRTR {reference[0]:.3f}",
                        flush=True,
                    )
            if args.peers_python and train.images is None:
                for eps in [e for e in epsilons if not math.isinf(e)]:
                    row = new_row(dataset, "MST (dpmm)", "central", eps, seed)
                    if key(row) in done:
                        continue
                    if trtr is None:
                        trtr, spread = trtr_of(train, fed.test, seed)
                    started = time.perf_counter()
                    syn = peer_synthetic(args.peers_python, train, eps, seed, base_cfg.evaluation.num_synthetic)
                    row.update(score(syn, train, fed.test, seed, False))
                    finish(row, eps, trtr, spread, started)
                    append_row(results, row)
                    print(f"{dataset} MST eps={eps:g} seed={seed}: TSTR {row['tstr_mcc']:.3f}", flush=True)


def mean_ci(values: list[float]) -> tuple[float, float, int]:
    """Mean and half-width of the 95% t-interval."""
    from scipy.stats import t

    v = np.asarray(values, dtype=float)
    n = len(v)
    if n < 2:
        return float(v.mean()) if n else math.nan, math.nan, n
    return float(v.mean()), float(t.ppf(0.975, n - 1) * v.std(ddof=1) / math.sqrt(n)), n


def fmt(values: list[float], digits: int = 2) -> str:
    m, h, n = mean_ci(values)
    return "n/a" if not n else (f"{m:.{digits}f}" if math.isnan(h) else f"{m:.{digits}f} ± {h:.{digits}f}")


def write_tables(out: Path) -> None:
    rows = read_rows(out / "results.csv")
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["method"], r["setting"], float(r["epsilon"])), []).append(r)
    order = {"3": 0, "8": 1, "central": 2}
    headers = ["data", "method", "hospitals", "epsilon", "seeds", "reported epsilon (max)", "TSTR MCC", "TRTR MCC"]
    headers += ["TSTR / TRTR", "precision", "recall", "associations kept"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for (dataset, method, setting, eps), rs in sorted(
        groups.items(), key=lambda kv: (kv[0][0], kv[0][1] != "fedsynth-gaussian", order.get(kv[0][2], 9), kv[0][3])
    ):

        def num(k: str, rs: list[dict] = rs) -> list[float]:
            return [float(r[k]) for r in rs if r.get(k) not in ("", None)]

        reported = num("reported_epsilon")
        lines.append(
            "| "
            + " | ".join(
                [
                    dataset,
                    method,
                    "centralized" if setting == "central" else setting,
                    "non-private" if math.isinf(eps) else f"{eps:g}",
                    str(len(rs)),
                    f"{max(reported):.3f}" if reported else "none",
                    fmt(num("tstr_mcc")),
                    fmt(num("trtr_mcc")),
                    fmt(num("tstr_over_trtr")),
                    fmt(num("precision")) if num("precision") else "",
                    fmt(num("recall")) if num("recall") else "",
                    (fmt(num("associations_kept"), 1) + f" of {int(num('associations_total')[0])}")
                    if num("associations_kept")
                    else "",
                ]
            )
            + " |"
        )
    spreads = [float(r["trtr_order_spread"]) for r in rows if r.get("trtr_order_spread")]
    lines.append("")
    lines.append(f"TRTR over three record orders: largest change {max(spreads) if spreads else float('nan'):.4f} MCC.")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    _plot(groups, out / "utility_curve.png")


def _plot(groups: dict[tuple, list[dict]], path: Path) -> None:
    from fedsynth.evaluation.plots import _fig, save_png

    datasets = sorted({k[0] for k in groups})
    fig, axes = _fig(5.5 * len(datasets), 3.8, len(datasets), 1)
    for i, dataset in enumerate(datasets):
        ax = axes[0, i]
        series = sorted({(k[1], k[2]) for k in groups if k[0] == dataset})
        for method, setting in series:
            pts = sorted((k[3], rs) for k, rs in groups.items() if k[:3] == (dataset, method, setting))
            xs = [30 * 3 if math.isinf(e) else e for e, _ in pts]
            stats = [mean_ci([float(r["tstr_over_trtr"]) for r in rs if r["tstr_over_trtr"]]) for _, rs in pts]
            label = (
                method
                if method != "fedsynth-gaussian"
                else ("centralized" if setting == "central" else f"{setting} hospitals")
            )
            ax.errorbar(
                xs,
                [s[0] for s in stats],
                yerr=[0 if math.isnan(s[1]) else s[1] for s in stats],
                marker="o",
                capsize=3,
                label=label,
            )
        ax.set_xscale("log")
        ax.set_xticks([1, 3, 10, 30, 90])
        ax.set_xticklabels(["1", "3", "10", "30", "non-\nprivate"])
        ax.axhline(0.75, color="grey", lw=0.8, ls="--")
        ax.set_xlabel("epsilon")
        ax.set_ylabel("TSTR MCC / TRTR MCC (mean, 95% CI)")
        ax.set_title(dataset, fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--datasets", default="phantom,breast_cancer")
    p.add_argument("--epsilons", default="1,3,10,30,inf")
    p.add_argument("--settings", default="3,8,central")
    p.add_argument("--peers-python", default="")
    p.add_argument("--table-only", action="store_true")
    args = p.parse_args()
    if not args.table_only:
        run_sweep(args)
    write_tables(Path(args.out))


if __name__ == "__main__":
    main()
