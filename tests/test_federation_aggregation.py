"""Aggregation rules on named arrays: known answers, robustness, registry and ring merges."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
from flwr.server.strategy.aggregate import aggregate_krum

from fedsynth.aggregation import (
    RULES,
    aggregate,
    check_rule,
    krum,
    krum_select,
    median,
    merge_pair,
    merge_window,
    tolerated_byzantine,
    trimmed_count,
    trimmed_mean,
    weighted_mean,
)
from fedsynth.errors import ConfigError


def named(**arrays: object) -> OrderedDict:
    return OrderedDict((k, np.asarray(v)) for k, v in arrays.items())


def scalars(values: list[float], dtype: str = "float32") -> list[tuple[OrderedDict, float]]:
    """One update per value: a 1-element 'w' and a 2x2 'b' filled with the value."""
    return [
        (named(w=np.array([v], dtype=dtype), b=np.full((2, 2), v, dtype=dtype)), float(i + 1))
        for i, v in enumerate(values)
    ]


# ------------------------------------------------------------------ known answers


def test_median_of_three_is_the_middle_value_and_keeps_names_order_and_dtype() -> None:
    out = median(scalars([1.0, 100.0, 2.0]))
    assert list(out) == ["w", "b"]
    assert out["w"].dtype == np.float32 and out["b"].dtype == np.float32
    assert out["w"].shape == (1,) and out["b"].shape == (2, 2)
    np.testing.assert_array_equal(out["w"], [2.0])
    np.testing.assert_array_equal(out["b"], np.full((2, 2), 2.0))


def test_median_is_coordinate_wise() -> None:
    updates = [(named(x=[1.0, 30.0]), 1.0), (named(x=[2.0, 10.0]), 1.0), (named(x=[100.0, 20.0]), 1.0)]
    np.testing.assert_array_equal(median(updates)["x"], [2.0, 20.0])


def test_median_of_integers_rounds_and_keeps_integer_dtype() -> None:
    updates = [(named(n=np.array([1, 4], dtype=np.int64)), 1.0), (named(n=np.array([2, 7], dtype=np.int64)), 1.0)]
    out = median(updates)["n"]
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, [2, 6])  # 1.5 -> 2, 5.5 -> 6 (round half to even)


def test_trimmed_mean_drops_the_outliers() -> None:
    updates = scalars([3.0, -50.0, 1.0, 100.0, 2.0], dtype="float64")
    out = trimmed_mean(updates, trim_fraction=0.2)  # drops one value per end: -50 and 100
    np.testing.assert_allclose(out["w"], [2.0])
    np.testing.assert_allclose(out["b"], np.full((2, 2), 2.0))
    assert out["w"].dtype == np.float64


def test_trimmed_mean_with_small_fraction_drops_nothing() -> None:
    assert trimmed_count(5, 0.1) == 0 and trimmed_count(5, 0.2) == 1 and trimmed_count(10, 0.49) == 4
    out = trimmed_mean(scalars([1.0, 2.0, 3.0, 4.0, 100.0], dtype="float64"), trim_fraction=0.1)
    np.testing.assert_allclose(out["w"], [22.0])  # unweighted mean of all five


def test_krum_picks_the_cluster_and_ignores_a_far_outlier() -> None:
    updates = scalars([1.0, 1.1, 0.9, 1.05, 1000.0], dtype="float64")
    chosen = krum_select(updates, num_malicious=1)
    assert chosen[0] != 4
    out = krum(updates, num_malicious=1)
    assert 0.9 <= float(out["w"][0]) <= 1.1
    # the selected update is returned as it is
    np.testing.assert_array_equal(out["w"], updates[chosen[0]][0]["w"])
    assert 4 not in krum_select(updates, num_malicious=1, multi=4)


def test_multi_krum_is_the_uniform_mean_of_the_selection() -> None:
    updates = scalars([1.0, 2.0, 3.0, 50.0, -70.0], dtype="float64")
    chosen = krum_select(updates, num_malicious=1, multi=3)
    assert sorted(chosen) == [0, 1, 2]
    out = krum(updates, num_malicious=1, multi=3)
    np.testing.assert_allclose(out["w"], [2.0])  # uniform, although the weights are 1, 2, 3


def test_krum_selection_matches_flower_on_random_data() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        n, f = 7, 2
        updates = [(named(a=rng.normal(size=(3, 4)), b=rng.normal(size=5)), 1.0) for _ in range(n)]
        results = [([u["a"], u["b"]], 1) for u, _ in updates]
        ours = krum(updates, num_malicious=f)
        theirs = aggregate_krum(results, num_malicious=f, to_keep=0)
        np.testing.assert_allclose(ours["a"], theirs[0])
        np.testing.assert_allclose(ours["b"], theirs[1])
        ours_multi = krum(updates, num_malicious=f, multi=3)
        theirs_multi = aggregate_krum(results, num_malicious=f, to_keep=3)
        np.testing.assert_allclose(ours_multi["a"], theirs_multi[0])
        np.testing.assert_allclose(ours_multi["b"], theirs_multi[1])


@pytest.mark.parametrize(
    ("rule", "params"),
    [("mean", {}), ("median", {}), ("trimmed_mean", {"trim_fraction": 0.2}), ("krum", {"num_malicious": 1})],
)
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
def test_every_rule_keeps_names_order_shapes_and_dtypes(rule: str, params: dict, dtype: str) -> None:
    rng = np.random.default_rng(1)
    updates = [
        (named(z=rng.normal(size=(2, 3)).astype(dtype), a=rng.normal(size=4).astype(dtype)), 1.0) for _ in range(5)
    ]
    out = aggregate(rule, updates, **params)
    assert list(out) == ["z", "a"]
    assert out["z"].shape == (2, 3) and out["a"].shape == (4,)
    assert out["z"].dtype == np.dtype(dtype) and out["a"].dtype == np.dtype(dtype)


def test_inputs_are_not_modified_and_not_aliased() -> None:
    updates = scalars([1.0, 2.0, 3.0, 4.0, 5.0])
    before = [{k: v.copy() for k, v in u.items()} for u, _ in updates]
    for rule, params in [("median", {}), ("trimmed_mean", {"trim_fraction": 0.2}), ("krum", {"num_malicious": 1})]:
        out = aggregate(rule, updates, **params)
        out["w"][...] = -1
    for (u, _), b in zip(updates, before):
        for k in b:
            np.testing.assert_array_equal(u[k], b[k])


# ------------------------------------------------------------------ robustness


@pytest.mark.parametrize(
    ("rule", "params"),
    [
        ("median", {}),
        ("trimmed_mean", {"trim_fraction": 0.2}),
        ("krum", {"num_malicious": 1}),
        ("krum", {"num_malicious": 1, "multi": 3}),
    ],
)
def test_robust_rules_resist_one_poisoned_update_among_five_while_mean_does_not(rule: str, params: dict) -> None:
    rng = np.random.default_rng(2)
    truth = rng.normal(size=(8, 8)).astype(np.float32)
    honest = [truth + 0.01 * rng.normal(size=truth.shape).astype(np.float32) for _ in range(4)]
    poisoned = truth - 1e4 * np.sign(truth)
    # the poisoner also claims a huge number of examples
    updates = [(named(w=h), 100.0) for h in honest] + [(named(w=poisoned), 1e6)]
    err_mean = float(np.abs(aggregate("mean", updates)["w"] - truth).max())
    err_rule = float(np.abs(aggregate(rule, updates, **params)["w"] - truth).max())
    assert err_mean > 100.0
    assert err_rule < 0.05


# ------------------------------------------------------------------ registry and errors


def test_registry_names() -> None:
    assert set(RULES) == {"mean", "median", "trimmed_mean", "krum"}
    assert RULES["mean"].uses_weights and not RULES["median"].uses_weights


def test_aggregate_mean_is_the_weighted_mean() -> None:
    updates = scalars([1.0, 4.0], dtype="float64")  # weights 1 and 2
    np.testing.assert_allclose(aggregate("mean", updates)["w"], [3.0])
    np.testing.assert_allclose(weighted_mean(updates)["w"], [3.0])


def test_unknown_rule_names_the_rule_and_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"'geomed'.*krum.*mean.*median.*trimmed_mean"):
        aggregate("geomed", scalars([1.0, 2.0]))


def test_unknown_and_missing_parameters() -> None:
    with pytest.raises(ConfigError, match=r"'median'.*unknown parameter.*trim_fraction"):
        aggregate("median", scalars([1.0, 2.0]), trim_fraction=0.1)
    with pytest.raises(ConfigError, match=r"'trimmed_mean'.*missing.*trim_fraction"):
        aggregate("trimmed_mean", scalars([1.0, 2.0]))
    with pytest.raises(ConfigError, match=r"'krum'.*missing.*num_malicious"):
        aggregate("krum", scalars([1.0, 2.0, 3.0]))


@pytest.mark.parametrize("fraction", [-0.1, 0.5, 0.7, "0.2", True])
def test_trim_fraction_outside_range_is_rejected(fraction: object) -> None:
    with pytest.raises(ConfigError, match=r"'trimmed_mean'.*trim_fraction.*\[0, 0.5\)"):
        aggregate("trimmed_mean", scalars([1.0, 2.0, 3.0]), trim_fraction=fraction)


def test_krum_needs_more_than_2f_plus_2_updates() -> None:
    with pytest.raises(ConfigError, match=r"'krum'.*num_malicious = 1.*more than 2 \* 1 \+ 2 = 4.*got 4"):
        aggregate("krum", scalars([1.0, 2.0, 3.0, 4.0]), num_malicious=1)
    aggregate("krum", scalars([1.0, 2.0, 3.0, 4.0, 5.0]), num_malicious=1)
    with pytest.raises(ConfigError, match=r"got 2"):
        aggregate("krum", scalars([1.0, 2.0]), num_malicious=0)
    with pytest.raises(ConfigError, match=r"multi = 5.*at most"):
        aggregate("krum", scalars([1.0, 2.0, 3.0, 4.0, 5.0]), num_malicious=1, multi=5)
    with pytest.raises(ConfigError, match=r"num_malicious = -1"):
        aggregate("krum", scalars([1.0, 2.0, 3.0, 4.0, 5.0]), num_malicious=-1)
    with pytest.raises(ConfigError, match=r"multi = 0"):
        aggregate("krum", scalars([1.0, 2.0, 3.0, 4.0, 5.0]), num_malicious=1, multi=0)


def test_check_rule_without_updates_checks_only_the_parameters() -> None:
    check_rule("krum", num_malicious=3)
    with pytest.raises(ConfigError, match=r"more than"):
        check_rule("krum", 5, num_malicious=3)


def test_zero_and_mismatched_updates_are_value_errors() -> None:
    with pytest.raises(ValueError, match=r"zero updates"):
        aggregate("median", [])
    with pytest.raises(ValueError, match=r"update 1 has other array names.*missing \['b'\].*extra \['c'\]"):
        aggregate("median", [(named(a=[1.0], b=[2.0]), 1.0), (named(a=[1.0], c=[2.0]), 1.0)])
    with pytest.raises(ValueError, match=r"update 1: array 'a' has shape \(2,\)"):
        aggregate("mean", [(named(a=[1.0]), 1.0), (named(a=[1.0, 2.0]), 1.0)])


def test_tolerated_byzantine() -> None:
    assert tolerated_byzantine("mean", 5) == 0
    assert tolerated_byzantine("median", 5) == 2
    assert tolerated_byzantine("median", 4) == 1
    assert tolerated_byzantine("trimmed_mean", 10, trim_fraction=0.2) == 2
    assert tolerated_byzantine("krum", 7, num_malicious=2) == 2


# ------------------------------------------------------------------ ring merges


def test_merge_pair_mean_is_weighted_and_robust_rules_give_the_midpoint() -> None:
    own = named(w=np.array([0.0, 10.0], dtype=np.float32))
    peer = named(w=np.array([4.0, 20.0], dtype=np.float32))
    out = merge_pair(own, peer, own_weight=3.0, peer_weight=1.0, rule="mean")
    np.testing.assert_allclose(out["w"], [1.0, 12.5])
    assert out["w"].dtype == np.float32
    for rule in ("median", "trimmed_mean"):
        np.testing.assert_allclose(merge_pair(own, peer, 3.0, 1.0, rule)["w"], [2.0, 15.0])
    np.testing.assert_allclose(merge_pair(own, peer, 3.0, 1.0, "trimmed_mean", trim_fraction=0.3)["w"], [2.0, 15.0])
    with pytest.raises(ConfigError, match=r"trim_fraction"):
        merge_pair(own, peer, 3.0, 1.0, "trimmed_mean", trim_fraction=0.5)


def test_merge_pair_krum_and_unknown_rules_raise() -> None:
    own, peer = named(w=[0.0]), named(w=[1.0])
    with pytest.raises(ConfigError, match=r"'krum' cannot merge a pair.*merge_window"):
        merge_pair(own, peer, 1.0, 1.0, "krum")
    with pytest.raises(ConfigError, match=r"'nope'"):
        merge_pair(own, peer, 1.0, 1.0, "nope")


def test_merge_window_mean_uses_own_weight() -> None:
    own = named(w=[0.0])
    received = [(named(w=[3.0]), 1.0), (named(w=[6.0]), 1.0)]
    np.testing.assert_allclose(merge_window(own, received, "mean", own_weight=1.0)["w"], [3.0])
    np.testing.assert_allclose(merge_window(own, received, "mean", own_weight=7.0)["w"], [1.0])


@pytest.mark.parametrize(
    ("rule", "params"), [("median", {}), ("trimmed_mean", {"trim_fraction": 0.2}), ("krum", {"num_malicious": 1})]
)
def test_merge_window_resists_a_poisoned_model_in_the_window(rule: str, params: dict) -> None:
    own = named(w=np.array([1.0, 1.0]))
    received = [(named(w=np.array([1.1, 0.9])), 1.0), (named(w=np.array([0.9, 1.05])), 1.0)]
    received += [(named(w=np.array([1e6, -1e6])), 1.0), (named(w=np.array([1.05, 1.0])), 1.0)]
    out = merge_window(own, received, rule, **params)["w"]
    assert np.abs(out - 1.0).max() <= 0.1
    assert np.abs(merge_window(own, received, "mean")["w"] - 1.0).max() > 1e4


def test_merge_window_krum_needs_a_large_enough_window() -> None:
    own = named(w=[1.0])
    with pytest.raises(ConfigError, match=r"got 4"):
        merge_window(own, [(named(w=[1.0]), 1.0)] * 3, "krum", num_malicious=1)
