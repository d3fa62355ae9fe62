"""evaluate_run / render_report / compare_runs / the CLI on small run folders built by a fixture.

``make_run`` writes a run folder without training anything: the real data come from the phantom
federation of the folder's own config.toml (``load_federation``), the "synthetic" data are fresh
phantom patients plus exact copies of a known number of training records, so memorization and
membership-inference metrics have known answers. tests/test_report_browser.py imports it too.

Everything the report writes is an audit artefact (real records, no DP) and must land in DIR/audit/;
per-record arrays only on request. The privacy banner and verdict follow the run's guarantee level.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from fedsynth.config import load_config
from fedsynth.data import load_federation
from fedsynth.data.phantom import draw_scanner, make_phantom, phantom_dataset, sample_cohort
from fedsynth.data.records import Dataset, Schema
from fedsynth.evaluation.audit import NOTICE
from fedsynth.evaluation.compare import compare_runs
from fedsynth.evaluation.report import ARRAYS_NPZ, AUDIT_DIR, evaluate_run, render_report
from fedsynth.evaluation.run import pool

N_RECORDS = 400
N_SYNTHETIC = 200


def make_run(
    run_dir: Path,
    *,
    copies: int = 50,
    private: bool = True,
    seed: int = 0,
    num_hospitals: int = 3,
    records: int = N_RECORDS,
    synthetic: int = N_SYNTHETIC,
) -> Path:
    """Write a complete run folder whose synthetic data contain ``copies`` exact training records."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.toml").write_text(
        f'seed = {seed}\n\n[data]\nsource = "phantom"\nphantom_records = {records}\nimage_size = 32\n'
        f"test_fraction = 0.25\n\n[federation]\nnum_hospitals = {num_hospitals}\n"
    )
    cfg = load_config(run_dir / "config.toml")
    fed = load_federation(cfg.data, cfg.federation.num_hospitals, cfg.seed)
    train, _ = pool(list(fed.hospitals))
    # new patients, imaged by the hospitals' own scanners (as a generator that learned each site would)
    cohort = sample_cohort(synthetic - copies, 2, np.random.default_rng([seed, 99]))
    fresh = [
        phantom_dataset(
            cohort,
            idx,
            draw_scanner(seed, h, cfg.data.scanner_shift),
            np.random.default_rng([seed, 98, h]),
            32,
            2,
            "fresh",
        )
        for h, idx in enumerate(np.array_split(np.arange(synthetic - copies), num_hospitals))
    ]
    parts = list(fresh)
    if copies:
        parts.append(train.subset(np.linspace(0, len(train) - 1, copies).astype(np.int64)))  # every hospital
    (run_dir / "synthetic").mkdir(exist_ok=True)
    np.savez_compressed(
        run_dir / "synthetic" / "samples.npz",
        labels=np.concatenate([d.labels for d in parts]),
        images=np.concatenate([d.images for d in parts if d.images is not None]),
        clinical=np.concatenate([d.clinical for d in parts if d.clinical is not None]),
    )
    (run_dir / "schema.json").write_text(json.dumps(fed.schema.to_dict()))
    history = [{"phase": "gan", "round": r, "noise_multiplier": 1.0, "sample_rate": 0.1, "steps": 20} for r in (1, 2)]
    hospitals = {
        str(h): {
            "delta": 1e-5,
            "epsilon": (2.0 + h) if private else None,
            "accountant": "rdp",
            "target_epsilon": 8.0 if private else None,
            "history": history,
        }
        for h in range(num_hospitals)
    }
    (run_dir / "privacy.json").write_text(json.dumps({"private": private, "hospitals": hospitals}))
    (run_dir / "summary.json").write_text(json.dumps({"private": private, "tstr": {"mcc": 0.5}, "trtr": {"mcc": 0.6}}))
    lines = []
    for r in (1, 2):
        lines += [
            json.dumps({"kind": "hospital", "round": r, "hospital": h, "loss_d": 1.0 / r}) for h in range(num_hospitals)
        ]
        lines.append(json.dumps({"kind": "server", "round": r, "bytes_sent": 1000 * r}))
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return run_dir


Evaluated = tuple[Path, dict[str, Any], dict[str, np.ndarray]]


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory: pytest.TempPathFactory) -> Evaluated:
    run = make_run(tmp_path_factory.mktemp("runs") / "copies", copies=50)
    ev, arrays = evaluate_run(run, tsne=False, local_utility=False)
    return run, ev, arrays


def npz_files(run: Path) -> set[str]:
    """Every .npz file under ``run``, relative to it."""
    return {p.relative_to(run).as_posix() for p in run.rglob("*.npz")}


def make_cli() -> typer.Typer:
    """The report and compare commands on a bare app."""
    from fedsynth.cli.report import register

    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """fedsynth (test app)."""

    register(app)
    return app


def test_evaluation_json_has_known_answers(evaluated_run: Evaluated) -> None:
    run, ev, _ = evaluated_run
    on_disk = json.loads((run / "audit" / "evaluation.json").read_text())
    assert on_disk == ev
    s = ev["summary"]
    assert s["n_hospitals"] == 3 and s["n_synthetic"] == N_SYNTHETIC
    assert s["n_train"] + s["n_holdout"] == N_RECORDS
    # 50 of 200 synthetic images are exact training copies; new patients never exceed 0.95 (residual)
    assert s["share_above_095_residual"] == pytest.approx(50 / N_SYNTHETIC)
    assert s["holdout_share_above_095_residual"] == 0.0
    assert ev["privacy"]["pixel"]["dcr"]["exact_copies"] == 50
    assert ev["verdicts"]["memorization"]["level"] == "fail"
    # 50 of 300 training records copied: the attacks find them (ideal AUC about 0.5 + 50/300/2 = 0.58)
    assert s["mia_auc_embedding"] > 0.55 and s["ratio_mia_auc_pixel"] > 0.53
    assert ev["verdicts"]["membership"]["level"] in ("warn", "fail")
    assert s["private"] is True and s["epsilon_max"] == 4.0 and s["epsilon_hospital_2"] == 4.0
    assert s["attack"] == "no attack run" and "attack" not in ev  # tests/test_report_attack.py: attacked runs
    # phantom: the synthetic patients are real phantom patients, so associations and utility hold
    assert s["association_kept_share"] == 1.0
    assert s["tstr_mcc"] > 0.5 and s["utility_ratio"] > 0.7
    assert 0.7 < s["reality_guarantee"] < 1.3 and 0.7 < s["diversity_guarantee"] < 1.3
    assert set(ev["methods"]) >= {k for k in s if not k.startswith("epsilon_hospital_")}


def test_report_html_is_self_contained_and_shows_the_summary(evaluated_run: Evaluated) -> None:
    run, ev, arrays = evaluated_run
    page = render_report(run, evaluation=ev, arrays=arrays)
    assert page == run / "audit" / "report.html"
    html = page.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html), "external resource"
    assert "<link" not in html and "@import" not in html and "url(" not in html
    for key, value in ev["summary"].items():
        m = re.search(rf'id="sum-{re.escape(key)}" data-key="{re.escape(key)}" data-value="([^"]*)"', html)
        assert m, key
        assert json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&")) == value
    assert 'id="verdict-memorization" data-level="fail"' in html
    assert html.count("data:image/png;base64,") >= 10
    assert "No attack run" in html
    assert "How:" in html and "Reality Guarantee RG" in html


def test_render_evaluates_when_needed_and_table_or_image_only_runs(tmp_path: Path) -> None:
    """Runs with one modality (real data injected) evaluate and render without errors."""
    phantom = make_phantom(num_records=240, num_classes=2, image_size=16, seed=3)
    for modality in ("image", "table"):
        schema = Schema(
            columns=phantom.schema.columns if modality == "table" else (),
            class_names=phantom.schema.class_names,
            image_shape=phantom.schema.image_shape if modality == "image" else None,
        )

        def part(idx: np.ndarray, schema: Schema = schema, modality: str = modality) -> Dataset:
            sub = phantom.subset(idx)
            return Dataset(
                schema=schema,
                labels=sub.labels,
                patient_ids=sub.patient_ids,
                images=sub.images if modality == "image" else None,
                clinical=sub.clinical if modality == "table" else None,
            )

        real = SimpleNamespace(
            hospitals=[part(np.arange(0, 80)), part(np.arange(80, 160))], test=part(np.arange(160, 240))
        )
        real.schema = schema
        run = tmp_path / modality
        (run / "synthetic").mkdir(parents=True)
        syn = part(np.arange(0, 60))
        arrays = {"labels": syn.labels}
        if syn.images is not None:
            arrays["images"] = syn.images
        if syn.clinical is not None:
            arrays["clinical"] = syn.clinical
        np.savez(run / "synthetic" / "samples.npz", **arrays)
        ev, arrays = evaluate_run(run, real=real, seed=0, tsne=False)
        assert ev["summary"]["private"] is None  # no privacy.json
        assert ev["summary"]["attack"] == "no attack run"
        assert ev["summary"]["mia_auc_pixel"] > 0.6  # 60 of 160 training records are copied
        if modality == "table":
            assert ev["memorization"]["available"] is False and ev["verdicts"]["memorization"]["level"] == "n/a"
        else:
            assert ev["summary"]["share_above_095_residual"] == 1.0 and ev["tabular"]["available"] is False
        html = render_report(run, evaluation=ev, arrays=arrays).read_text()
        assert "No attack run" in html and "local_trtr" not in html


def test_compare_runs_and_cli(evaluated_run: Evaluated, tmp_path: Path) -> None:
    run_a, _, _ = evaluated_run
    run_b = make_run(tmp_path / "nonprivate", copies=0, private=False, seed=1)
    app = make_cli()
    runner = CliRunner()
    help_text = runner.invoke(app, ["report", "--help"]).output
    assert "report.html" in help_text and "evaluation.json" in help_text
    assert "compare.html" in runner.invoke(app, ["compare", "--help"]).output

    result = runner.invoke(app, ["report", str(run_b), "--no-tsne", "--no-local-utility"])
    assert result.exit_code == 0, result.output
    assert (run_b / "audit" / "report.html").exists() and not (run_b / "report.html").exists()
    assert not (run_b / "evaluation.json").exists()
    ev_b = json.loads((run_b / "audit" / "evaluation.json").read_text())
    assert ev_b["summary"]["share_above_095_residual"] == 0.0
    assert ev_b["verdicts"]["privacy_budget"]["level"] == "warn"  # not private

    out = tmp_path / "cmp"
    result = runner.invoke(app, ["compare", str(run_a), str(run_b), "--out", str(out)])
    assert result.exit_code == 0, result.output
    csv_text = (out / "compare.csv").read_text().splitlines()
    assert len(csv_text) == 3 and csv_text[0].startswith("run,folder,private,epsilon_max")
    assert "not private" in (out / "compare.html").read_text()

    bad = runner.invoke(app, ["report", str(tmp_path / "missing")])
    assert bad.exit_code == 2

    page = compare_runs([run_a], tmp_path / "single")
    assert page.exists()


def test_too_few_records_is_a_clear_error(tmp_path: Path) -> None:
    from fedsynth.errors import DataError

    phantom = make_phantom(num_records=60, num_classes=2, image_size=16, seed=4)
    real = SimpleNamespace(
        hospitals=[phantom.subset(np.arange(0, 40))],
        test=phantom.subset(np.arange(40, 60)),
        schema=phantom.schema,
    )
    (tmp_path / "synthetic").mkdir()
    few = phantom.subset(np.arange(5))
    np.savez(tmp_path / "synthetic" / "samples.npz", labels=few.labels, images=few.images, clinical=few.clinical)
    with pytest.raises(DataError, match="synthetic data.*5 records"):
        evaluate_run(tmp_path, real=real, seed=0)


# ------------------------------------------------------------------------------------------------
# Audit artefacts: where the report writes, and what it says about itself
# ------------------------------------------------------------------------------------------------


def test_default_writes_no_per_record_file_and_save_arrays_enables_reuse(
    evaluated_run: Evaluated, tmp_path: Path
) -> None:
    run_a, _, _ = evaluated_run
    assert npz_files(run_a) == {"synthetic/samples.npz"}  # evaluate_run from Python: nothing per-record
    run = make_run(tmp_path / "run", copies=0, seed=2, records=160, synthetic=60, num_hospitals=2)
    runner = CliRunner()
    app = make_cli()
    args = ["report", str(run), "--no-tsne", "--no-local-utility"]

    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert npz_files(run) == {"synthetic/samples.npz"}
    assert sorted(p.name for p in (run / AUDIT_DIR).iterdir()) == [
        "README.txt",
        "evaluation.json",
        "report.html",
        "samples-side-by-side.png",
    ]

    result = runner.invoke(app, [*args, "--reuse"])
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert ARRAYS_NPZ in message and "--save-arrays first" in message

    result = runner.invoke(app, [*args, "--save-arrays"])
    assert result.exit_code == 0, result.output
    assert npz_files(run) == {"synthetic/samples.npz", f"audit/{ARRAYS_NPZ}"}
    with np.load(run / AUDIT_DIR / ARRAYS_NPZ) as z:
        assert "train_clinical" in z.files and "grid_real_images" in z.files

    page = run / AUDIT_DIR / "report.html"
    page.unlink()
    before = (run / AUDIT_DIR / "evaluation.json").read_text()
    result = runner.invoke(app, [*args, "--reuse"])
    assert result.exit_code == 0, result.output
    assert page.exists() and 'id="audit-banner"' in page.read_text()
    assert (run / AUDIT_DIR / "evaluation.json").read_text() == before


def test_outputs_say_they_are_audit_artefacts(evaluated_run: Evaluated) -> None:
    run, ev, arrays = evaluated_run
    html = render_report(run, evaluation=ev, arrays=arrays).read_text()
    body = html[html.index("<body>") + len("<body>") :]
    assert body.startswith('<div class="banner audit" id="audit-banner">')
    assert "AUDIT ARTEFACT: this page shows real patient records" in body[:600]
    assert "do not share it" in body[:600]
    notice = json.loads((run / AUDIT_DIR / "evaluation.json").read_text())["audit_artefact"]
    assert notice["notice"] == NOTICE and notice["differentially_private"] is False
    assert any("TRTR" in c for c in notice["contains"]) and len(notice["contains"]) >= 3
    readme = (run / AUDIT_DIR / "README.txt").read_text()
    assert "AUDIT ARTEFACT" in readme and "real patient records" in readme and "walls" in readme
    assert "TRTR" in readme and ARRAYS_NPZ in readme


def small_run(run_dir: Path, privacy_json: dict[str, Any]) -> SimpleNamespace:
    """A run folder of 120 phantom records (real data injected) whose privacy.json is ``privacy_json``."""
    phantom = make_phantom(num_records=120, num_classes=2, image_size=16, seed=5)
    real = SimpleNamespace(
        hospitals=[phantom.subset(np.arange(0, 40)), phantom.subset(np.arange(40, 80))],
        test=phantom.subset(np.arange(80, 120)),
        schema=phantom.schema,
    )
    (run_dir / "synthetic").mkdir(parents=True)
    syn = phantom.subset(np.arange(20, 60))
    np.savez(run_dir / "synthetic" / "samples.npz", labels=syn.labels, images=syn.images, clinical=syn.clinical)
    (run_dir / "privacy.json").write_text(json.dumps(privacy_json))
    return real


def privacy_file(epsilon: float, **extra: Any) -> dict[str, Any]:
    """privacy.json of a DP-SGD run where both hospitals spent ``epsilon``."""
    history = [{"phase": "gan", "round": 1, "noise_multiplier": 2e-153, "sample_rate": 0.1, "steps": 5}]
    hospital = {"delta": 1e-5, "epsilon": epsilon, "accountant": "rdp", "target_epsilon": epsilon, "history": history}
    return {"private": True, "hospitals": {"0": dict(hospital), "1": dict(hospital)}, **extra}


SEED_LABEL = "NOT PRIVATE against anyone who holds the seed (reproducible noise; epsilon 2 on paper)"
VACUOUS = {
    "epsilon 1e308, no guarantee recorded (older privacy.json)": privacy_file(1e308),
    "guarantee level none recorded": privacy_file(
        2.0,
        guarantee={"level": "none", "label": SEED_LABEL, "meaning": "seeded noise"},
        reproducible_noise=True,
    ),
}


@pytest.mark.parametrize("privacy_json", list(VACUOUS.values()), ids=list(VACUOUS))
def test_vacuous_guarantee_is_not_called_private(privacy_json: dict[str, Any], tmp_path: Path) -> None:
    real = small_run(tmp_path, privacy_json)
    ev, arrays = evaluate_run(tmp_path, real=real, seed=0, tsne=False, local_utility=False)
    budget = ev["privacy_budget"]
    assert budget["guarantee"]["level"] == "none" and ev["summary"]["privacy_guarantee"] == "none"
    verdict = ev["verdicts"]["privacy_budget"]
    assert verdict["level"] not in ("info", "pass", "good") and verdict["level"] == "fail"
    assert "NO MEANINGFUL FORMAL GUARANTEE" in verdict["text"]
    html = render_report(tmp_path, evaluation=ev, arrays=arrays).read_text()
    banner = re.search(r'<div class="banner ([^"]*)" id="privacy-banner" data-level="([^"]*)">(.*?)</div>', html)
    assert banner, "privacy banner"
    assert banner.group(1) != "private" and banner.group(2) == "none"
    assert "NO MEANINGFUL FORMAL GUARANTEE" in banner.group(3)
    assert 'class="banner private"' not in html and "Differentially private" not in html
    assert 'id="verdict-privacy_budget" data-level="fail"' in html


def test_meaningful_epsilon_gets_the_green_banner_and_lists_declared_releases(tmp_path: Path) -> None:
    releases = [
        {"what": "record count per hospital", "where": "summary.json", "basis": "declared public"},
        {"what": "class names", "where": "schema.json", "basis": "inferred from the data"},
    ]
    privacy_json = privacy_file(
        5.0, neighbouring_relation="add/remove one record", reproducible_noise=False, declared_releases=releases
    )
    for h in privacy_json["hospitals"].values():
        h.update(neighbouring_relation="add/remove one record", max_grad_norm=1.5)
    real = small_run(tmp_path, privacy_json)
    ev, arrays = evaluate_run(tmp_path, real=real, seed=0, tsne=False, local_utility=False)
    budget = ev["privacy_budget"]
    assert budget["guarantee"]["level"] == "dp" and ev["verdicts"]["privacy_budget"]["level"] == "info"
    assert budget["neighbouring_relation"] == "add/remove one record" and budget["reproducible_noise"] is False
    assert budget["declared_releases"] == releases
    assert budget["hospitals"]["1"]["max_grad_norm"] == 1.5
    html = render_report(tmp_path, evaluation=ev, arrays=arrays).read_text()
    green = '<div class="banner private" id="privacy-banner" data-level="dp">'
    assert green + "differentially private (DP-SGD): epsilon 5" in html
    assert "NO MEANINGFUL FORMAL GUARANTEE" not in html
    section = html[html.index('<section id="budget">') :]
    section = section[: section.index("</section>")]
    assert "inferred from the data" in section and "schema.json" in section
    assert "add/remove one record" in section and "max grad norm" in section and "1.5" in section


def test_recorded_guarantee_never_makes_the_report_greener_than_its_epsilon() -> None:
    from fedsynth.evaluation.budget import guarantee_of, privacy_budget

    claimed = privacy_file(1e308, guarantee={"level": "dp", "label": "differentially private", "meaning": "x"})
    budget = privacy_budget(claimed)
    assert budget["guarantee"]["level"] == "none" and "claims guarantee level 'dp'" in budget["note"]
    malformed = privacy_budget(privacy_file(5.0, guarantee={"level": "excellent"}))
    assert malformed["guarantee"]["level"] == "dp" and "malformed" in malformed["note"]
    stricter = privacy_budget(privacy_file(5.0, guarantee={"level": "not-private", "label": "baseline"}))
    assert stricter["guarantee"] == {
        "level": "not-private",
        "label": "baseline",
        "meaning": "",
        "meaningful_epsilon_threshold": 10.0,
    }
    assert privacy_budget(None)["guarantee"] is None
    written_without = {k: v for k, v in privacy_budget(privacy_file(1e308)).items() if k != "guarantee"}
    assert guarantee_of(written_without)["level"] == "none"  # an evaluation.json section from before
