"""The report's attack section on a real attacked run: the numbers, the bounds, the page, the browser.

One small attacked federation is run once for the module (the code-shipping imprint at batch 1
through the real hospital code, two hospitals, two rounds: a few seconds) and reported on. Its
section must repeat what the scoring wrote (scores.json, records.csv), the bounds must be the ones
of each hospital's mechanism history at prior 1/records, and the page must show both. Variants of
the same folder (copies with files removed or privacy.json edited) cover an unscored run, a run
without the true records, a public record count, a DP history and a refusal.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_evaluation_report import make_run
from test_report_browser import _Cells, load

from fedsynth.cli.report import _score_attack
from fedsynth.config import load_config
from fedsynth.data.records_file import load_records
from fedsynth.evaluation.attack_section import THREAT_MODELS, attack_section
from fedsynth.evaluation.page import fmt
from fedsynth.evaluation.report import evaluate_run, render_report
from fedsynth.privacy.accounting import MechanismEvent
from fedsynth.privacy.reconstruction import reconstruction_bounds
from fedsynth.redteam.experiment import Setting, run_setting

#: Two hospitals of about 30 records (the report needs at least 10 held-out records).
BASE = ["federation.num_hospitals=2", "model.image_channels=8", 'simulation.device="cpu"']

#: (run folder, evaluation, its report.html)
Attacked = tuple[Path, dict[str, Any], Path]


@pytest.fixture(scope="module")
def attacked(tmp_path_factory: pytest.TempPathFactory) -> Attacked:
    """(run folder, evaluation, page) of a non-private code-shipping attack, batch 1, two rounds."""
    out = tmp_path_factory.mktemp("attack")
    setting = Setting("ship", "code-shipping", None, 1, 10, records=30, rounds=2)
    run_setting(load_config(None, BASE), setting, out, log=lambda _: None)
    run = out / "runs" / "ship"
    ev, arrays = evaluate_run(run, tsne=False, local_utility=False)
    return run, ev, render_report(run, evaluation=ev, arrays=arrays)


def _variant(run: Path, tmp_path: Path, *, drop: tuple[str, ...] = ()) -> Path:
    """A copy of the attacked run folder without the files (relative paths) in ``drop``."""
    copy = tmp_path / "variant"
    shutil.copytree(run, copy)
    for report_output in (copy / "audit").iterdir():  # the report's own outputs, not the attack's scores
        if report_output.name != "attack":
            shutil.rmtree(report_output) if report_output.is_dir() else report_output.unlink()
    for rel in drop:
        path = copy / rel
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return copy


def _edit_privacy(run: Path, change: Any) -> None:
    privacy = json.loads((run / "privacy.json").read_text())
    change(privacy)
    (run / "privacy.json").write_text(json.dumps(privacy))


def test_the_section_repeats_the_scores_and_the_bounds_of_the_ledger(attacked: Attacked) -> None:
    run, ev, _ = attacked
    attack = ev["attack"]
    scores = json.loads((run / "audit" / "attack" / "scores.json").read_text())
    assert attack["threat_model"] == "code-shipping"
    assert attack["threat_model_words"] == THREAT_MODELS["code-shipping"]
    assert attack["setup"]["architecture"] == "imprint-block-v1" and attack["setup"]["optimizer"] == "sgd"
    assert attack["journal"]["updates_inverted"] == 4 and attack["journal"]["rounds"] == [1, 2]

    image, scored = attack["targets"]["image"], scores["targets"]["image"]
    for key in ("records", "rero_01", "rero_03", "exact", "median_distance"):
        assert image[key] == scored[key], key
    distances = np.asarray(scored["distances"])
    # batch 1, plain SGD, one step: every inverted update gives its record back (2 hospitals x 2 rounds)
    assert image["exact"] >= 3 and image["within_01"] == int(np.sum(distances < 0.1))
    assert image["finding"].startswith(f"the server reconstructed {image['exact']} of {image['records']} records")
    cdf = np.asarray(image["cdf"])
    assert cdf.shape == (image["records"], 2) and cdf[-1, 1] == 1.0
    assert np.array_equal(cdf[:, 0], np.sort(distances)) and np.all(np.diff(cdf[:, 1]) > 0)

    privacy = json.loads((run / "privacy.json").read_text())
    with (run / "audit" / "attack" / "records.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert set(attack["hospitals"]) == {"0", "1"}
    for hid, h in attack["hospitals"].items():
        n = len(load_records(run / "sites" / f"hospital-{hid}" / "data.npz"))
        events = [MechanismEvent.from_dict(e) for e in privacy["hospitals"][hid]["history"]]
        assert h["records"] == n and h["epsilon"] is None and h["private"] is False
        assert h["bounds"] == reconstruction_bounds(events, 1.0 / n).to_dict()
        assert h["bounds"]["worst_case"] == 1.0  # no noise: nothing is promised
        mine = np.asarray([float(r["distance"]) for r in rows if r["hospital"] == hid and r["target"] == "image"])
        assert h["measured"]["image"] == {
            "records": n,
            "rero_01": float(np.mean(mine < 0.1)),
            "rero_03": float(np.mean(mine < 0.3)),
            "exact": int(np.sum(mine < 1e-3)),
        }
    assert sum(h["measured"]["image"]["exact"] for h in attack["hospitals"].values()) == image["exact"]
    assert attack["refusals"] == [] and attack["finding"] == image["finding"]
    assert ev["summary"]["attack"] == attack["finding"]
    assert ev["verdicts"]["reconstruction"] == {"level": "fail", "text": attack["finding"]}
    assert json.loads((run / "audit" / "evaluation.json").read_text())["attack"] == attack


def test_the_page_shows_the_attack_with_its_plots(attacked: Attacked) -> None:
    run, ev, report = attacked
    page = report.read_text()
    attack = ev["attack"]
    section = page[page.index('<section id="attack">') :]
    section = section[: section.index("</section>")]
    assert "id='attack-finding' data-level='fail'" in section
    assert html.escape(attack["finding"], quote=True) in section
    assert html.escape(THREAT_MODELS["code-shipping"], quote=True) in section
    image = attack["targets"]["image"]
    for value in (image["rero_01"], image["rero_03"], image["median_distance"]):
        assert f"<td>{fmt(value)}</td>" in section
    assert "worst-case bound" in section and "relaxed bound" in section
    for name in ("cdf.png", "pairs-image.png"):
        data = base64.b64encode((run / "audit" / "attack" / name).read_bytes()).decode("ascii")
        assert f'src="data:image/png;base64,{data}"' in section, name
    assert "Attack: " + html.escape(attack["finding"], quote=True) in page  # the summary's pointer


def test_an_unscored_run_is_scored_from_the_simulated_sites(attacked: Attacked, tmp_path: Path) -> None:
    run, ev, _ = attacked
    scoring = (
        "audit/attack/scores.json",
        "audit/attack/records.csv",
        "audit/attack/cdf.png",
        "audit/attack/pairs-image.png",
    )
    copy = _variant(run, tmp_path, drop=scoring)
    section = attack_section(copy)
    assert section is not None and not section["scored"] and "fedsynth report" in section["scoring_note"]
    _score_attack(copy)  # what `fedsynth report` does first
    section = attack_section(copy)
    assert section is not None and section["scored"]
    assert all((copy / rel).exists() for rel in scoring)
    again, before = section["targets"]["image"], ev["attack"]["targets"]["image"]
    for key in ("records", "rero_01", "rero_03", "exact", "median_distance"):
        assert again[key] == pytest.approx(before[key]), key
    np.testing.assert_allclose(again["cdf"], before["cdf"])


def test_without_the_true_records_nothing_is_scored_and_the_bound_needs_the_count(
    attacked: Attacked, tmp_path: Path
) -> None:
    run, _, _ = attacked
    copy = _variant(run, tmp_path, drop=("audit/attack", "sites"))
    section = attack_section(copy)
    assert section is not None and not section["scored"] and section["targets"] == {}
    assert "scoring needs the true records" in section["scoring_note"]
    assert section["finding"].startswith("not scored: scoring needs the true records")
    assert not (copy / "audit" / "attack" / "scores.json").exists()
    for h in section["hospitals"].values():
        assert h["records"] is None and h["bounds"] is None and "record count" in h["bounds_note"]

    # a hospital that declared its record count public: the report can bound it from the plan
    _edit_privacy(copy, lambda p: p["hospitals"]["0"].update(record_count=25))
    h0 = attack_section(copy)["hospitals"]["0"]  # type: ignore[index]
    assert h0["records"] == 25 and h0["bounds"]["prior"] == pytest.approx(1 / 25)


def test_a_dp_history_bounds_the_reconstruction(attacked: Attacked, tmp_path: Path) -> None:
    run, _, _ = attacked
    copy = _variant(run, tmp_path)

    def noisy(privacy: dict[str, Any]) -> None:
        for h in privacy["hospitals"].values():
            h.update(private=True, epsilon=3.0)
            for e in h["history"]:
                e["noise_multiplier"] = 2.0

    _edit_privacy(copy, noisy)
    section = attack_section(copy)
    assert section is not None
    privacy = json.loads((copy / "privacy.json").read_text())
    worst = []
    for hid, h in section["hospitals"].items():
        events = [MechanismEvent.from_dict(e) for e in privacy["hospitals"][hid]["history"]]
        expected = reconstruction_bounds(events, 1.0 / h["records"])
        assert h["epsilon"] == 3.0
        assert h["bounds"]["worst_case"] == pytest.approx(expected.worst_case)
        assert h["bounds"]["relaxed"] == pytest.approx(expected.relaxed)
        assert 1.0 / h["records"] < h["bounds"]["relaxed"] < h["bounds"]["worst_case"] < 1
        worst.append(expected.worst_case)
    assert f"DP-SGD bounds any reconstruction's success at {max(worst):.2f}" in section["finding"]


def test_a_refusal_is_reported_as_the_guardrail_working(attacked: Attacked, tmp_path: Path) -> None:
    run, _, _ = attacked
    copy = _variant(run, tmp_path, drop=("audit/attack", "attack/reconstructions"))
    reason = "rule code_pinned: the job runs code the site has not approved"
    _edit_privacy(copy, lambda p: p.update(refusals={"0": [{"round": 1, "reason": reason}]}))
    section = attack_section(copy)
    assert section is not None and section["targets"] == {}
    (refusal,) = section["refusals"]
    assert refusal["hospital"] == "0" and refusal["round"] == 1 and reason in refusal["words"]
    assert "guardrail worked" in refusal["words"]
    assert section["finding"] == (
        "hospital 0 refused the attack: the guardrails stopped it before any update reached the server"
    )


def test_a_normal_run_has_no_attack_section(tmp_path: Path) -> None:
    run = make_run(tmp_path / "normal", copies=0, num_hospitals=2, records=80, synthetic=30)
    assert attack_section(run) is None
    ev, arrays = evaluate_run(run, tsne=False, local_utility=False)
    assert "attack" not in ev and "reconstruction" not in ev["verdicts"]
    assert ev["summary"]["attack"] == "no attack run"
    page = render_report(run, evaluation=ev, arrays=arrays).read_text()
    assert "No attack run" in page and "attack-finding" not in page


def test_the_attacked_report_loads_in_a_browser(attacked: Attacked, chromium: str, tmp_path: Path) -> None:
    _, ev, page = attacked
    dom, console = load(chromium, page, tmp_path / "profile")
    assert console == [], "console output / page errors:\n" + "\n".join(console)
    parsed = _Cells()
    parsed.feed(dom)
    assert parsed.body.get("data-selfcheck") == "ok", html.unescape(dom[dom.find("selfcheck-errors") :][:500])
    assert parsed.verdicts["reconstruction"] == "fail"
    assert parsed.cells["attack"]["value"] == ev["attack"]["finding"]
    assert html.escape(ev["attack"]["finding"]) in dom
