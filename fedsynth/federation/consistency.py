"""Federated consistency: how far apart the hospitals' models are.

After a round the hospitals' models (star: their trained updates; ring: each hospital's model)
should not drift apart without bound. :func:`weight_dispersion` measures their spread in weight
space as distances between flattened parameter vectors, normalized by the L2 norm of the mean
model so that the numbers are comparable across models of different size and scale ("0.05"
reads as "the models differ by about 5 % of the model's own size").
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from fedsynth.protocol import Arrays


def common_float_names(models: Sequence[Arrays]) -> list[str]:
    """Names present in every model with a floating dtype in every model, in the first model's order.

    ValueError if such an array has different shapes in different models.
    """
    if not models:
        return []
    names = []
    for name, first in models[0].items():
        if not all(name in m and np.asarray(m[name]).dtype.kind == "f" for m in models):
            continue
        if np.asarray(first).dtype.kind != "f":
            continue
        for i, m in enumerate(models):
            if np.shape(m[name]) != np.shape(first):
                raise ValueError(
                    f"array {name!r} has shape {np.shape(m[name])} in model {i}, {np.shape(first)} in model 0"
                )
        names.append(name)
    return names


def weight_dispersion(models: Sequence[Arrays]) -> dict[str, float]:
    """Spread of ``models`` in weight space, over the float arrays present in all of them.

    Each model is flattened (float64) into one vector ``x_i`` over those arrays; ``m`` is their
    unweighted mean. Returns:

    ``rel_pairwise_distance``
        mean over pairs ``i < j`` of ``||x_i - x_j||``, divided by ``||m||``;
    ``rel_distance_to_mean``
        mean over ``i`` of ``||x_i - m||``, divided by ``||m||``;
    ``pairwise_distance``, ``distance_to_mean``
        the same, not normalized;
    ``mean_model_norm``
        ``||m||`` (the normalizer; if it is 0 the relative values are inf, or 0 when the
        models are identical);
    ``num_models``, ``num_arrays``, ``num_parameters``
        what was compared.

    All L2 norms are over the whole concatenated vector. Identical models give 0. With one
    model every distance is 0.
    """
    if not models:
        raise ValueError("weight_dispersion needs at least one model")
    names = common_float_names(models)
    if not names:
        raise ValueError("the models have no floating-point array in common")
    flat = np.stack([np.concatenate([np.asarray(m[n], dtype=np.float64).ravel() for n in names]) for m in models])
    n = len(flat)
    # Mean as flat[0] plus the mean offset from it: exact 0 distances for identical models.
    mean = flat[0] + (flat - flat[0]).mean(axis=0)
    to_mean = float(np.mean([np.linalg.norm(x - mean) for x in flat]))
    pairs = [float(np.linalg.norm(flat[i] - flat[j])) for i in range(n) for j in range(i + 1, n)]
    pairwise = float(np.mean(pairs)) if pairs else 0.0
    norm = float(np.linalg.norm(mean))

    def relative(value: float) -> float:
        if value == 0.0:
            return 0.0
        return value / norm if norm > 0 else math.inf

    return {
        "rel_pairwise_distance": relative(pairwise),
        "rel_distance_to_mean": relative(to_mean),
        "pairwise_distance": pairwise,
        "distance_to_mean": to_mean,
        "mean_model_norm": norm,
        "num_models": float(n),
        "num_arrays": float(len(names)),
        "num_parameters": float(flat.shape[1]),
    }
