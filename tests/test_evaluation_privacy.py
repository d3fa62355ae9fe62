"""Known answers: distance to closest record, membership inference, Reality/Diversity Guarantees."""

from __future__ import annotations

import numpy as np
import pytest

from fedsynth.evaluation.privacy import (
    dcr,
    density_attack,
    distance_attack,
    nearest_pairs,
    ratio_attack,
    reality_diversity,
    tpr_at_fpr,
)


def _population(n: int, seed: int, dim: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim))


def test_dcr_of_copies_is_zero_and_fresh_data_matches_holdout() -> None:
    train, holdout = _population(300, 0), _population(200, 1)
    copies = dcr(train[:100].copy(), train, holdout)
    assert copies["exact_copies"] == 100
    assert copies["synthetic_median"] == pytest.approx(0.0, abs=1e-6)
    assert copies["share_below_holdout_p05"] == 1.0
    fresh = dcr(_population(200, 2), train, holdout)
    assert fresh["exact_copies"] == 0
    assert fresh["median_ratio"] == pytest.approx(1.0, abs=0.15)
    assert fresh["share_below_holdout_p05"] < 0.15


def test_distance_attack_auc_known_answers() -> None:
    train, holdout = _population(200, 3), _population(200, 4)
    all_copied = distance_attack(train, holdout, train.copy())
    assert all_copied["auc"] == pytest.approx(1.0)
    assert all_copied["tpr_at_fpr"]["0.01"] == pytest.approx(1.0)
    half_copied = distance_attack(train, holdout, train[:100].copy())
    # the copied half is found for sure; the rest is at chance: AUC = 0.5 * 1 + 0.5 * 0.5
    assert half_copied["auc"] == pytest.approx(0.75, abs=0.05)
    fresh = distance_attack(train, holdout, _population(200, 5))
    assert fresh["auc"] == pytest.approx(0.5, abs=0.08)


def test_distance_attack_per_hospital() -> None:
    train, holdout = _population(200, 6), _population(100, 7)
    groups = np.array(["0"] * 100 + ["1"] * 100)
    res = distance_attack(train, holdout, train[:100].copy(), train_groups=groups)  # hospital 0 copied
    assert res["per_hospital_auc"]["0"] == pytest.approx(1.0)
    assert res["per_hospital_auc"]["1"] == pytest.approx(0.5, abs=0.1)


def test_density_attack_detects_clusters_around_training_records() -> None:
    train, holdout = _population(150, 8), _population(150, 9)
    rng = np.random.default_rng(10)
    clustered = np.repeat(train[:50], 4, axis=0) + rng.normal(0, 0.01, (200, 8))
    assert density_attack(train, holdout, clustered)["auc"] > 0.6
    assert density_attack(train, holdout, _population(200, 11))["auc"] == pytest.approx(0.5, abs=0.1)


def test_reality_and_diversity_guarantees() -> None:
    holdout = _population(400, 12)
    same = reality_diversity(_population(400, 13), holdout, seed=0)
    assert same["rg"] == pytest.approx(1.0, abs=0.15) and same["dg"] == pytest.approx(1.0, abs=0.15)
    shifted = reality_diversity(_population(400, 14) + 5.0, holdout, seed=0)
    assert shifted["rg"] > 2.0 and shifted["dg"] > 2.0
    collapsed = reality_diversity(np.repeat(holdout[:1], 400, axis=0), holdout, seed=0)
    assert collapsed["dg"] > 1.5  # one real point covered, the rest far away
    assert reality_diversity(holdout[:100], holdout[:3], seed=0)["rg"] is None


def test_reality_diversity_is_deterministic() -> None:
    s, h = _population(100, 15), _population(80, 16)
    assert reality_diversity(s, h, seed=3) == reality_diversity(s, h, seed=3)


def test_tpr_at_fpr_and_nearest_pairs() -> None:
    labels = np.array([1, 1, 0, 0])
    assert tpr_at_fpr(labels, np.array([0.9, 0.8, 0.1, 0.2]))["0.01"] == pytest.approx(1.0)
    train = _population(30, 17)
    synthetic = np.concatenate([_population(5, 18) + 10, train[[4]]])
    pairs = nearest_pairs(synthetic, train, top_k=2)
    assert pairs[0] == {"synthetic": 5, "train": 4, "distance": pytest.approx(0.0, abs=1e-6)}


def test_ratio_attack_known_answers_and_site_effects() -> None:
    train, holdout = _population(200, 19), _population(200, 20)
    assert ratio_attack(train, holdout, train.copy())["auc"] == pytest.approx(1.0)
    assert ratio_attack(train, holdout, _population(300, 21))["auc"] == pytest.approx(0.5, abs=0.08)
    # site effect: hospital "1" records are noisier (far from everything) but nothing is copied
    rng = np.random.default_rng(22)
    noisy = train.copy()
    noisy[100:] += rng.normal(0, 1.5, (100, 8))
    groups = np.array(["0"] * 100 + ["1"] * 100)
    plain = distance_attack(noisy, holdout, _population(300, 23), train_groups=groups)
    ratio = ratio_attack(noisy, holdout, _population(300, 23), train_groups=groups)
    assert plain["per_hospital_auc"]["1"] < 0.25  # the plain attack mistakes noise for non-membership
    assert abs(ratio["per_hospital_auc"]["1"] - 0.5) < abs(plain["per_hospital_auc"]["1"] - 0.5)
