"""Aggregation rules over named arrays: pure functions, shared by star and ring strategies."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from fedsynth.protocol import Arrays


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
