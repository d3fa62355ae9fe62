"""Aggregation rules over named arrays: pure functions, shared by the server's star strategies and
the hospitals' ring merges (neither side owns them).

Every rule takes ``updates``, a sequence of ``(arrays, weight)`` pairs (the weight is normally
the hospital's ``num_examples``), and returns one set of named arrays with the names in the order
of the first update and each array in its input dtype.

Rules (look them up by name with :func:`aggregate`):

``mean``
    FedAvg's weighted mean. Not robust: one poisoned update moves the result arbitrarily far.
``median``
    Coordinate-wise median (Yin et al. 2018). Tolerates fewer than half poisoned updates.
``trimmed_mean``
    Coordinate-wise mean after dropping ``int(trim_fraction * n)`` values from each end
    (Yin et al. 2018). Tolerates as many poisoned updates as it drops per end.
``krum``
    Krum / Multi-Krum (Blanchard et al. 2017): keep the ``multi`` updates whose summed squared
    distance to their ``n - f - 2`` nearest neighbours is smallest and average them. Needs
    ``n > 2f + 2`` for ``f = num_malicious``.

The robust rules ignore the weights on purpose: the weight is reported by the hospital, so a
poisoned hospital could otherwise claim a huge ``num_examples`` and win the vote.

Flower's ``aggregate_median`` and ``aggregate_trimmed_avg`` are used as they are (wrapped onto
named arrays). Flower's ``aggregate_krum`` is not: see :func:`krum_select`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.server.strategy.aggregate import aggregate_median, aggregate_trimmed_avg

from fedsynth.errors import ConfigError
from fedsynth.protocol import Arrays

#: One hospital's contribution: its named arrays and its weight (normally ``num_examples``).
Update = tuple[Arrays, float]


def weighted_mean(updates: Sequence[tuple[Arrays, float]]) -> Arrays:
    """Coordinate-wise mean of the arrays, weighted (e.g. by number of examples)."""
    if not updates:
        raise ValueError("cannot aggregate zero updates")
    total = float(sum(w for _, w in updates))
    if total <= 0:
        raise ValueError("aggregation weights must sum to a positive number")
    names = list(updates[0][0])
    out: Arrays = OrderedDict()
    for name in names:
        acc = np.zeros_like(updates[0][0][name], dtype=np.float64)
        for arrays, w in updates:
            acc += arrays[name].astype(np.float64) * (w / total)
        out[name] = acc.astype(updates[0][0][name].dtype)
    return out


# --------------------------------------------------------------------------------------------
# helpers: named arrays <-> Flower's lists of ndarrays


def _check_compatible(updates: Sequence[Update]) -> list[str]:
    """The names of the first update; ValueError if any update has other names or shapes."""
    if not updates:
        raise ValueError("cannot aggregate zero updates")
    first = updates[0][0]
    names = list(first)
    for i, (arrays, _) in enumerate(updates[1:], start=1):
        if set(arrays) != set(names):
            missing = sorted(set(names) - set(arrays))
            extra = sorted(set(arrays) - set(names))
            raise ValueError(f"update {i} has other array names than update 0 (missing {missing}, extra {extra})")
        for name in names:
            if np.shape(arrays[name]) != np.shape(first[name]):
                raise ValueError(
                    f"update {i}: array {name!r} has shape {np.shape(arrays[name])}, "
                    f"update 0 has {np.shape(first[name])}"
                )
    return names


def _as_results(updates: Sequence[Update], names: list[str]) -> list[tuple[list[np.ndarray], int]]:
    """Flower's input format; weights are dropped (Flower's robust rules ignore them too)."""
    return [([np.asarray(arrays[name]) for name in names], 1) for arrays, _ in updates]


def _cast_like(value: np.ndarray, like: np.ndarray) -> np.ndarray:
    """``value`` in the dtype of ``like``; integer and bool arrays are rounded, not truncated."""
    dtype = np.asarray(like).dtype
    if dtype.kind in "iub":
        value = np.rint(value)
    return np.asarray(value).astype(dtype, copy=False).reshape(np.shape(like))


def _to_named(values: Sequence[np.ndarray], names: list[str], like: Arrays) -> Arrays:
    return OrderedDict((name, _cast_like(v, like[name])) for name, v in zip(names, values, strict=True))


# --------------------------------------------------------------------------------------------
# robust rules


def median(updates: Sequence[Update]) -> Arrays:
    """Coordinate-wise median of the updates (weights ignored); of two updates, their midpoint."""
    names = _check_compatible(updates)
    return _to_named(aggregate_median(_as_results(updates, names)), names, updates[0][0])


def trimmed_count(num_updates: int, trim_fraction: float) -> int:
    """How many values :func:`trimmed_mean` drops from *each* end: ``int(trim_fraction * n)``.

    This is Flower's (and scipy's) convention, so a small fraction over few updates may drop
    nothing: 0.1 of 5 updates drops 0.
    """
    return int(trim_fraction * num_updates)


def trimmed_mean(updates: Sequence[Update], trim_fraction: float) -> Arrays:
    """Coordinate-wise mean after dropping ``trimmed_count(n, trim_fraction)`` values per end.

    Weights are ignored. ``trim_fraction`` must lie in [0, 0.5).
    """
    _check_trim_fraction("trimmed_mean", trim_fraction)
    names = _check_compatible(updates)
    values = aggregate_trimmed_avg(_as_results(updates, names), proportiontocut=trim_fraction)
    return _to_named(values, names, updates[0][0])


def _flatten(updates: Sequence[Update], names: list[str]) -> np.ndarray:
    """One float64 row per update: all its arrays, raveled and concatenated in ``names`` order."""
    return np.stack([np.concatenate([np.asarray(a[n], dtype=np.float64).ravel() for n in names]) for a, _ in updates])


def squared_distances(updates: Sequence[Update]) -> np.ndarray:
    """Matrix of squared L2 distances between the updates (all arrays concatenated)."""
    names = _check_compatible(updates)
    flat = _flatten(updates, names)
    n = len(flat)
    dist = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            diff = flat[i] - flat[j]
            dist[i, j] = dist[j, i] = float(diff @ diff)
    return dist


def krum_scores(updates: Sequence[Update], num_malicious: int) -> np.ndarray:
    """Krum score of each update: sum of squared distances to its ``n - f - 2`` nearest others."""
    _check_krum("krum", len(updates), num_malicious, 1)
    dist = squared_distances(updates)
    n = len(updates)
    closest = n - num_malicious - 2
    scores = np.empty(n)
    for i in range(n):
        others = np.delete(dist[i], i)  # exclude itself explicitly, not by its position after sorting
        scores[i] = float(np.sort(others)[:closest].sum())
    return scores


def krum_select(updates: Sequence[Update], num_malicious: int, multi: int = 1) -> list[int]:
    """Indices of the ``multi`` updates with the lowest Krum score, best first (ties: lower index).

    Written here rather than taken from Flower's ``aggregate_krum`` because that function
    (flwr 1.41) returns only the arrays, not which updates it kept (the strategy needs them to
    report who was excluded); silently clamps ``n - f - 2`` to 1 instead of rejecting
    ``n <= 2f + 2``; and averages Multi-Krum's selection weighted by the client-reported
    ``num_examples``, whereas Blanchard et al. average it uniformly. The scores are the same
    (the tests check the selection against Flower's on random data).
    """
    _check_krum("krum", len(updates), num_malicious, multi)
    scores = krum_scores(updates, num_malicious)
    return [int(i) for i in np.argsort(scores, kind="stable")[:multi]]


def krum(updates: Sequence[Update], num_malicious: int, multi: int = 1) -> Arrays:
    """Krum (``multi=1``: the selected update itself) or Multi-Krum (uniform mean of ``multi``)."""
    chosen = krum_select(updates, num_malicious, multi)
    names = list(updates[0][0])
    first = updates[0][0]
    out: Arrays = OrderedDict()
    for name in names:
        stacked = np.stack([np.asarray(updates[i][0][name], dtype=np.float64) for i in chosen])
        out[name] = _cast_like(stacked.mean(axis=0), first[name])
    return out


def _mean_rule(updates: Sequence[Update]) -> Arrays:
    _check_compatible(updates)
    return weighted_mean(updates)


# --------------------------------------------------------------------------------------------
# parameter checks (ConfigError: these are settings a user chose)


def _check_trim_fraction(rule: str, trim_fraction: Any) -> None:
    if isinstance(trim_fraction, bool) or not isinstance(trim_fraction, int | float):
        raise ConfigError(
            f"aggregation rule {rule!r}: trim_fraction = {trim_fraction!r}: expected a number in [0, 0.5)"
        )
    if not 0.0 <= float(trim_fraction) < 0.5:
        raise ConfigError(
            f"aggregation rule {rule!r}: trim_fraction = {trim_fraction!r}: expected a number in [0, 0.5)"
        )


def _check_int(rule: str, key: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(f"aggregation rule {rule!r}: {key} = {value!r}: expected an integer >= {minimum}")


def _check_krum(rule: str, num_updates: int | None, num_malicious: Any, multi: Any) -> None:
    _check_int(rule, "num_malicious", num_malicious, 0)
    _check_int(rule, "multi", multi, 1)
    if num_updates is None:
        return
    if num_updates <= 2 * num_malicious + 2:
        raise ConfigError(
            f"aggregation rule {rule!r} with num_malicious = {num_malicious} needs more than "
            f"2 * {num_malicious} + 2 = {2 * num_malicious + 2} updates, got {num_updates}"
        )
    if multi > num_updates - num_malicious:
        raise ConfigError(
            f"aggregation rule {rule!r}: multi = {multi} must be at most n - num_malicious = "
            f"{num_updates} - {num_malicious} = {num_updates - num_malicious}"
        )


# --------------------------------------------------------------------------------------------
# registry


@dataclass(frozen=True)
class AggregationRule:
    """A named aggregation rule: the function, its keyword parameters and how to check them.

    ``check(num_updates, params)`` raises :class:`ConfigError` for impossible parameters;
    ``num_updates`` may be None to check only what does not depend on the round's updates.
    ``tolerates(num_updates, params)`` is how many poisoned updates among ``num_updates`` the
    rule is designed to withstand (0 for the mean).
    """

    name: str
    fn: Callable[..., Arrays]
    required: tuple[str, ...]
    optional: tuple[str, ...]
    uses_weights: bool
    check: Callable[[int | None, Mapping[str, Any]], None]
    tolerates: Callable[[int, Mapping[str, Any]], int]
    summary: str


def _no_check(num_updates: int | None, params: Mapping[str, Any]) -> None:
    return None


RULES: dict[str, AggregationRule] = {
    rule.name: rule
    for rule in (
        AggregationRule(
            name="mean",
            fn=_mean_rule,
            required=(),
            optional=(),
            uses_weights=True,
            check=_no_check,
            tolerates=lambda n, p: 0,
            summary="weighted mean (FedAvg)",
        ),
        AggregationRule(
            name="median",
            fn=median,
            required=(),
            optional=(),
            uses_weights=False,
            check=_no_check,
            tolerates=lambda n, p: (n - 1) // 2,
            summary="coordinate-wise median",
        ),
        AggregationRule(
            name="trimmed_mean",
            fn=trimmed_mean,
            required=("trim_fraction",),
            optional=(),
            uses_weights=False,
            check=lambda n, p: _check_trim_fraction("trimmed_mean", p["trim_fraction"]),
            tolerates=lambda n, p: trimmed_count(n, p["trim_fraction"]),
            summary="coordinate-wise mean after trimming trim_fraction from each end",
        ),
        AggregationRule(
            name="krum",
            fn=krum,
            required=("num_malicious",),
            optional=("multi",),
            uses_weights=False,
            check=lambda n, p: _check_krum("krum", n, p["num_malicious"], p.get("multi", 1)),
            tolerates=lambda n, p: int(p["num_malicious"]),
            summary="(Multi-)Krum: mean of the `multi` updates closest to their n - f - 2 neighbours",
        ),
    )
}


def get_rule(rule: str) -> AggregationRule:
    """The rule called ``rule``; ConfigError listing the known names otherwise."""
    try:
        return RULES[rule]
    except (KeyError, TypeError):
        raise ConfigError(f"aggregation rule {rule!r}: expected one of {sorted(RULES)}") from None


def check_rule(rule: str, num_updates: int | None = None, **params: Any) -> AggregationRule:
    """Validate a rule name and its parameters (and, if given, the number of updates).

    Use at configuration time with ``num_updates=None`` (or the number of hospitals) to fail
    before training starts.
    """
    spec = get_rule(rule)
    allowed = set(spec.required) | set(spec.optional)
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ConfigError(
            f"aggregation rule {rule!r}: unknown parameter(s) {unknown}; expected "
            f"{sorted(allowed) if allowed else 'no parameters'}"
        )
    missing = [k for k in spec.required if k not in params]
    if missing:
        raise ConfigError(f"aggregation rule {rule!r}: missing parameter(s) {missing}")
    spec.check(num_updates, params)
    return spec


def sum_updates(updates: Sequence[Update]) -> Arrays:
    """The element-wise sum of the updates' arrays (their weights are ignored): the total of
    released sums, each of which already carries its site's noise."""
    if not updates:
        raise ValueError("cannot sum zero updates")
    names = list(updates[0][0])
    for arrays, _ in updates:
        if list(arrays) != names:
            raise ValueError("updates to sum disagree on their array names")
    return OrderedDict(
        (k, np.sum([np.asarray(a[k], dtype=np.float64) for a, _ in updates], axis=0).astype(np.float32)) for k in names
    )


def aggregate(rule: str, updates: Sequence[Update], **params: Any) -> Arrays:
    """Aggregate ``updates`` with the rule called ``rule`` ("mean", "median", "trimmed_mean", "krum").

    ConfigError for an unknown rule, unknown/missing parameters or parameters impossible for
    this many updates (e.g. krum with ``n <= 2f + 2``); ValueError for no updates or updates
    whose names or shapes disagree.
    """
    spec = check_rule(rule, None, **params)
    if not updates:
        raise ValueError(f"aggregation rule {rule!r}: cannot aggregate zero updates")
    spec.check(len(updates), params)
    return spec.fn(updates, **params)


def tolerated_byzantine(rule: str, num_updates: int, **params: Any) -> int:
    """How many poisoned updates among ``num_updates`` the rule is designed to withstand."""
    spec = check_rule(rule, num_updates, **params)
    return spec.tolerates(num_updates, params)


# --------------------------------------------------------------------------------------------
# ring merges


def merge_window(own: Arrays, received: Sequence[Update], rule: str, own_weight: float = 1.0, **params: Any) -> Arrays:
    """A ring hospital's merge of its own model with the models it received, by ``rule``.

    The window is ``[(own, own_weight)] + received``; the rule runs over all of it, so with
    ``k`` received models there are ``n = k + 1`` inputs and:

    * ``mean`` is the weighted mean (FedAvg over the window);
    * ``median`` withstands up to ``(n - 1) // 2`` poisoned models;
    * ``trimmed_mean`` withstands ``int(trim_fraction * n)`` poisoned models;
    * ``krum`` needs ``n > 2 * num_malicious + 2``, i.e. at least ``2f + 2`` received models.

    These guarantees count *inputs*: a model that already merged a poisoned one (anything
    downstream of the poisoner in a ring) is itself poisoned. A ring that wants robustness
    should therefore fill the window with models of distinct hospitals that have not yet merged
    each other (e.g. the ``k`` predecessors' trained models of the same round, relayed by the
    server), not with a chain of models that each contain the previous one. The own model is
    not privileged: if it is the outlier, a robust rule outvotes it too.
    """
    window: list[Update] = [(own, float(own_weight)), *received]
    return aggregate(rule, window, **params)


def merge_pair(own: Arrays, peer: Arrays, own_weight: float, peer_weight: float, rule: str, **params: Any) -> Arrays:
    """A ring hospital's merge of its own model with its predecessor's.

    ``mean`` is the weighted mean. With only two inputs no rule can tell which one is the
    outlier, so the robust coordinate-wise rules reduce to the unweighted midpoint: the median
    of two values is their mean, and a trimmed mean of two drops ``int(2 * trim_fraction) = 0``
    values per end (any ``trim_fraction`` in [0, 0.5), which may be omitted here). They offer no
    protection against a poisoned peer; use :func:`merge_window` with more received models for
    that. ``krum`` is undefined for two inputs (it needs ``n > 2f + 2 >= 2``) and raises.
    """
    spec = get_rule(rule)
    if spec.name == "krum":
        raise ConfigError(
            "aggregation rule 'krum' cannot merge a pair: it needs more than 2 * num_malicious + 2 >= 2 "
            "models; use merge_window with at least 2 * num_malicious + 2 received models"
        )
    if spec.name == "trimmed_mean":
        if "trim_fraction" in params:
            check_rule(rule, 2, **params)
        return median([(own, own_weight), (peer, peer_weight)])
    return merge_window(own, [(peer, float(peer_weight))], rule, own_weight=own_weight, **params)
