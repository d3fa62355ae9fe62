"""Federated consistency: dispersion of the hospitals' models in weight space."""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest

from fedsynth.federation.consistency import common_float_names, weight_dispersion


def named(**arrays: object) -> OrderedDict:
    return OrderedDict((k, np.asarray(v)) for k, v in arrays.items())


def test_identical_models_have_zero_dispersion() -> None:
    rng = np.random.default_rng(0)
    m = named(a=rng.normal(size=(5, 3)).astype(np.float32), b=np.full(7, 0.1))
    out = weight_dispersion([m, OrderedDict((k, v.copy()) for k, v in m.items()), m])
    assert out["rel_pairwise_distance"] == 0.0 and out["rel_distance_to_mean"] == 0.0
    assert out["pairwise_distance"] == 0.0 and out["distance_to_mean"] == 0.0
    assert out["num_models"] == 3 and out["num_arrays"] == 2 and out["num_parameters"] == 22


def test_hand_computed_case() -> None:
    # flattened (a, b): x0 = (0, 0), x1 = (3, 0), x2 = (0, 3); mean (1, 1) with norm sqrt 2.
    models = [named(a=[0.0], b=[0.0]), named(a=[3.0], b=[0.0]), named(a=[0.0], b=[3.0])]
    out = weight_dispersion(models)
    pairwise = (3 + 3 + 3 * math.sqrt(2)) / 3  # = 2 + sqrt 2
    to_mean = (math.sqrt(2) + 2 * math.sqrt(5)) / 3
    assert out["pairwise_distance"] == pytest.approx(pairwise)
    assert out["distance_to_mean"] == pytest.approx(to_mean)
    assert out["mean_model_norm"] == pytest.approx(math.sqrt(2))
    assert out["rel_pairwise_distance"] == pytest.approx(pairwise / math.sqrt(2))
    assert out["rel_distance_to_mean"] == pytest.approx(to_mean / math.sqrt(2))


def test_only_float_arrays_present_in_all_models_count() -> None:
    a = named(w=[0.0, 0.0], steps=np.array([5]), only_a=[100.0])
    b = named(w=[2.0, 0.0], steps=np.array([9]))
    assert common_float_names([a, b]) == ["w"]
    out = weight_dispersion([a, b])
    assert out["num_arrays"] == 1 and out["num_parameters"] == 2
    assert out["pairwise_distance"] == pytest.approx(2.0)
    assert out["distance_to_mean"] == pytest.approx(1.0)
    assert out["rel_pairwise_distance"] == pytest.approx(2.0)  # mean (1, 0) has norm 1


def test_scale_invariance_of_the_relative_values() -> None:
    rng = np.random.default_rng(1)
    models = [named(w=rng.normal(size=10) + 5.0) for _ in range(4)]
    scaled = [named(w=m["w"] * 1000.0) for m in models]
    a, b = weight_dispersion(models), weight_dispersion(scaled)
    assert a["rel_pairwise_distance"] == pytest.approx(b["rel_pairwise_distance"])
    assert a["rel_distance_to_mean"] == pytest.approx(b["rel_distance_to_mean"])


def test_single_model_zero_mean_and_errors() -> None:
    assert weight_dispersion([named(w=[1.0, 2.0])])["rel_pairwise_distance"] == 0.0
    out = weight_dispersion([named(w=[1.0]), named(w=[-1.0])])
    assert out["mean_model_norm"] == 0.0 and out["rel_pairwise_distance"] == math.inf
    with pytest.raises(ValueError, match="at least one"):
        weight_dispersion([])
    with pytest.raises(ValueError, match="no floating-point array"):
        weight_dispersion([named(n=np.array([1])), named(n=np.array([2]))])
    with pytest.raises(ValueError, match="'w' has shape"):
        weight_dispersion([named(w=[1.0]), named(w=[1.0, 2.0])])
