"""``fedsynth report`` and ``fedsynth compare``: evaluate run folders and write HTML reports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from fedsynth.errors import FedsynthError

console = Console(stderr=True)

REPORT_HELP = """Evaluate the synthetic data of a run: writes DIR/audit/report.html and DIR/audit/evaluation.json.

DIR/audit/ is an AUDIT ARTEFACT, not a differentially private release: the report shows real
patient records (training and held-out images, clinical distributions, per-record scores, class
counts, TRTR scores) computed without differential privacy. Keep it inside the data owners' walls;
DIR/audit/README.txt says so next to the files.

The real data are re-derived from DIR/config.toml (training = all hospitals' records, holdout =
the held-out real test split); the synthetic data are read from DIR/synthetic/samples.npz.

Computed: utility (train on synthetic / train on real, test on the held-out real split; logistic
regression and random forest chosen on a validation split of the training data; MCC, AUROC,
balanced accuracy), fidelity (Frechet distance and precision/recall/density/coverage in a PCA
embedding fitted on the held-out split; per-column marginal distances and correlation matrices of
the clinical table; clinical <-> image associations), memorization (maximum Pearson correlation of
each synthetic image to all training images, raw and with the mean image removed), privacy
(distance to closest record, membership-inference attacks with ROC AUC, Reality and Diversity
Guarantees), 2-D embeddings per hospital and class, the privacy budget and guarantee of every
hospital (privacy.json) and, when the run folder holds a malicious server's results (DIR/attack/),
what it reconstructed: ReRo@0.1/0.3, exact recoveries and the distance CDF per target, next to each
hospital's theoretical ReRo bounds at prior 1/records (the record count is known only in a
simulation or when a hospital declared it public). Unscored reconstructions are scored first when
the run folder holds the simulated sites' true records.

report.html is one self-contained file (plots embedded, no network access needed); it says how
every number was computed. Typical run time: tens of seconds on two cores. The per-record arrays
behind the plots (real images, clinical rows, labels, hospital of every record) are written only
with --save-arrays, to DIR/audit/real-records-arrays.npz; --reuse re-renders the page from them.
"""

COMPARE_HELP = """Compare several evaluated runs: one table and plots (epsilon vs utility vs memorization).

Each DIR is a run folder; runs without DIR/audit/evaluation.json are evaluated first (as `fedsynth
report` would). Writes OUT/compare.html (self-contained) and OUT/compare.csv (one row per run): both
hold statistics of real records computed without differential privacy (audit artefacts).
"""


def register(app: typer.Typer) -> None:
    """Add the ``report`` and ``compare`` commands to the fedsynth command-line app."""

    @app.command("report", help=REPORT_HELP)
    def report(
        run_dir: Annotated[Path, typer.Argument(help="Run folder written by `fedsynth simulate` (holds config.toml).")],
        tsne: Annotated[
            bool, typer.Option(help="Add a t-SNE view of real vs synthetic records (a few seconds).")
        ] = True,
        local_utility: Annotated[
            bool,
            typer.Option(help="Also train on each hospital's records alone (what it could do without the federation)."),
        ] = True,
        reuse: Annotated[
            bool,
            typer.Option(
                help="Only re-render the page from DIR/audit/evaluation.json and the per-record arrays "
                "a previous --save-arrays run wrote (an error when they are missing)."
            ),
        ] = False,
        save_arrays: Annotated[
            bool,
            typer.Option(
                help="Also write DIR/audit/real-records-arrays.npz: real images, clinical rows, labels, "
                "hospital and per-record scores of every record (needed by --reuse; an audit artefact)."
            ),
        ] = False,
    ) -> None:
        from rich.markup import escape

        from fedsynth.evaluation.report import EVALUATION_JSON, audit_dir, legacy_files, render_report
        from fedsynth.progress import PhaseProgress

        for path in legacy_files(run_dir):
            console.print(
                f"[yellow]warning:[/yellow] {escape(str(path))} was written by an older fedsynth report and holds real "
                f"records or statistics of them next to the run's releases: delete it (outputs now go to "
                f"{escape(str(audit_dir(run_dir)))})",
                soft_wrap=True,
            )
        try:
            if not reuse:
                _score_attack(run_dir)
            with PhaseProgress(console) as progress:  # the evaluation's steps, on a terminal only
                out = render_report(
                    run_dir,
                    reuse=reuse,
                    tsne=tsne,
                    local_utility=local_utility,
                    save_arrays=save_arrays,
                    progress=progress,
                )
        except FedsynthError as e:
            _print_error(e)
            raise typer.Exit(2) from e
        _print_summary(audit_dir(run_dir) / EVALUATION_JSON)
        console.print(f"[bold red]AUDIT ARTEFACT[/bold red] (real records, no DP): keep {out.parent} in-house")
        typer.echo(str(out))

    @app.command("compare", help=COMPARE_HELP)
    def compare(
        run_dirs: Annotated[list[Path], typer.Argument(help="Two or more run folders.")],
        out: Annotated[
            Path | None,
            typer.Option("--out", "-o", help="Folder for compare.html and compare.csv (default: ./compare)."),
        ] = None,
    ) -> None:
        from fedsynth.evaluation.compare import compare_runs

        try:
            page = compare_runs(list(run_dirs), out or Path("compare"))
        except FedsynthError as e:
            _print_error(e)
            raise typer.Exit(2) from e
        typer.echo(str(page))


def _score_attack(run_dir: Path) -> None:
    """A simulated run attacked by a malicious server but not yet scored: score the server's
    reconstructions against the simulated sites' true records (DIR/audit/attack/scores.json)."""
    attack = run_dir / "attack"
    from fedsynth.evaluation.audit import ATTACK_SCORES_DIR

    scored = run_dir / ATTACK_SCORES_DIR / "scores.json"
    if (attack / "reconstructions").is_dir() and not scored.exists() and (run_dir / "sites").is_dir():
        from fedsynth.redteam.audit import audit_attack

        with console.status(f"scoring the attack on {run_dir}"):
            audit_attack(run_dir)


def _print_error(e: Exception) -> None:
    """The error on one unwrapped line (file paths stay whole, brackets are not markup)."""
    from rich.markup import escape

    console.print(f"[red]error:[/red] {escape(str(e))}", soft_wrap=True)


def _print_summary(path: Path) -> None:
    """A few headline numbers and the verdicts on stderr."""
    import json

    ev = json.loads(path.read_text())
    s = ev["summary"]
    keys = (
        "epsilon_max",
        "tstr_mcc",
        "trtr_mcc",
        "precision",
        "recall",
        "share_above_095_residual",
        "mia_auc_pixel",
    )
    console.print("  ".join(f"{k}={_short(s.get(k))}" for k in keys))
    guarantee = (ev.get("privacy_budget") or {}).get("guarantee")
    if guarantee:
        console.print(f"  privacy: {guarantee['label']}")
    if ev.get("attack"):
        from rich.markup import escape

        attack = ev["attack"]
        console.print(f"  attack ({escape(attack['threat_model'])}): {escape(attack['finding'])}", soft_wrap=True)
    for name, v in ev["verdicts"].items():
        console.print(f"  {name}: {v['level']} - {v['text']}")


def _short(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "n/a" if value is None else str(value)
