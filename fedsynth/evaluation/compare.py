"""Compare several runs: one table and plots of privacy budget vs utility vs memorization.

Every run folder is evaluated first when it has no DIR/audit/evaluation.json (see
:func:`fedsynth.evaluation.report.evaluate_run`); the comparison only reads the ``summary`` and
``verdicts`` blocks, so every column means exactly what it means in each run's report. Those blocks
hold statistics of real records computed without DP, so compare.html carries the audit banner too.
Runs without a meaningful DP guarantee (``privacy_guarantee`` other than "dp") are drawn at the
right edge of the epsilon axis, labelled "not private"; the table shows their epsilon as recorded.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from fedsynth.errors import DataError
from fedsynth.evaluation import audit, plots
from fedsynth.evaluation.page import CSS, esc, fmt, prose, table
from fedsynth.evaluation.report import EVALUATION_JSON, audit_dir, evaluate_run

#: Summary columns of the comparison, in order.
COLUMNS = (
    "private",
    "epsilon_max",
    "privacy_guarantee",
    "n_hospitals",
    "n_synthetic",
    "tstr_mcc",
    "trtr_mcc",
    "utility_ratio",
    "tstr_auroc",
    "frechet_distance",
    "precision",
    "recall",
    "share_above_095",
    "share_above_095_residual",
    "exceeds_holdout_p99",
    "mia_auc_pixel",
    "mia_auc_embedding",
    "ratio_mia_auc_pixel",
    "ratio_mia_auc_embedding",
    "density_mia_auc",
    "reality_guarantee",
    "diversity_guarantee",
)


def _labels(run_dirs: list[Path]) -> list[str]:
    """Short unique names: the folder name, or parent/name where names collide."""
    names = [d.name or str(d) for d in run_dirs]
    return [f"{d.parent.name}/{d.name}" if names.count(n) > 1 else n for d, n in zip(run_dirs, names, strict=True)]


def load_evaluations(run_dirs: list[Path]) -> list[dict[str, Any]]:
    """DIR/audit/evaluation.json of every run, evaluating runs that have none."""
    out = []
    for d in run_dirs:
        d = Path(d)
        if not d.is_dir():
            raise DataError(str(d), "not a directory", "a run folder")
        path = audit_dir(d) / EVALUATION_JSON
        out.append(json.loads(path.read_text()) if path.exists() else evaluate_run(d)[0])
    return out


def comparison_rows(run_dirs: list[Path], evaluations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One flat row per run: run, folder, the :data:`COLUMNS` and the verdict levels."""
    rows = []
    for label, d, ev in zip(_labels(run_dirs), run_dirs, evaluations, strict=True):
        s = ev["summary"]
        row: dict[str, Any] = {"run": label, "folder": str(d)}
        row.update({k: s.get(k) for k in COLUMNS})
        row.update({f"verdict_{k}": v["level"] for k, v in ev.get("verdicts", {}).items()})
        rows.append(row)
    return rows


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """compare.csv: a header with every field of any row; missing values empty."""
    fields: list[str] = []
    for r in rows:
        fields.extend(k for k in r if k not in fields)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: "" if r.get(k) is None else r.get(k) for k in fields})


def _meaningful(row: dict[str, Any]) -> bool:
    """Whether the run's epsilon is a meaningful DP guarantee (level "dp"; older evaluations: private)."""
    level = row.get("privacy_guarantee")
    return level == "dp" if level is not None else bool(row.get("private"))


def compare_runs(run_dirs: list[Path], out_dir: Path) -> Path:
    """Write out_dir/compare.html and out_dir/compare.csv for ``run_dirs``; returns the HTML path."""
    if not run_dirs:
        raise DataError("compare", "no run folders given", "one or more run folders")
    run_dirs = [Path(d) for d in run_dirs]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = comparison_rows(run_dirs, load_evaluations(run_dirs))
    write_csv(rows, out_dir / "compare.csv")

    labels = [r["run"] for r in rows]
    eps = [r["epsilon_max"] if _meaningful(r) else None for r in rows]
    attack_keys = ("mia_auc_pixel", "mia_auc_embedding", "ratio_mia_auc_pixel", "ratio_mia_auc_embedding")
    mia = [max((r[k] for k in attack_keys if r.get(k) is not None), default=None) for r in rows]
    figures = [
        plots.compare_scatter(
            eps,
            [r["tstr_mcc"] for r in rows],
            labels,
            xlabel="epsilon (max over hospitals)",
            ylabel="TSTR MCC",
            title="privacy budget vs utility",
        ),
        plots.compare_scatter(
            eps,
            [r["share_above_095_residual"] for r in rows],
            labels,
            xlabel="epsilon (max over hospitals)",
            ylabel="share of near-copies (residual r > 0.95)",
            title="privacy budget vs memorization",
        ),
        plots.compare_scatter(
            eps,
            mia,
            labels,
            xlabel="epsilon (max over hospitals)",
            ylabel="membership-inference AUC (strongest)",
            title="privacy budget vs attack",
        ),
        plots.compare_scatter(
            [r["share_above_095_residual"] for r in rows],
            [r["tstr_mcc"] for r in rows],
            labels,
            xlabel="share of near-copies (residual r > 0.95)",
            ylabel="TSTR MCC",
            title="memorization vs utility",
        ),
    ]
    headers = ["run", *COLUMNS, *[k for k in rows[0] if k.startswith("verdict_")]]
    body = table(
        headers,
        [[r.get(h) if h != "epsilon_max" else fmt(r.get(h), "epsilon") for h in headers] for r in rows],
    )
    imgs = "".join(f'<img alt="comparison {i}" src="{uri}">' for i, uri in enumerate(figures))
    imgs = f'<div style="display: flex; flex-wrap: wrap; gap: 1em;">{imgs}</div>'
    body = f'<div style="overflow-x: auto;">{body}</div>'
    html = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>fedsynth: run comparison</title>'
        f"<style>{CSS}</style></head><body>"
        f'<div class="banner audit" id="audit-banner">{esc(audit.COMPARE_NOTICE)}</div><h1>Run comparison</h1>'
        f"<p class='muted'>{len(rows)} runs: {esc(', '.join(str(d) for d in run_dirs))}</p>{body}{imgs}"
        "<p class='method'><b>How:</b> "
        + prose(
            """
            every column is the run's audit/evaluation.json summary value (see each run's
            audit/report.html for how it was computed). epsilon is the largest over the run's hospitals;
            runs without a meaningful DP guarantee (privacy_guarantee 'none' or 'not-private': no noise,
            an epsilon above the meaningful threshold, or noise reproducible from a seed) are drawn at the
            right edge, labelled 'not private'.
            """
        )
        + "</p></body></html>"
    )
    path = out_dir / "compare.html"
    path.write_text(html, encoding="utf-8")
    return path
