"""Outputs that say what they hold: the privacy label in words, declared non-DP releases, and the
centralized baseline charged as the second release on the same patients that it is."""

from __future__ import annotations

import json
from pathlib import Path

import dp_accounting as dpa
import pytest
from conftest import check_contract, tiny_config

from fedsynth.data.records import ColumnSpec, Schema
from fedsynth.federation.privacy_report import HospitalPrivacy, privacy_document
from fedsynth.privacy.accounting import MechanismEvent, compute_epsilon
from fedsynth.privacy.label import MEANINGFUL_EPSILON, privacy_guarantee
from fedsynth.privacy.ledger import PrivacyLedger
from fedsynth.simulation import simulate_in_process


def test_the_label_calls_nothing_private_that_protects_nothing() -> None:
    assert privacy_guarantee(True, 5.0, 1e-5, "add-remove").level == "dp"
    huge = privacy_guarantee(True, 1e308, 1e-5, "add-remove")
    assert huge.level == "none" and "NO MEANINGFUL FORMAL GUARANTEE" in huge.label
    assert privacy_guarantee(True, float("inf"), 1e-5, "add-remove").level == "none"
    assert privacy_guarantee(True, MEANINGFUL_EPSILON * 1.01, 1e-5, "add-remove").level == "none"
    seeded = privacy_guarantee(True, 1.0, 1e-5, "add-remove", reproducible_noise=True)
    assert seeded.level == "none" and "holds the seed" in seeded.label
    assert privacy_guarantee(False, None, 1e-5, "add-remove").level == "not-private"
    assert "replaced" in privacy_guarantee(True, 2.0, 1e-5, "replace-one").meaning


SCHEMA = Schema(
    columns=(ColumnSpec("age", "numeric", 0.0, 100.0),),
    class_names=("a", "b"),
    image_shape=None,
    bounds_source="data",
    class_names_source="data",
)


def test_privacy_json_declares_what_is_not_dp_and_labels_a_vacuous_epsilon() -> None:
    ledger = PrivacyLedger(1e-5, "rdp", [MechanismEvent("autoencoder", 1, 1e-150, 0.1, 10, run="r")])
    doc = privacy_document({0: HospitalPrivacy(ledger, {"record_count": 120})}, SCHEMA)
    assert doc["guarantee"]["level"] == "none" and doc["label"].startswith("NO MEANINGFUL")
    whats = " | ".join(r["what"] for r in doc["declared_releases"])
    assert "class names" in whats and "numeric bounds" in whats and "number of records of hospitals [0]" in whats
    assert doc["hospitals"]["0"]["record_count"] == 120


@pytest.mark.parametrize(
    "events",
    [
        [MechanismEvent("autoencoder", 1, 1.2, 0.05, 200, relation="replace-one")],
        [
            MechanismEvent("autoencoder", 1, 0.9, 0.2, 30, relation="replace-one"),
            MechanismEvent("discriminator", 2, 0.9, 0.2, 30, relation="replace-one"),
        ],
        [MechanismEvent("autoencoder", 1, 3.0, 1.0, 5, relation="replace-one")],
    ],
)
def test_replace_one_epsilon_is_never_below_the_tight_replace_one_accountant(events) -> None:
    ours = compute_epsilon(events, 1e-5)
    tight = dpa.pld.PLDAccountant(dpa.NeighboringRelation.REPLACE_ONE)
    for e in events:
        tight.compose(
            dpa.SelfComposedDpEvent(
                dpa.PoissonSampledDpEvent(e.sample_rate, dpa.GaussianDpEvent(e.noise_multiplier)), e.steps
            )
        )
    assert ours >= 0.999 * tight.get_epsilon(1e-5)
    # ... and a mixed ledger is stated under replace-one: an add/remove event counts at doubled sensitivity.
    mixed = [*events, MechanismEvent("autoencoder", 9, 2.0, 0.1, 10)]
    assert PrivacyLedger(1e-5, "rdp", mixed).relation == "replace-one"
    as_replace = [*events, MechanismEvent("autoencoder", 9, 2.0, 0.1, 10, relation="replace-one")]
    assert compute_epsilon(mixed, 1e-5) == pytest.approx(compute_epsilon(as_replace, 1e-5), rel=1e-12)


def test_the_centralized_baseline_is_charged_to_every_hospital(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path / "run", "evaluation.centralized_baseline=true")
    summary = simulate_in_process(cfg)
    privacy = json.loads((tmp_path / "run" / "privacy.json").read_text())
    amp = summary["aggregated_model_performance"]
    assert amp is not None and amp["centralized_tstr"]["mcc"] is not None
    for h in privacy["hospitals"].values():
        runs = [e["run"] for e in h["history"]]
        assert runs.count("centralized-baseline") == cfg.train.num_rounds == len(h["other_releases"])
        assert h["epsilon"] > h["epsilon_federation_only"] > 0
    assert summary["max_epsilon"] == max(h["epsilon"] for h in privacy["hospitals"].values())
    assert any("centralized baseline" in r["what"] for r in privacy["declared_releases"])
    assert any("TSTR and TRTR" in r["what"] for r in privacy["declared_releases"])
    check_contract(tmp_path / "run")
